/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Named fd registry, fd identification, application sections, and the
 * exec path's failure handling (in-process: execve fails, we keep going). */
#include <elf.h>
#include <link.h>
#include <sys/epoll.h>
#include <sys/stat.h>

#include "cprkit-internal.h"
#include "test-util.h"

static cprkit_ctx *new_ctx(void)
{
    cprkit_ctx *ctx;

    g_assert_cmpint(cprkit_new(&ctx), ==, 0);
    return ctx;
}

static enum cprkit_fd_type type_of(int fd)
{
    struct fd_identity id;

    g_assert_cmpint(fd_identify(fd, &id), ==, 0);
    return id.type;
}

static void test_identify_types(void)
{
    g_autofree char *tmp_path = NULL;
    int p[2], sv[2], fd;

    fd = make_memfd_with("x", "y");
    g_assert_cmpint(type_of(fd), ==, CPRKIT_FD_MEMFD);
    close(fd);
    fd = eventfd(0, EFD_CLOEXEC);
    g_assert_cmpint(type_of(fd), ==, CPRKIT_FD_EVENTFD);
    close(fd);
    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpint(type_of(p[0]), ==, CPRKIT_FD_PIPE);
    g_assert_cmpint(type_of(p[1]), ==, CPRKIT_FD_PIPE);
    close(p[0]);
    close(p[1]);
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    g_assert_cmpint(type_of(sv[0]), ==, CPRKIT_FD_SOCKET);
    close(sv[0]);
    close(sv[1]);
    fd = g_file_open_tmp("cprkit-test-XXXXXX", &tmp_path, NULL);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(type_of(fd), ==, CPRKIT_FD_REGULAR_FILE);
    close(fd);
    unlink(tmp_path);
    fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    g_assert_cmpint(type_of(fd), ==, CPRKIT_FD_DIRECTORY);
    close(fd);
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(type_of(fd), ==, CPRKIT_FD_CHAR_DEVICE);
    close(fd);
    fd = epoll_create1(EPOLL_CLOEXEC);
    g_assert_cmpint(type_of(fd), ==, CPRKIT_FD_OTHER);
    close(fd);

    g_assert_cmpstr(cprkit_fd_type_name(CPRKIT_FD_VFIO_DEVICE), ==, "vfio-device");
    g_assert_cmpstr(cprkit_fd_type_name((enum cprkit_fd_type)99), ==, "invalid");
}

