/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The new-binary probe (cpr/binary-probe.c) and its blocker in
 * cprkit_check_update(): which state formats a binary reads, found
 * without running it. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cprkit-internal.h"
#include "test-util.h"

static char *tmpdir;

static char *build_path(const char *rel)
{
    return g_build_filename(g_getenv("G_TEST_BUILDDIR"), rel, NULL);
}

/* A copy of src in tmpdir, executable, with extra bytes appended. */
static char *copy_binary(const char *src, const char *name, const void *tail,
                         size_t tail_len)
{
    g_autofree char *data = NULL;
    g_autoptr(GByteArray) out = g_byte_array_new();
    char *dst = g_build_filename(tmpdir, name, NULL);
    gsize size;

    g_assert_true(g_file_get_contents(src, &data, &size, NULL));
    g_byte_array_append(out, (const guint8 *)data, (guint)size);
    if (tail_len)
        g_byte_array_append(out, tail, (guint)tail_len);
    g_assert_true(
        g_file_set_contents(dst, (const char *)out->data, out->len, NULL));
    g_assert_cmpint(chmod(dst, 0755), ==, 0);
    return dst;
}

static int probe(const char *path, struct binary_probe *p, char **error)
{
    int r = binary_probe(path, p, error);

    if (r < 0)
        g_test_message("%s: %s", path, *error);
    else
        g_test_message("%s: reader %s, %u format(s)", path,
                       p->reader ? p->reader : "(none)", p->formats->len);
    return r;
}

static bool reads_our_format(const struct binary_probe *p)
{
    for (guint i = 0; i < p->formats->len; i++)
        if (g_array_index(p->formats, int64_t, i) == CPRKIT_BUILD_FORMAT_MAJOR)
            return true;
    return false;
}

/* This test program has the core linked in statically. */
static void test_static(void)
{
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
    g_autofree char *error = NULL;
    struct binary_probe p;

    g_assert_cmpint(probe(self, &p, &error), ==, 0);
    g_assert_cmpstr(p.reader, ==, self);
    g_assert_true(reads_our_format(&p));
    binary_probe_clear(&p);
}

/* cprtest-app links libcprkit.so from the build tree through its
 * DT_RUNPATH ($ORIGIN/...): found by resolving DT_NEEDED as ld.so does. */
static void test_dynamic(void)
{
    g_autofree char *app = build_path("shim/cprtest-app");
    g_autofree char *error = NULL;
    g_autofree char *base = NULL;
    struct binary_probe p;

    g_assert_true(g_file_test(app, G_FILE_TEST_IS_EXECUTABLE));
    g_assert_cmpint(probe(app, &p, &error), ==, 0);
    g_assert_nonnull(p.reader);
    base = g_path_get_basename(p.reader);
    g_assert_true(g_str_has_prefix(base, "libcprkit"));
    g_assert_true(reads_our_format(&p));
    binary_probe_clear(&p);
}

/* /bin/true reads nothing; with the preload shim in LD_PRELOAD, the shim
 * is what reads the state. */
static void test_plain_and_preloaded(void)
{
    g_autofree char *shim = build_path("../shim/preload/libcprkit-preload.so");
    g_autofree char *real_shim = NULL;
    g_autofree char *error = NULL;
    g_autofree char *old = g_strdup(g_getenv("LD_PRELOAD"));
    struct binary_probe p;

    g_assert_cmpint(probe("/bin/true", &p, &error), ==, 0);
    g_assert_null(p.reader);
    g_assert_cmpuint(p.formats->len, ==, 0);
    binary_probe_clear(&p);

    g_assert_true(g_file_test(shim, G_FILE_TEST_EXISTS));
    real_shim = realpath(shim, NULL);
    g_setenv("LD_PRELOAD", real_shim, true);
    g_assert_cmpint(probe("/bin/true", &p, &error), ==, 0);
    if (old)
        g_setenv("LD_PRELOAD", old, true);
    else
        g_unsetenv("LD_PRELOAD");
    g_assert_cmpstr(p.reader, ==, real_shim);
    g_assert_true(reads_our_format(&p));
    binary_probe_clear(&p);
}

