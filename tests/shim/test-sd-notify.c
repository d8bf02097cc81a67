/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cpr/sd-notify.c against a datagram socket bound here, as a service
 * manager would: a path socket and an abstract one, the message arriving
 * whole with the sender's credentials, no-op when NOTIFY_SOCKET is unset,
 * errors for addresses it cannot use, and no fd left behind.
 */
#include <dirent.h>
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sd-notify.h"

/* A receiving socket like systemd's: SO_PASSCRED, so every datagram comes
 * with the sender's pid/uid/gid. name: a path, or "@..." (abstract). */
static int bind_receiver(const char *name)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t len =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
    struct timeval tv = {.tv_sec = 2};
    int one = 1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpuint(strlen(name), <, sizeof(sa.sun_path));
    memcpy(sa.sun_path, name, strlen(name));
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    else
        len++;
    g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, len), ==, 0);
    g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)),
                    ==, 0);
    g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)),
                    ==, 0);
    return fd;
}

/* One datagram, checked to come from this process. */
static char *receive(int fd)
{
    char buf[4096];
    union {
        struct cmsghdr cmsg;
        char space[CMSG_SPACE(sizeof(struct ucred))];
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control)};
    struct cmsghdr *c;
    struct ucred cred;
    ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);

    g_assert_cmpint(n, >=, 0);
    g_assert_false(mh.msg_flags & MSG_TRUNC);
    c = CMSG_FIRSTHDR(&mh);
    g_assert_nonnull(c);
    g_assert_cmpint(c->cmsg_level, ==, SOL_SOCKET);
    g_assert_cmpint(c->cmsg_type, ==, SCM_CREDENTIALS);
    memcpy(&cred, CMSG_DATA(c), sizeof(cred));
    g_assert_cmpint(cred.pid, ==, getpid());
    g_assert_cmpint(cred.uid, ==, getuid());
    return g_strndup(buf, (gsize)n);
}

static unsigned count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    unsigned n = 0;

    g_assert_nonnull(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void check_send_receive(const char *name)
{
    unsigned fds;
    int fd = bind_receiver(name);
    char *got;

    g_setenv("NOTIFY_SOCKET", name, true);
    fds = count_fds();
    g_assert_cmpint(sdnotify_send("READY=1\nSTATUS=serving"), ==, 1);
    got = receive(fd);
    g_assert_cmpstr(got, ==, "READY=1\nSTATUS=serving");
    g_free(got);

    g_assert_cmpint(sdnotify_sendf("RELOADING=1\nMONOTONIC_USEC=%llu\n"
                                   "STATUS=cprkit: exec %s",
                                   12345678ULL, "/usr/bin/app-v2"),
                    ==, 1);
    got = receive(fd);
    g_assert_cmpstr(got, ==,
                    "RELOADING=1\nMONOTONIC_USEC=12345678\n"
                    "STATUS=cprkit: exec /usr/bin/app-v2");
    g_free(got);
    /* The sending socket is closed again each time. */
    g_assert_cmpuint(count_fds(), ==, fds);
    /* Like sd_notify(0, ...): the variable stays for the next message. */
    g_assert_cmpstr(g_getenv("NOTIFY_SOCKET"), ==, name);
    g_unsetenv("NOTIFY_SOCKET");
    close(fd);
}

static void test_path(void)
{
    g_autofree char *dir = g_dir_make_tmp("cprkit-notify-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "notify", NULL);

    g_assert_nonnull(dir);
    check_send_receive(path);
    g_unlink(path);
    g_rmdir(dir);
}

static void test_abstract(void)
{
    g_autofree char *name = g_strdup_printf("@cprkit-test-notify-%d-%u",
                                            (int)getpid(), g_random_int());

    check_send_receive(name);
}

static void test_unset(void)
{
    g_unsetenv("NOTIFY_SOCKET");
    g_assert_cmpint(sdnotify_send("READY=1"), ==, 0);
    g_assert_cmpint(sdnotify_sendf("STATUS=%s", "x"), ==, 0);
    g_setenv("NOTIFY_SOCKET", "", true);
    g_assert_cmpint(sdnotify_send("READY=1"), ==, 0);
    g_unsetenv("NOTIFY_SOCKET");
}

static void test_errors(void)
{
    g_autofree char *dir = g_dir_make_tmp("cprkit-notify-XXXXXX", NULL);
    g_autofree char *missing = g_build_filename(dir, "nobody", NULL);
    char too_long[200];
    unsigned fds = count_fds();

    /* Neither a path nor abstract (e.g. "vsock:..."): not for us. */
    g_setenv("NOTIFY_SOCKET", "vsock:2:1234", true);
    g_assert_cmpint(sdnotify_send("READY=1"), ==, -EAFNOSUPPORT);
    g_setenv("NOTIFY_SOCKET", "relative/notify", true);
    g_assert_cmpint(sdnotify_send("READY=1"), ==, -EAFNOSUPPORT);

    memset(too_long, 'x', sizeof(too_long) - 1);
    too_long[0] = '/';
    too_long[sizeof(too_long) - 1] = '\0';
    g_setenv("NOTIFY_SOCKET", too_long, true);
    g_assert_cmpint(sdnotify_send("READY=1"), ==, -EINVAL);

    /* Nobody bound there: the error, not a crash or a signal. */
    g_setenv("NOTIFY_SOCKET", missing, true);
    g_assert_cmpint(sdnotify_send("READY=1"), ==, -ENOENT);
    g_assert_cmpuint(count_fds(), ==, fds);
    g_unsetenv("NOTIFY_SOCKET");
    g_rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/sd-notify/path", test_path);
    g_test_add_func("/sd-notify/abstract", test_abstract);
    g_test_add_func("/sd-notify/unset", test_unset);
    g_test_add_func("/sd-notify/errors", test_errors);
    return g_test_run();
}