static void test_save_find_remove(void)
{
    cprkit_ctx *ctx = new_ctx();
    int ev = eventfd(0, EFD_CLOEXEC);
    int mem = make_memfd_with("m", "data");
    char long_name[CPRKIT_NAME_MAX + 2];

    g_assert_cmpint(cprkit_fd_save(ctx, "irq", 0, ev), ==, 0);
    g_assert_cmpint(cprkit_fd_save(ctx, "irq", 1, mem), ==, 0);
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, 2);
    g_assert_cmpint(cprkit_fd_find(ctx, "irq", 0, CPRKIT_FD_ANY), ==, ev);
    g_assert_cmpint(cprkit_fd_find(ctx, "irq", 0, CPRKIT_FD_EVENTFD), ==, ev);
    g_assert_cmpint(cprkit_fd_find(ctx, "irq", 1, CPRKIT_FD_MEMFD), ==, mem);

    /* Wrong type: a clear error naming both types. */
    g_assert_cmpint(cprkit_fd_find(ctx, "irq", 0, CPRKIT_FD_MEMFD), ==,
                    -EMEDIUMTYPE);
    g_assert_cmpstr(cprkit_last_error(ctx), ==,
                    "preserved fd 'irq'/0 has type eventfd, expected memfd");
    g_assert_cmpint(cprkit_fd_find(ctx, "irq", 2, CPRKIT_FD_ANY), ==, -ENOENT);
    g_assert_cmpint(cprkit_fd_find(ctx, "other", 0, CPRKIT_FD_ANY), ==, -ENOENT);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "'other'/0"));

    /* Saving the same (name, id) again replaces it. */
    g_assert_cmpint(cprkit_fd_save(ctx, "irq", 1, ev), ==, 0);
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, 2);
    g_assert_cmpint(cprkit_fd_find(ctx, "irq", 1, CPRKIT_FD_EVENTFD), ==, ev);

    g_assert_cmpint(cprkit_fd_remove(ctx, "irq", 1), ==, 0);
    g_assert_cmpint(cprkit_fd_remove(ctx, "irq", 1), ==, -ENOENT);
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, 1);
    /* Removing does not close: the fd belongs to the application. */
    g_assert_true(fd_is_open(mem));

    /* Bad input. */
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    g_assert_cmpint(cprkit_fd_save(ctx, "", 0, ev), ==, -EINVAL);
    g_assert_cmpint(cprkit_fd_save(ctx, NULL, 0, ev), ==, -EINVAL);
    g_assert_cmpint(cprkit_fd_save(ctx, long_name, 0, ev), ==, -EINVAL);
    g_assert_cmpint(cprkit_fd_save(ctx, "bad\nname", 0, ev), ==, -EINVAL);
    g_assert_cmpint(cprkit_fd_save(ctx, "neg", 0, -1), ==, -EBADF);
    g_assert_cmpint(cprkit_fd_save(ctx, "closed", 0, 9999), ==, -EBADF);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "fd 9999"));
    g_assert_cmpint(cprkit_fd_find(ctx, NULL, 0, CPRKIT_FD_ANY), ==, -EINVAL);
    g_assert_cmpint(cprkit_fd_remove(ctx, NULL, 0), ==, -ENOENT);
    g_assert_cmpuint(cprkit_fd_count(ctx), ==, 1);

    close(ev);
    close(mem);
    cprkit_free(ctx);
}

static void test_sections(void)
{
    cprkit_ctx *ctx = new_ctx();
    const void *data;
    size_t size;

    g_assert_cmpint(cprkit_section_get(ctx, "a", &data, &size), ==, -ENOENT);
    g_assert_cmpint(cprkit_section_put(ctx, "a", "first", 5), ==, 0);
    g_assert_cmpint(cprkit_section_put(ctx, "a", "second!", 7), ==, 0);
    g_assert_cmpint(cprkit_section_get(ctx, "a", &data, &size), ==, 0);
    g_assert_cmpmem(data, size, "second!", 7);
    g_assert_cmpint(cprkit_section_put(ctx, "", "x", 1), ==, -EINVAL);
    g_assert_cmpint(cprkit_section_put(ctx, "null-data", NULL, 3), ==, -EINVAL);
    g_assert_cmpint(cprkit_section_put(ctx, "empty", NULL, 0), ==, 0);
    g_assert_cmpint(cprkit_section_get(ctx, "empty", &data, &size), ==, 0);
    g_assert_cmpuint(size, ==, 0);
    cprkit_free(ctx);
}

/* Before exec, a preserved fd that was closed or replaced is caught. */
static void test_check_unchanged(void)
{
    cprkit_ctx *ctx = new_ctx();
    int ev = eventfd(0, EFD_CLOEXEC);
    int p[2];

    g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
    g_assert_cmpint(cprkit_fd_save(ctx, "ev", 0, ev), ==, 0);
    g_assert_cmpint(fdreg_check_unchanged(ctx), ==, 0);
    g_assert_cmpint(dup3(p[0], ev, O_CLOEXEC), ==, ev);
    g_assert_cmpint(fdreg_check_unchanged(ctx), ==, -ESTALE);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "was eventfd"));
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "now pipe"));
    close(ev);
    g_assert_cmpint(fdreg_check_unchanged(ctx), ==, -EBADF);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "no longer open"));
    close(p[0]);
    close(p[1]);
    cprkit_free(ctx);
}

/* Eventfds share one anonymous inode: their eventfd-id tells them apart
 * before the exec too. */
