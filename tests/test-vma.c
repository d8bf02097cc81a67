/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The maps module (preserve/vma-info.h): PROCMAP_QUERY and the
 * /proc/self/maps text must describe this process's mappings alike, since
 * kernels before 6.11 (the VM's 6.1) only have the text; and the line
 * parser must read what the kernel prints and refuse what it does not.
 */
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "vma-info.h"
#include "test-util.h"

#define PAGE 0x1000

static bool kernel_has_procmap_query(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    struct vma_info v;
    int r;

    g_assert_cmpint(fd, >=, 0);
    r = vma_query(fd, (uintptr_t)&v, 0, false, &v);
    close(fd);
    return !vma_query_unsupported(r);
}

static void assert_same_vma(const struct vma_info *a, const struct vma_info *b)
{
    g_assert_cmphex(a->start, ==, b->start);
    g_assert_cmphex(a->end, ==, b->end);
    g_assert_cmpint(a->prot, ==, b->prot);
    g_assert_cmpint(a->shared, ==, b->shared);
    g_assert_cmphex(a->offset, ==, b->offset);
    g_assert_cmpuint(a->dev, ==, b->dev);
    g_assert_cmpuint(a->ino, ==, b->ino);
    g_assert_cmpstr(a->name, ==, b->name);
}

static void assert_same_backing(int ra, const struct vma_backing *a, int rb,
                                const struct vma_backing *b)
{
    g_assert_cmpint(ra, ==, rb);
    if (ra < 0)
        return;
    g_assert_cmpuint(a->dev, ==, b->dev);
    g_assert_cmpuint(a->ino, ==, b->ino);
    g_assert_cmphex(a->offset, ==, b->offset);
    g_assert_cmpint(a->shared, ==, b->shared);
    g_assert_cmpint(a->file_backed, ==, b->file_backed);
}

/*
 * What maps [addr, addr + size), asked through PROCMAP_QUERY and through
 * the text (the seam makes vma_query() fail as before 6.11): the VMA
 * vma_info_find() returns, the backing vma_backing_of() returns and the
 * one of a table read now must agree. Returns vma_info_find()'s answer
 * and the backing's return value.
 */
static int check_both_paths(const void *addr, uint64_t size,
                            struct vma_info *ret, struct vma_backing *ret_b)
{
    struct vma_info q, t;
    struct vma_backing bq, bt, btab;
    struct vma_table table = {0};
    int rq, rt, rbq, rbt, rtab;

    g_assert_false(vma_query_disabled);
    rq = vma_info_find((uintptr_t)addr, &q);
    rbq = vma_backing_of(addr, size, &bq);
    vma_query_disabled = true;
    rt = vma_info_find((uintptr_t)addr, &t);
    rbt = vma_backing_of(addr, size, &bt);
    vma_query_disabled = false;
    g_assert_cmpint(vma_table_load(&table), ==, 0);
    rtab = vma_table_lookup(&table, addr, size, &btab);
    vma_table_clear(&table);

    g_assert_cmpint(rq, ==, 0);
    g_assert_cmpint(rt, ==, 0);
    assert_same_vma(&q, &t);
    assert_same_backing(rbq, &bq, rbt, &bt);
    assert_same_backing(rbq, &bq, rtab, &btab);
    *ret = q;
    *ret_b = bq;
    return rbq;
}

static void test_query_and_text_agree(void)
{
    g_autofree char *path = NULL;
    g_autoptr(GError) error = NULL;
    int mfd = memfd_create("test-vma", MFD_CLOEXEC);
    int ffd = g_file_open_tmp("test-vma-XXXXXX", &path, &error);
    struct stat mst, fst;
    struct vma_info v;
    struct vma_backing b;
    uint8_t *shared, *anon, *ro, *priv, *holes, *two;

    if (!kernel_has_procmap_query()) {
        g_test_skip("the kernel has no PROCMAP_QUERY (before 6.11): "
                    "nothing to compare the text with");
        return;
    }
    g_assert_no_error(error);
    g_assert_cmpint(mfd, >=, 0);
    g_assert_cmpint(ftruncate(mfd, 4 * PAGE), ==, 0);
    g_assert_cmpint(ftruncate(ffd, 4 * PAGE), ==, 0);
    g_assert_cmpint(fstat(mfd, &mst), ==, 0);
    g_assert_cmpint(fstat(ffd, &fst), ==, 0);
    shared = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    anon = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ro = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, mfd, 2 * PAGE);
    priv = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, ffd, PAGE);
    /* A hole: the middle page of three, unmapped (single-threaded, nothing
     * maps it again before the lookups). */
    holes = mmap(NULL, 3 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    two = mmap(NULL, 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_assert_true(shared != MAP_FAILED && anon != MAP_FAILED &&
                  ro != MAP_FAILED && priv != MAP_FAILED &&
                  holes != MAP_FAILED && two != MAP_FAILED);
    g_assert_cmpint(munmap(holes + PAGE, PAGE), ==, 0);

    /* memfd, MAP_SHARED: the path and offset the remap checks. */
    g_assert_cmpint(check_both_paths(shared + PAGE, 2 * PAGE, &v, &b), ==, 0);
    g_assert_cmphex(v.start, ==, (uintptr_t)shared);
    g_assert_cmphex(v.end, ==, (uintptr_t)shared + 4 * PAGE);
    g_assert_cmpint(v.prot, ==, PROT_READ | PROT_WRITE);
    g_assert_true(v.shared);
    g_assert_cmpuint(v.ino, ==, mst.st_ino);
    g_assert_cmpuint(v.dev, ==, mst.st_dev);
    g_assert_true(g_str_has_prefix(v.name, "/memfd:test-vma"));
    g_assert_true(g_str_has_suffix(v.name, " (deleted)"));
    g_assert_true(b.shared && b.file_backed);
    g_assert_cmphex(b.offset, ==, PAGE);

    /* Anonymous private memory: no file, no name. */
    g_assert_cmpint(check_both_paths(anon, 2 * PAGE, &v, &b), ==, 0);
    g_assert_cmphex(v.start, ==, (uintptr_t)anon);
    g_assert_false(v.shared);
    g_assert_cmpuint(v.ino, ==, 0);
    g_assert_cmpstr(v.name, ==, "");
    g_assert_false(b.file_backed);

    /* Read-only, at a file offset. */
    g_assert_cmpint(check_both_paths(ro, 2 * PAGE, &v, &b), ==, 0);
    g_assert_cmphex(v.start, ==, (uintptr_t)ro);
    g_assert_cmpint(v.prot, ==, PROT_READ);
    g_assert_cmphex(v.offset, ==, 2 * PAGE);
    g_assert_cmphex(b.offset, ==, 2 * PAGE);

    /* A private mapping of a file on disk: its real device. */
    g_assert_cmpint(check_both_paths(priv + PAGE, PAGE, &v, &b), ==, 0);
    g_assert_cmphex(v.start, ==, (uintptr_t)priv);
    g_assert_false(v.shared);
    g_assert_cmpuint(v.dev, ==, fst.st_dev);
    g_assert_cmpuint(v.ino, ==, fst.st_ino);
    g_assert_cmpstr(v.name, ==, path);
    g_assert_cmphex(b.offset, ==, 2 * PAGE);
    g_assert_false(b.shared);

    /* The hole: vma_info_find() answers the VMA above it, the backing of
     * the page is refused, and so is a range across it. */
    g_assert_cmpint(check_both_paths(holes + PAGE, PAGE, &v, &b), ==, -EFAULT);
    g_assert_cmphex(v.start, ==, (uintptr_t)holes + 2 * PAGE);
    g_assert_cmpint(check_both_paths(holes, 3 * PAGE, &v, &b), ==, -EFAULT);
    g_assert_cmphex(v.start, ==, (uintptr_t)holes);

    /* Two files side by side: one range across both is refused. */
    g_assert_true(mmap(two, PAGE, PROT_READ, MAP_SHARED | MAP_FIXED, mfd, 0) ==
                  two);
    g_assert_true(mmap(two + PAGE, PAGE, PROT_READ, MAP_SHARED | MAP_FIXED, ffd,
                       0) == two + PAGE);
    g_assert_cmpint(check_both_paths(two, 2 * PAGE, &v, &b), ==, -EXDEV);
    g_assert_cmphex(v.end, ==, (uintptr_t)two + PAGE);

    munmap(shared, 4 * PAGE);
    munmap(anon, 2 * PAGE);
    munmap(ro, 2 * PAGE);
    munmap(priv, 2 * PAGE);
    munmap(holes, PAGE);
    munmap(holes + 2 * PAGE, PAGE);
    munmap(two, 2 * PAGE);
    close(mfd);
    close(ffd);
    unlink(path);
}

/* ---- the line parser ---------------------------------------------------- */

static void assert_parses(const char *line, uint64_t start, uint64_t end,
                          int prot, bool shared, uint64_t offset, uint64_t dev,
                          uint64_t ino, const char *name)
{
    struct vma_info v;

    g_assert_true(vma_info_parse_line(line, strlen(line), &v));
    g_assert_cmphex(v.start, ==, start);
    g_assert_cmphex(v.end, ==, end);
    g_assert_cmpint(v.prot, ==, prot);
    g_assert_cmpint(v.shared, ==, shared);
    g_assert_cmphex(v.offset, ==, offset);
    g_assert_cmpuint(v.dev, ==, dev);
    g_assert_cmpuint(v.ino, ==, ino);
    g_assert_cmpstr(v.name, ==, name);
}

static void test_parse_line(void)
{
    const int rw = PROT_READ | PROT_WRITE;

    assert_parses("7f0000000000-7f0000004000 rw-s 00001000 00:01 1234       "
                  "                   /srv/dir with spaces/guest ram",
                  0x7f0000000000, 0x7f0000004000, rw, true, 0x1000,
                  makedev(0, 1), 1234, "/srv/dir with spaces/guest ram");
    assert_parses("7f0000000000-7f0000200000 rw-s 00000000 00:01 99 "
                  "/memfd:ram (deleted)",
                  0x7f0000000000, 0x7f0000200000, rw, true, 0, makedev(0, 1),
                  99, "/memfd:ram (deleted)");
    /* No name: the kernel still prints the space after the inode. */
    assert_parses("7f0000010000-7f0000011000 r--p 00000000 00:00 0 ",
                  0x7f0000010000, 0x7f0000011000, PROT_READ, false, 0, 0, 0,
                  "");
    assert_parses("7f0000010000-7f0000011000 ---p 00000000 00:00 0",
                  0x7f0000010000, 0x7f0000011000, 0, false, 0, 0, 0, "");
    assert_parses("555555560000-555555581000 rw-p 00000000 00:00 0          "
                  "                [heap]",
                  0x555555560000, 0x555555581000, rw, false, 0, 0, 0, "[heap]");
    assert_parses("7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0          "
                  "                [stack]",
                  0x7ffffffde000, 0x7ffffffff000, rw, false, 0, 0, 0,
                  "[stack]");
    assert_parses("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  "
                  "                [vsyscall]",
                  0xffffffffff600000, 0xffffffffff601000, PROT_EXEC, false, 0,
                  0, 0, "[vsyscall]");
    /* Huge offset and inode; a minor above 255 (printed wider than %02x). */
    assert_parses("7f0000000000-7f0000001000 r-xs fffffffffffff000 fd:1f0 "
                  "18446744073709551615 /dev/mem",
                  0x7f0000000000, 0x7f0000001000, PROT_READ | PROT_EXEC, true,
                  0xfffffffffffff000, makedev(0xfd, 0x1f0), UINT64_MAX,
                  "/dev/mem");
    /* Only len bytes count: the next line is not part of the name. */
    {
        const char *two = "1000-2000 r--p 00000000 08:01 7 /bin/a\n"
                          "2000-3000 r--p 00000000 08:01 7 /bin/a\n";
        struct vma_info v;

        g_assert_true(vma_info_parse_line(two, strchr(two, '\n') - two, &v));
        g_assert_cmpstr(v.name, ==, "/bin/a");
        g_assert_cmpuint(v.dev, ==, makedev(8, 1));
    }
    /* A line longer than the name can hold: the fields are read, the name
     * is cut, still NUL-terminated. */
    {
        g_autofree char *long_name = g_strnfill(1000, 'a');
        g_autofree char *line =
            g_strdup_printf("1000-2000 r--s 00000000 08:01 7 /%s", long_name);
        struct vma_info v;

        g_assert_true(vma_info_parse_line(line, strlen(line), &v));
        g_assert_cmphex(v.end, ==, 0x2000);
        g_assert_cmpuint(strlen(v.name), <, sizeof(v.name));
        g_assert_true(g_str_has_prefix(v.name, "/aaaa"));
    }

    /* Not maps lines. */
    {
        static const char *const bad[] = {
            "",
            "garbage",
            "1000-2000",
            "1000 r--p 00000000 08:01 7 /no/dash",
            "1000-zzzz r--p 00000000 08:01 7 /bad/end",
            "1000-2000 r--p 00000000 08:01",       /* no inode */
            "1000-2000 r--p 00000000 0801 7 /x",   /* device without ':' */
            "1000-2000 r--p 00000000 08-01 7 /x",  /* device with '-' */
            "1000-2000 r-- 00000000 08:01 7 /x",   /* 3-letter perms */
            "1000-2000 r--pp 00000000 08:01 7 /x", /* 5-letter perms */
            "1000-2000 r--p offset 08:01 7 /x",
            "1000-2000 r--p 00000000 08:01 inode /x",
        };
        struct vma_info v;

        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
            g_test_message("refused: \"%s\"", bad[i]);
            g_assert_false(vma_info_parse_line(bad[i], strlen(bad[i]), &v));
        }
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vma/query-and-text-agree", test_query_and_text_agree);
    g_test_add_func("/vma/parse-line", test_parse_line);
    return g_test_run();
}
