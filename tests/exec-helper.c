/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test program for real exec hand-offs, using only the public API of
 * libcprkit.so as an application would. Roles:
 *
 *   exec-helper old NEW_BINARY MODE   preserve fds and exec NEW_BINARY
 *   exec-helper new MODE [FD]         the new binary: restore or roll back
 *   exec-helper check-closed FD...    exit 0 iff none of the fds is open
 *
 * MODE: normal | fail-first | wrong-type | missing | close-before-load
 * Output lines on stdout are checked by test-exec.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cprkit/cprkit.h"

#define MEM_CONTENT "memfd-payload"
#define PIPE_CONTENT "pipe-data"
#define SOCK_CONTENT "sock-msg"
#define EVENT_COUNT 5
#define APP_STATE "application state v1"

__attribute__((format(printf, 1, 2))) static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    exit(1);
}

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond))                                                           \
            die(__VA_ARGS__);                                                  \
    } while (0)

static void log_to_stderr(void *userdata, int priority, const char *msg)
{
    fprintf(stderr, "[%s] cprkit<%d>: %s\n", (const char *)userdata, priority,
            msg);
}

static cprkit_ctx *new_ctx(const char *role)
{
    cprkit_ctx *ctx;

    CHECK(cprkit_new(&ctx) == 0, "cprkit_new");
    cprkit_set_log_fn(ctx, log_to_stderr, (void *)role);
    cprkit_set_log_priority(ctx, 7);
    return ctx;
}

static bool has_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);

    return flags >= 0 && (flags & FD_CLOEXEC);
}

/* Finds every preserved fd and checks its contents; reading consumes the
 * pipe, socket and eventfd data. Returns the fds found. */
static void verify_all(cprkit_ctx *ctx, int fds[6])
{
    static const struct {
        const char *name;
        int id;
        enum cprkit_fd_type type;
    } expected[6] = {
        {"mem", 0, CPRKIT_FD_MEMFD},  {"ev", 0, CPRKIT_FD_EVENTFD},
        {"pipe", 0, CPRKIT_FD_PIPE},  {"pipe", 1, CPRKIT_FD_PIPE},
        {"sock", 0, CPRKIT_FD_SOCKET}, {"sock", 1, CPRKIT_FD_SOCKET},
    };
    char buf[64] = {0};
    uint64_t count;
    const void *data;
    size_t size;

    for (int i = 0; i < 6; i++) {
        fds[i] = cprkit_fd_find(ctx, expected[i].name, expected[i].id,
                                expected[i].type);
        CHECK(fds[i] >= 0, "find %s/%d: %s", expected[i].name, expected[i].id,
              cprkit_last_error(ctx));
        CHECK(has_cloexec(fds[i]), "%s/%d has no FD_CLOEXEC after restore",
              expected[i].name, expected[i].id);
    }
    CHECK(pread(fds[0], buf, sizeof(buf) - 1, 0) == strlen(MEM_CONTENT) &&
              strcmp(buf, MEM_CONTENT) == 0,
          "memfd content is '%s'", buf);
    CHECK(read(fds[1], &count, sizeof(count)) == sizeof(count) &&
              count == EVENT_COUNT,
          "eventfd count %llu", (unsigned long long)count);
    memset(buf, 0, sizeof(buf));
    CHECK(read(fds[2], buf, sizeof(buf) - 1) == strlen(PIPE_CONTENT) &&
              strcmp(buf, PIPE_CONTENT) == 0,
          "pipe data is '%s'", buf);
    /* The write end still works: the pipe is the same pipe. */
    CHECK(write(fds[3], "x", 1) == 1 && read(fds[2], buf, 1) == 1 &&
              buf[0] == 'x',
          "pipe write end does not reach the read end");
    memset(buf, 0, sizeof(buf));
    CHECK(recv(fds[4], buf, sizeof(buf) - 1, MSG_DONTWAIT) ==
                  strlen(SOCK_CONTENT) &&
              strcmp(buf, SOCK_CONTENT) == 0,
          "socket data is '%s'", buf);
    CHECK(cprkit_section_get(ctx, "app", &data, &size) == 0 &&
              size == strlen(APP_STATE) && memcmp(data, APP_STATE, size) == 0,
          "application section lost");
}

static int make_memfd(void)
{
    int fd = memfd_create("helper-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    CHECK(fd >= 0 && write(fd, MEM_CONTENT, strlen(MEM_CONTENT)) ==
                         (ssize_t)strlen(MEM_CONTENT),
          "memfd");
    return fd;
}

static char *temp_file(const char *content, mode_t mode)
{
    char *path = strdup("/tmp/cprkit-helper-XXXXXX");
    int fd = mkostemp(path, O_CLOEXEC);

    CHECK(fd >= 0 && write(fd, content, strlen(content)) > 0, "temp file");
    close(fd);
    CHECK(chmod(path, mode) == 0, "chmod");
    return path;
}