static void test_check_unchanged_eventfd(void)
{
    cprkit_ctx *ctx = new_ctx();
    int a = eventfd(0, EFD_CLOEXEC), b = eventfd(0, EFD_CLOEXEC);
    int fresh = eventfd(0, EFD_CLOEXEC);
    int ta = dup(a), tb = dup(b);

    g_assert_cmpint(cprkit_fd_save(ctx, "irq", 0, a), ==, 0);
    g_assert_cmpint(cprkit_fd_save(ctx, "irq", 1, b), ==, 0);
    g_assert_cmpint(fdreg_check_unchanged(ctx), ==, 0);
    /* swapped */
    g_assert_cmpint(dup3(tb, a, O_CLOEXEC), ==, a);
    g_assert_cmpint(dup3(ta, b, O_CLOEXEC), ==, b);
    g_assert_cmpint(fdreg_check_unchanged(ctx), ==, -ESTALE);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "'irq'/0"));
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "was eventfd (eventfd-id"));
    /* back, then one replaced by a fresh eventfd */
    g_assert_cmpint(dup3(ta, a, O_CLOEXEC), ==, a);
    g_assert_cmpint(dup3(tb, b, O_CLOEXEC), ==, b);
    g_assert_cmpint(fdreg_check_unchanged(ctx), ==, 0);
    g_assert_cmpint(dup3(fresh, b, O_CLOEXEC), ==, b);
    g_assert_cmpint(fdreg_check_unchanged(ctx), ==, -ESTALE);
    g_assert_nonnull(strstr(cprkit_last_error(ctx), "'irq'/1"));
    close(ta);
    close(tb);
    close(fresh);
    close(a);
    close(b);
    cprkit_free(ctx);
}

/* The incoming side's shortcut: true only for the very object saved;
 * every replacement falls through to the full check. */
static void test_unchanged_fast(void)
{
    int ev = eventfd(0, EFD_CLOEXEC), other_ev = eventfd(0, EFD_CLOEXEC);
    int mem = memfd_create("fast", MFD_CLOEXEC);
    int other_mem = memfd_create("fast", MFD_CLOEXEC);
    int pp[2];
    struct fd_identity ev_id, mem_id, pipe_id;

    g_assert_cmpint(pipe2(pp, O_CLOEXEC), ==, 0);
    g_assert_cmpint(fd_identify(ev, &ev_id), ==, 0);
    g_assert_cmpint(fd_identify(mem, &mem_id), ==, 0);
    g_assert_cmpint(fd_identify(pp[0], &pipe_id), ==, 0);
    g_assert_true(fd_unchanged_fast(ev, &ev_id));
    g_assert_true(fd_unchanged_fast(mem, &mem_id));
    g_assert_true(fd_unchanged_fast(pp[0], &pipe_id));
    /* Another eventfd, another memfd, another kind at the same number. */
    g_assert_false(fd_unchanged_fast(other_ev, &ev_id));
    g_assert_false(fd_unchanged_fast(other_mem, &mem_id));
    {
        int qq[2];

        g_assert_cmpint(pipe2(qq, O_CLOEXEC), ==, 0);
        g_assert_false(fd_unchanged_fast(qq[0], &pipe_id));
        close(qq[0]);
        close(qq[1]);
    }
    g_assert_false(fd_unchanged_fast(other_ev, &mem_id));
    g_assert_false(fd_unchanged_fast(mem, &ev_id));
    /* Saved without an eventfd-id (an old blob): the full check. */
    ev_id.has_anon_id = false;
    g_assert_false(fd_unchanged_fast(ev, &ev_id));
    close(pp[0]);
    close(pp[1]);
    close(ev);
    close(other_ev);
    close(mem);
    close(other_mem);
}

/* A context with three preserved fds; the exec failure tests check that
 * they are all still open and close-on-exec afterwards. */
struct preserved {
    cprkit_ctx *ctx;
    int fds[3];
};