static void test_refused(void)
{
    g_autofree char *script = g_build_filename(tmpdir, "script", NULL);
    g_autofree char *text = g_build_filename(tmpdir, "text", NULL);
    g_autofree char *other = NULL;
    g_autofree char *truncated = g_build_filename(tmpdir, "truncated", NULL);
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
    g_autofree char *head = NULL;
    struct binary_probe p;
    ElfW(Ehdr) * eh;
    gsize size;
    int fd;

    g_assert_true(
        g_file_set_contents(script, "#!/bin/sh\nexec true\n", -1, NULL));
    g_assert_true(g_file_set_contents(text, "hello\n", -1, NULL));
    {
        g_autofree char *error = NULL;

        g_assert_cmpint(probe(script, &p, &error), ==, -ENOEXEC);
        g_assert_true(p.is_script);
        g_assert_nonnull(strstr(error, "is a script"));
        binary_probe_clear(&p);
    }
    {
        g_autofree char *error = NULL;

        g_assert_cmpint(probe(text, &p, &error), ==, -ENOEXEC);
        g_assert_nonnull(strstr(error, "not an ELF executable"));
        binary_probe_clear(&p);
    }
    {
        g_autofree char *error = NULL;

        g_assert_cmpint(probe("/nonexistent/vmm", &p, &error), ==, -ENOENT);
        binary_probe_clear(&p);
    }
    /* Another machine: this binary with e_machine changed. */
    other = copy_binary(self, "other-machine", NULL, 0);
    g_assert_true(g_file_get_contents(other, &head, &size, NULL));
    eh = (ElfW(Ehdr) *)head;
    eh->e_machine = eh->e_machine == EM_AARCH64 ? EM_X86_64 : EM_AARCH64;
    g_assert_true(g_file_set_contents(other, head, (gssize)size, NULL));
    {
        g_autofree char *error = NULL;

        g_assert_cmpint(probe(other, &p, &error), ==, -ENOEXEC);
        g_assert_nonnull(strstr(error, "another machine"));
        binary_probe_clear(&p);
    }
    /* Only the ELF header: the program headers are missing. */
    fd = open(truncated, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    g_assert_cmpint(fd, >=, 0);
    {
        g_autofree char *orig = NULL;

        g_assert_true(g_file_get_contents(self, &orig, NULL, NULL));
        g_assert_cmpint(write(fd, orig, sizeof(ElfW(Ehdr))), ==,
                        (ssize_t)sizeof(ElfW(Ehdr)));
    }
    close(fd);
    {
        g_autofree char *error = NULL;

        g_assert_cmpint(probe(truncated, &p, &error), ==, -ENOEXEC);
        g_assert_nonnull(strstr(error, "truncated ELF program headers"));
        binary_probe_clear(&p);
    }
}

/* The blocker: what `cpr-exec upgrade --to` gets before anything is
 * suspended. */
static void test_check_update(void)
{
    static const char other_format[] = "CPRKIT-FORMAT-READS=999;";
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
    g_autofree char *script = g_build_filename(tmpdir, "wrapper", NULL);
    g_autofree char *newer = NULL;
    cprkit_ctx *ctx = NULL;

    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    g_assert_cmpint(cprkit_check_update(ctx, self), ==, 0);

    g_assert_cmpint(cprkit_check_update(ctx, "/bin/true"), ==, -ENOEXEC);
    g_test_message("%s", cprkit_last_error(ctx));
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "does not use libcprkit"));

    g_assert_true(
        g_file_set_contents(script, "#!/bin/sh\nexec true\n", -1, NULL));
    g_assert_cmpint(chmod(script, 0755), ==, 0);
    g_assert_cmpint(cprkit_check_update(ctx, script), ==, -ENOEXEC);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "is a script"));

    /* A static cprkit of another format only: /bin/true with a marker. */
    newer = copy_binary("/bin/true", "newer-format", other_format,
                        sizeof(other_format) - 1);
    g_assert_cmpint(cprkit_check_update(ctx, newer), ==, -EPROTONOSUPPORT);
    g_test_message("%s", cprkit_last_error(ctx));
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "reads state format 999"));
    cprkit_free(ctx);
}

/* The child of /probe/replaced-on-disk: a copy of this program whose file
 * was replaced (renamed over) after it started, as a package upgrade
 * does. dir holds "keep" (a copy of the original) and "prog" (now another
 * binary). */