static int count_fds(void)
{
    int n = 0;

    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            n++;
    return n;
}

/* The exec attempts that must fail, leaving everything as it was. */
static void exec_failures(cprkit_ctx *ctx, const int fds[6])
{
    char *argv[] = {"x", NULL};
    char *not_exec = temp_file("#!/bin/sh\n", 0644);
    char *garbage = temp_file("not a program\n", 0755);
    int before = count_fds();
    int r;

    r = cprkit_exec(ctx, "/nonexistent/new-binary", argv, NULL);
    CHECK(r == -ENOENT, "missing binary: %d %s", r, cprkit_last_error(ctx));
    printf("exec-missing: %s\n", cprkit_last_error(ctx));
    r = cprkit_exec(ctx, not_exec, argv, NULL);
    CHECK(r == -EACCES, "non-executable: %d %s", r, cprkit_last_error(ctx));
    printf("exec-not-executable: ok\n");
    /* Passes the checks; execve itself fails after CLOEXEC was cleared. */
    r = cprkit_exec(ctx, garbage, argv, NULL);
    CHECK(r == -ENOEXEC, "garbage binary: %d %s", r, cprkit_last_error(ctx));
    printf("exec-enoexec: ok\n");

    for (int i = 0; i < 6; i++)
        CHECK(fcntl(fds[i], F_GETFD) == FD_CLOEXEC,
              "fd %d not open with FD_CLOEXEC after failed exec", fds[i]);
    CHECK(count_fds() == before, "fd count %d after failed execs, was %d",
          count_fds(), before);
    CHECK(getenv("CPRKIT_STATE_FD") == NULL, "CPRKIT_STATE_FD leaked");
    unlink(not_exec);
    unlink(garbage);
    free(not_exec);
    free(garbage);
    printf("EXEC-FAILURES-OK\n");
}

static int role_old(const char *new_binary, const char *mode)
{
    cprkit_ctx *ctx = new_ctx("old");
    int fds[6], p[2], sv[2];
    char evfd_str[16];
    uint64_t count = EVENT_COUNT;
    int r = cprkit_load_incoming(ctx);

    if (r < 0) {
        printf("OLD-LOAD-FAILED: %s\n", cprkit_last_error(ctx));
        r = cprkit_rollback(ctx, "old binary could not load");
        printf("ROLLBACK-REFUSED: %s\n", cprkit_last_error(ctx));
        fflush(stdout);
        cprkit_free(ctx);
        return 3;
    }
    if (r == 1) {
        CHECK(cprkit_is_rollback(ctx), "old binary got forward state");
        verify_all(ctx, fds);
        CHECK(cprkit_commit(ctx) == 0, "commit: %s", cprkit_last_error(ctx));
        printf("ROLLED-BACK generation=%llu reason=%s\n",
               (unsigned long long)cprkit_generation(ctx),
               cprkit_rollback_reason(ctx));
        cprkit_free(ctx);
        return 0;
    }

    fds[0] = make_memfd();
    fds[1] = eventfd(0, EFD_CLOEXEC);
    CHECK(fds[1] >= 0 && write(fds[1], &count, sizeof(count)) == 8, "eventfd");
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe");
    CHECK(write(p[1], PIPE_CONTENT, strlen(PIPE_CONTENT)) > 0, "pipe write");
    fds[2] = p[0];
    fds[3] = p[1];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "sp");
    CHECK(send(sv[1], SOCK_CONTENT, strlen(SOCK_CONTENT), 0) > 0, "send");
    fds[4] = sv[0];
    fds[5] = sv[1];
    CHECK(cprkit_fd_save(ctx, "mem", 0, fds[0]) == 0 &&
              cprkit_fd_save(ctx, "ev", 0, fds[1]) == 0 &&
              cprkit_fd_save(ctx, "pipe", 0, fds[2]) == 0 &&
              cprkit_fd_save(ctx, "pipe", 1, fds[3]) == 0 &&
              cprkit_fd_save(ctx, "sock", 0, fds[4]) == 0 &&
              cprkit_fd_save(ctx, "sock", 1, fds[5]) == 0,
          "save: %s", cprkit_last_error(ctx));
    CHECK(cprkit_section_put(ctx, "app", APP_STATE, strlen(APP_STATE)) == 0,
          "section");

    if (strcmp(mode, "fail-first") == 0)
        exec_failures(ctx, fds);

    snprintf(evfd_str, sizeof(evfd_str), "%d", fds[1]);
    char *argv[] = {(char *)new_binary, "new", (char *)mode, evfd_str, NULL};
    printf("OLD-EXEC pid=%d\n", getpid());
    fflush(stdout);
    r = cprkit_exec(ctx, new_binary, argv, NULL);
    printf("EXEC-FAILED: %s\n", cprkit_last_error(ctx));
    cprkit_free(ctx);
    return 2;
}