static void preserved_init(struct preserved *p)
{
    int pp[2];

    p->ctx = new_ctx();
    p->fds[0] = make_memfd_with("m", "content");
    p->fds[1] = eventfd(2, EFD_CLOEXEC);
    g_assert_cmpint(pipe2(pp, O_CLOEXEC), ==, 0);
    p->fds[2] = pp[0];
    close(pp[1]);
    g_assert_cmpint(cprkit_fd_save(p->ctx, "mem", 0, p->fds[0]), ==, 0);
    g_assert_cmpint(cprkit_fd_save(p->ctx, "ev", 0, p->fds[1]), ==, 0);
    g_assert_cmpint(cprkit_fd_save(p->ctx, "pipe", 0, p->fds[2]), ==, 0);
}

static void preserved_assert_intact(struct preserved *p)
{
    char buf[16] = {0};
    uint64_t count;

    for (int i = 0; i < 3; i++) {
        g_assert_true(fd_is_open(p->fds[i]));
        g_assert_true(fd_has_cloexec(p->fds[i]));
    }
    g_assert_cmpint(pread(p->fds[0], buf, sizeof(buf), 0), ==, 7);
    g_assert_cmpstr(buf, ==, "content");
    g_assert_cmpint(read(p->fds[1], &count, sizeof(count)), ==, 8);
    g_assert_cmpuint(count, ==, 2);
    g_assert_cmpint(write(p->fds[1], &count, sizeof(count)), ==, 8);
    g_assert_cmpuint(cprkit_fd_count(p->ctx), ==, 3);
}

static void preserved_clear(struct preserved *p)
{
    for (int i = 0; i < 3; i++)
        close(p->fds[i]);
    cprkit_free(p->ctx);
}

static void test_exec_missing_binary(void)
{
    struct preserved p;
    char *argv[] = {"nope", NULL};
    int fds_before;

    preserved_init(&p);
    fds_before = count_open_fds();
    g_assert_cmpint(cprkit_exec(p.ctx, "/nonexistent/cprkit-new", argv, NULL),
                    ==, -ENOENT);
    g_assert_cmpstr(cprkit_last_error(p.ctx), ==,
                    "new binary '/nonexistent/cprkit-new': No such file or "
                    "directory");
    g_assert_cmpint(count_open_fds(), ==, fds_before);
    preserved_assert_intact(&p);
    preserved_clear(&p);
}

static char *write_temp_data(const void *data, size_t size, mode_t mode)
{
    char *path = NULL;
    int fd = g_file_open_tmp("cprkit-exec-XXXXXX", &path, NULL);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, data, size), ==, (ssize_t)size);
    close(fd);
    g_assert_cmpint(chmod(path, mode), ==, 0);
    return path;
}

static char *write_temp_file(const char *content, mode_t mode)
{
    return write_temp_data(content, strlen(content), mode);
}

static void test_exec_not_executable(void)
{
    struct preserved p;
    char *argv[] = {"x", NULL};
    g_autofree char *path = write_temp_file("#!/bin/sh\nexit 0\n", 0644);
    int fds_before;

    /* root bypasses permission bits for reading, but X_OK still needs an
     * execute bit somewhere. */
    preserved_init(&p);
    fds_before = count_open_fds();
    g_assert_cmpint(cprkit_exec(p.ctx, path, argv, NULL), ==, -EACCES);
    g_assert_nonnull(strstr(cprkit_last_error(p.ctx), "is not executable"));
    g_assert_cmpint(cprkit_exec(p.ctx, "/tmp", argv, NULL), ==, -EACCES);
    g_assert_nonnull(strstr(cprkit_last_error(p.ctx), "not a regular file"));
    g_assert_cmpint(count_open_fds(), ==, fds_before);
    preserved_assert_intact(&p);
    unlink(path);
    preserved_clear(&p);
}

/* A copy of this program whose PT_INTERP names no file: it passes every
 * pre-check (the new-binary probe finds the core linked in), then execve
 * itself fails with ENOENT. */