static int replaced_child(const char *dir)
{
    g_autofree char *prog = g_build_filename(dir, "prog", NULL);
    g_autofree char *keep = g_build_filename(dir, "keep", NULL);
    g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
    struct command_line self = {0};
    cprkit_ctx *ctx = NULL;
    char go;

    /* Wait until the parent has replaced our file. */
    g_assert_cmpint(read(STDIN_FILENO, &go, 1), ==, 1);
    g_free(exe);
    exe = g_file_read_link("/proc/self/exe", NULL);
    g_assert_true(g_str_has_suffix(exe, " (deleted)"));
    g_assert_cmpint(cprkit_new(&ctx), ==, 0);

    /* The update itself would be fine; its rollback could not be. */
    g_assert_cmpint(cprkit_check_update(ctx, prog), ==, -ENOENT);
    printf("check: %s\n", cprkit_last_error(ctx));
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "--rollback-to"));
    g_assert_cmpint(command_line_of_self(ctx, &self), ==, -ENOENT);

    /* The new file is not this program. */
    g_assert_cmpint(cprkit_set_rollback_binary(ctx, prog), ==, -ESTALE);
    printf("prog as rollback: %s\n", cprkit_last_error(ctx));
    g_assert_cmpint(cprkit_set_rollback_binary(ctx, "keep"), ==, -EINVAL);

    /* The copy is: the update may go ahead, the rollback runs the copy. */
    g_assert_cmpint(cprkit_set_rollback_binary(ctx, keep), ==, 0);
    g_assert_cmpint(cprkit_check_update(ctx, prog), ==, 0);
    g_assert_cmpint(command_line_of_self(ctx, &self), ==, 0);
    g_assert_cmpstr(self.path, ==, keep);
    g_assert_cmpstr(self.argv[1], ==, "--replaced-child");
    command_line_clear(&self);

    /* Changed after it was set: refused again. */
    {
        FILE *f = fopen(keep, "a");

        g_assert_nonnull(f);
        fputc('x', f);
        fclose(f);
    }
    g_assert_cmpint(cprkit_check_update(ctx, prog), ==, -ESTALE);
    printf("changed copy: %s\n", cprkit_last_error(ctx));
    cprkit_free(ctx);
    return 0;
}

static void test_replaced_on_disk(void)
{
    g_autofree char *dir = g_build_filename(tmpdir, "replaced", NULL);
    g_autofree char *prog = NULL, *keep = NULL, *next = NULL;
    g_autofree char *out = NULL;
    g_autoptr(GError) error = NULL;
    const char *self = test_self_exe();
    static const char newer[] = "new version";
    int child_in, child_out, status;
    GPid pid;

    g_assert_cmpint(g_mkdir(dir, 0700), ==, 0);
    prog = copy_binary(self, "replaced/prog", NULL, 0);
    keep = copy_binary(self, "replaced/keep", NULL, 0);
    next = copy_binary(self, "replaced/prog.new", newer, sizeof(newer));
    {
        const char *argv[] = {prog, "--replaced-child", dir, NULL};

        g_assert_true(g_spawn_async_with_pipes(
            NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
            &pid, &child_in, &child_out, NULL, &error));
    }
    /* The package manager's way: rename the new version over it. */
    g_assert_cmpint(rename(next, prog), ==, 0);
    g_assert_cmpint(write(child_in, "g", 1), ==, 1);
    close(child_in);
    {
        g_autoptr(GIOChannel) ch = g_io_channel_unix_new(child_out);

        g_io_channel_set_close_on_unref(ch, true);
        g_assert_cmpint(g_io_channel_read_to_end(ch, &out, NULL, NULL), ==,
                        G_IO_STATUS_NORMAL);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_test_message("%s", out);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    g_assert_nonnull(strstr(out, "was replaced or deleted on disk"));
    g_assert_nonnull(strstr(out, "is not the running program"));
}

int main(int argc, char **argv)
{
    int r;

    if (argc == 3 && !strcmp(argv[1], "--replaced-child"))
        return replaced_child(argv[2]);
    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("cprkit-probe-XXXXXX", NULL);
    g_assert_nonnull(tmpdir);
    g_test_add_func("/probe/static", test_static);
    g_test_add_func("/probe/dynamic", test_dynamic);
    g_test_add_func("/probe/plain-and-preloaded", test_plain_and_preloaded);
    g_test_add_func("/probe/refused", test_refused);
    g_test_add_func("/probe/check-update", test_check_update);
    g_test_add_func("/probe/replaced-on-disk", test_replaced_on_disk);
    r = g_test_run();
    {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);

        g_assert_cmpint(system(cmd), ==, 0);
    }
    return r;
}