/* A child started after restore must inherit none of the preserved fds. */
static void check_child_inherits_nothing(const int fds[6])
{
    char args[6][16];
    char *argv[9] = {"/proc/self/exe", "check-closed"};
    int status;
    pid_t pid;

    for (int i = 0; i < 6; i++) {
        snprintf(args[i], sizeof(args[i]), "%d", fds[i]);
        argv[2 + i] = args[i];
    }
    argv[8] = NULL;
    fflush(stdout);
    pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "a child inherited preserved fds (status 0x%x)", status);
    printf("child-inherits-nothing: ok\n");
}

/* Returns only if the rollback exec failed. */
static void rollback_or_report(cprkit_ctx *ctx)
{
    /* The reason string lives in ctx; copy it before the call resets it. */
    char *reason = strdup(cprkit_last_error(ctx));

    cprkit_rollback(ctx, reason);
    printf("ROLLBACK-FAILED: %s\n", cprkit_last_error(ctx));
    free(reason);
    cprkit_free(ctx);
}

static int role_new(const char *mode, int evfd)
{
    cprkit_ctx *ctx;
    int fds[6], r;

    if (strcmp(mode, "close-before-load") == 0)
        close(evfd); /* start-up code that closes fds it does not know */

    ctx = new_ctx("new");
    r = cprkit_load_incoming(ctx);
    if (r != 1) {
        printf("NEW-LOAD-FAILED: %s\n", cprkit_last_error(ctx));
        fflush(stdout);
        rollback_or_report(ctx);
        return 4;
    }
    CHECK(getenv("CPRKIT_STATE_FD") == NULL, "CPRKIT_STATE_FD still set");
    CHECK(cprkit_generation(ctx) == 1, "generation %llu",
          (unsigned long long)cprkit_generation(ctx));
    /* The phases are stamped in order, on one clock across the exec. */
    CHECK(cprkit_timestamp(ctx, "suspend") > 0 &&
              cprkit_timestamp(ctx, "exec") >= cprkit_timestamp(ctx, "suspend") &&
              cprkit_timestamp(ctx, "execve") >= cprkit_timestamp(ctx, "exec") &&
              cprkit_timestamp(ctx, "loaded") >= cprkit_timestamp(ctx, "execve"),
          "phase timestamps out of order");
    CHECK(getenv("CPRKIT_EXECVE_NS") == NULL, "CPRKIT_EXECVE_NS still set");

    if (strcmp(mode, "wrong-type") == 0 || strcmp(mode, "missing") == 0) {
        bool wrong = strcmp(mode, "wrong-type") == 0;

        r = wrong ? cprkit_fd_find(ctx, "ev", 0, CPRKIT_FD_MEMFD)
                  : cprkit_fd_find(ctx, "extra", 0, CPRKIT_FD_ANY);
        CHECK(r == (wrong ? -EMEDIUMTYPE : -ENOENT), "find returned %d", r);
        printf("NEW-CLAIM-FAILED: %s\n", cprkit_last_error(ctx));
        fflush(stdout);
        rollback_or_report(ctx);
        return 4;
    }

    verify_all(ctx, fds);
    check_child_inherits_nothing(fds);
    CHECK(cprkit_commit(ctx) == 0, "commit: %s", cprkit_last_error(ctx));
    {
        struct timespec now;
        uint64_t now_ns, exec_ns = cprkit_timestamp(ctx, "exec");

        clock_gettime(CLOCK_MONOTONIC, &now);
        now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
        printf("NEW-OK pid=%d generation=%llu exec-to-commit-us=%llu\n",
               getpid(), (unsigned long long)cprkit_generation(ctx),
               (unsigned long long)(now_ns - exec_ns) / 1000);
    }
    cprkit_free(ctx);
    return 0;
}

static int role_check_closed(int argc, char **argv)
{
    int open_fds = 0;

    for (int i = 0; i < argc; i++) {
        int fd = atoi(argv[i]);

        if (fcntl(fd, F_GETFD) >= 0) {
            printf("FAIL: fd %d was inherited\n", fd);
            open_fds++;
        }
    }
    if (getenv("CPRKIT_STATE_FD"))
        open_fds++;
    return open_fds ? 1 : 0;
}

int main(int argc, char **argv)
{
    /* stdout is a pipe to the test: make lines appear in order across exec. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 4 && strcmp(argv[1], "old") == 0)
        return role_old(argv[2], argv[3]);
    if (argc >= 3 && strcmp(argv[1], "new") == 0)
        return role_new(argv[2], argc >= 4 ? atoi(argv[3]) : -1);
    if (argc >= 2 && strcmp(argv[1], "check-closed") == 0)
        return role_check_closed(argc - 2, argv + 2);
    fprintf(stderr, "usage: %s old NEW_BINARY MODE | new MODE [FD] | "
                    "check-closed FD...\n",
            argv[0]);
    return 64;
}