static char *binary_without_interpreter(void)
{
    g_autofree char *data = NULL;
    ElfW(Ehdr) *eh;
    ElfW(Phdr) *ph;
    gsize size;
    bool patched = false;

    g_assert_true(g_file_get_contents(test_self_exe(), &data, &size, NULL));
    eh = (ElfW(Ehdr) *)data;
    ph = (ElfW(Phdr) *)(data + eh->e_phoff);
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_INTERP)
            continue;
        /* "/lib64/ld-linux..." becomes "Xlib64/ld-linux...". */
        data[ph[i].p_offset] = 'X';
        patched = true;
    }
    g_assert_true(patched);
    return write_temp_data(data, size, 0755);
}

/* Passes every pre-check, so the fds really lose FD_CLOEXEC and execve
 * really runs and fails (ENOENT: no interpreter): then everything must be
 * put back. */
static void test_exec_fails_in_execve(void)
{
    struct preserved p;
    char *argv[] = {"garbage", NULL};
    g_autofree char *path = NULL;
    int fds_before;

    /* valgrind returns the errors of its own pre-exec checks, but an
     * execve that fails after them (here: no ELF interpreter) kills it
     * ("I can't recover from execve() failing"). The plain and ASan runs
     * test this path. */
    if (running_under_valgrind()) {
        g_test_skip("valgrind cannot survive an execve that fails after "
                    "its own checks");
        return;
    }
    path = binary_without_interpreter();
    preserved_init(&p);
    fds_before = count_open_fds();
    g_assert_cmpint(cprkit_exec(p.ctx, path, argv, NULL), ==, -ENOENT);
    g_assert_nonnull(strstr(cprkit_last_error(p.ctx), "execve"));
    /* The blob memfd is gone again, nothing else leaked. */
    g_assert_cmpint(count_open_fds(), ==, fds_before);
    preserved_assert_intact(&p);
    g_assert_null(getenv(CPRKIT_STATE_FD_ENV));
    unlink(path);
    preserved_clear(&p);
}

static void test_exec_refuses(void)
{
    struct preserved p;
    char *argv[] = {"true", NULL};
    struct cprkit_exec_opts bad_opts = {.size = 1};
    struct cprkit_exec_opts no_argv = {.size = sizeof(no_argv),
                                       .rollback_path = "/bin/true"};

    preserved_init(&p);
    g_assert_cmpint(cprkit_exec(p.ctx, test_self_exe(), NULL, NULL), ==, -EINVAL);
    g_assert_cmpint(cprkit_exec(p.ctx, test_self_exe(), argv, &bad_opts), ==,
                    -EINVAL);
    g_assert_cmpint(cprkit_exec(p.ctx, test_self_exe(), argv, &no_argv), ==,
                    -EINVAL);
    g_assert_nonnull(strstr(cprkit_last_error(p.ctx), "rollback_argv"));

    /* A changed preserved fd blocks the exec before anything happens. */
    close(p.fds[2]);
    g_assert_cmpint(cprkit_exec(p.ctx, test_self_exe(), argv, NULL), ==, -EBADF);
    g_assert_nonnull(strstr(cprkit_last_error(p.ctx), "'pipe'/0"));
    p.fds[2] = open("/dev/null", O_RDONLY | O_CLOEXEC);

    /* Not while an incoming update is still uncommitted. */
    p.ctx->incoming = true;
    g_assert_cmpint(cprkit_exec(p.ctx, test_self_exe(), argv, NULL), ==, -EBUSY);
    p.ctx->incoming = false;
    preserved_clear(&p);
}

/* Registered blockers refuse the check and the exec before anything
 * happens, all listed in one message, until removed. */
static void test_registered_blockers(void)
{
    struct preserved p;
    char *argv[] = {"true", NULL};
    int fds_before;

    preserved_init(&p);
    g_assert_cmpint(cprkit_check_update(p.ctx, test_self_exe()), ==, 0);
    g_assert_cmpint(ctx_add_blocker(p.ctx, "vfio",
                                    "device 0000:00:03.0 is "
                                    "an mdev"),
                    ==, 0);
    g_assert_cmpint(ctx_add_blocker(p.ctx, "app", "a migration is running"), ==,
                    0);
    g_assert_cmpint(ctx_add_blocker(p.ctx, "app", "a migration is running"), ==,
                    -EEXIST);
    g_assert_cmpint(ctx_add_blocker(p.ctx, "", "x"), ==, -EINVAL);
    g_assert_cmpint(ctx_add_blocker(p.ctx, "app", ""), ==, -EINVAL);

    g_assert_cmpint(cprkit_check_update(p.ctx, test_self_exe()), ==, -EOPNOTSUPP);
    g_assert_cmpstr(cprkit_last_error(p.ctx), ==,
                    "the update is blocked: vfio: device 0000:00:03.0 is an "
                    "mdev; app: a migration is running");
    fds_before = count_open_fds();
    g_assert_cmpint(cprkit_exec(p.ctx, test_self_exe(), argv, NULL), ==,
                    -EOPNOTSUPP);
    g_assert_cmpint(count_open_fds(), ==, fds_before);
    preserved_assert_intact(&p);

    g_assert_cmpint(ctx_remove_blocker(p.ctx, "vfio", "other"), ==, -ENOENT);
    g_assert_cmpint(ctx_remove_blocker(p.ctx, "vfio",
                                       "device 0000:00:03.0 "
                                       "is an mdev"),
                    ==, 1);
    g_assert_cmpint(cprkit_check_update(p.ctx, test_self_exe()), ==, -EOPNOTSUPP);
    g_assert_cmpstr(cprkit_last_error(p.ctx), ==,
                    "the update is blocked: app: a migration is running");
    g_assert_cmpint(ctx_add_blocker(p.ctx, "app", "second"), ==, 0);
    g_assert_cmpint(ctx_remove_blocker(p.ctx, "app", NULL), ==, 2);
    g_assert_cmpint(ctx_remove_blocker(p.ctx, "app", NULL), ==, -ENOENT);
    g_assert_cmpint(cprkit_check_update(p.ctx, test_self_exe()), ==, 0);
    preserved_clear(&p);
}

static void test_command_line_of_self(void)
{
    cprkit_ctx *ctx = new_ctx();
    struct command_line cmd = {0};
    g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);

    g_assert_cmpint(command_line_of_self(ctx, &cmd), ==, 0);
    g_assert_cmpstr(cmd.path, ==, exe);
    g_assert_nonnull(cmd.argv);
    g_assert_true(g_str_has_suffix(cmd.argv[0], "test-fdreg"));
    command_line_clear(&cmd);
    cprkit_free(ctx);
}

static void append_fd(void *userdata, const char *name, int id, int fd,
                      enum cprkit_fd_type type)
{
    g_string_append_printf(userdata, "%s/%d=%d:%s ", name, id, fd,
                           cprkit_fd_type_name(type));
}

/* cprkit_fd_foreach() lists in save order and claims nothing. */
static void test_foreach(void)
{
    cprkit_ctx *ctx = new_ctx();
    g_autoptr(GString) s = g_string_new(NULL);
    g_autofree char *want = NULL;
    int efd = eventfd(0, EFD_CLOEXEC);
    int pfd[2];

    g_assert_cmpint(efd, >=, 0);
    g_assert_cmpint(pipe2(pfd, O_CLOEXEC), ==, 0);
    g_assert_cmpint(cprkit_fd_save(ctx, "b", 1, efd), ==, 0);
    g_assert_cmpint(cprkit_fd_save(ctx, "a", 0, pfd[0]), ==, 0);
    cprkit_fd_foreach(ctx, append_fd, s);
    want = g_strdup_printf("b/1=%d:eventfd a/0=%d:pipe ", efd, pfd[0]);
    g_assert_cmpstr(s->str, ==, want);
    cprkit_free(ctx);
    close(efd);
    close(pfd[0]);
    close(pfd[1]);
}

/* The registry's index (cpr/fd-index.c) against a plain array, with
 * hashes made to collide and runs that wrap around the table's end: adds,
 * duplicates refused, removes from anywhere in a run, lookups of all. */
static void test_index_against_reference(void)
{
    enum { N = 600 };
    struct fd_index x = {0};
    struct fd_entry entries[N];
    bool in[N] = {false};
    char names[N][16];
    uint64_t seed = 12345;

    for (unsigned i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "e%u", i % 50);
        entries[i] = (struct fd_entry){.name = names[i], .id = (int)(i / 50)};
        /* A few home slots only, near the end of any table size: long
         * runs that wrap. */
        entries[i].hash = (guint)(i % 5 == 0 ? 0xffffffffu - i % 3 : i % 7);
    }
    for (unsigned step = 0; step < 20000; step++) {
        unsigned i;

        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        i = (unsigned)(seed % N);
        if (!in[i]) {
            g_assert_cmpint(fd_index_add(&x, &entries[i]), ==, 0);
            in[i] = true;
        } else if (seed % 3 == 0) {
            struct fd_entry twin = entries[i];

            g_assert_cmpint(fd_index_add(&x, &twin), ==, -EEXIST);
        } else {
            fd_index_remove(&x, &entries[i]);
            in[i] = false;
        }
        if (step % 97 == 0 || step > 19900) {
            size_t count = 0;

            for (unsigned j = 0; j < N; j++) {
                struct fd_entry *got = fd_index_lookup(
                    &x, entries[j].hash, entries[j].name, entries[j].id);

                g_assert_true(got == (in[j] ? &entries[j] : NULL));
                count += in[j];
            }
            g_assert_cmpuint(x.count, ==, count);
        }
    }
    /* Removing what is not in changes nothing. */
    for (unsigned j = 0; j < N; j++)
        if (!in[j])
            fd_index_remove(&x, &entries[j]);
    fd_index_clear(&x);
    g_assert_null(fd_index_lookup(&x, 0, "e0", 0));
    fd_index_remove(&x, &entries[0]);
}

/* Sized for n, the index takes n entries without growing. */
static void test_index_reserve(void)
{
    struct fd_index x = {0};
    struct fd_entry entries[1000];
    struct fd_entry **table;

    g_assert_cmpint(fd_index_reserve(&x, 1000), ==, 0);
    table = x.entries;
    for (unsigned i = 0; i < 1000; i++) {
        entries[i] = (struct fd_entry){.name = "same", .id = (int)i};
        entries[i].hash = fd_entry_hash(&entries[i]);
        g_assert_cmpint(fd_index_add(&x, &entries[i]), ==, 0);
    }
    g_assert_true(x.entries == table);
    g_assert_cmpuint(x.mask + 1, >=, 2000);
    g_assert_cmpint(fd_index_reserve(&x, SIZE_MAX / 2), ==, -ENOMEM);
    fd_index_clear(&x);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/fdident/types", test_identify_types);
    g_test_add_func("/fdreg/save-find-remove", test_save_find_remove);
    g_test_add_func("/fdreg/foreach", test_foreach);
    g_test_add_func("/fdreg/index-against-reference",
                    test_index_against_reference);
    g_test_add_func("/fdreg/index-reserve", test_index_reserve);
    g_test_add_func("/sections/put-get", test_sections);
    g_test_add_func("/fdreg/check-unchanged", test_check_unchanged);
    g_test_add_func("/fdreg/unchanged-fast", test_unchanged_fast);
    g_test_add_func("/fdreg/check-unchanged-eventfd",
                    test_check_unchanged_eventfd);
    g_test_add_func("/exec/missing-binary", test_exec_missing_binary);
    g_test_add_func("/exec/not-executable", test_exec_not_executable);
    g_test_add_func("/exec/fails-in-execve", test_exec_fails_in_execve);
    g_test_add_func("/exec/refuses", test_exec_refuses);
    g_test_add_func("/exec/registered-blockers", test_registered_blockers);
    g_test_add_func("/exec/command-line-of-self", test_command_line_of_self);
    return g_test_run();
}
