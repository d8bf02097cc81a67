/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The keeper's state in systemd's fd store (`cpr-exec run --fd-store`,
 * docs/keeper.md): so that a restart of the keeper itself (it crashed, or
 * the unit was restarted) keeps the device. After each committed state the
 * keeper sends every kept fd to $NOTIFY_SOCKET with FDSTORE=1, and at start
 * takes them back from LISTEN_FDS (sd_listen_fds_with_names(3)).
 *
 * One fd per message, each with its own name, because a message's fds
 * share one FDNAME and the store does not promise their order:
 *   cprkit-SEQ-cmd      a sealed memfd: magic, generation, path, argc,
 *                       argv..., NUL-separated
 *   cprkit-SEQ-blob     the state blob
 *   cprkit-SEQ-fd-N     the fd the program has at number N
 * SEQ grows with every push; the new set is stored before the old one is
 * removed (FDSTOREREMOVE=1), so a keeper that dies in between finds a
 * complete set. FDPOLL=0: systemd must not drop a socket that hangs up.
 * The unit needs FileDescriptorStoreMax= of at least twice the number of
 * preserved fds plus 4 (shim/examples/cprkit-example.service.in).
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>
#include <unistd.h>

#include "cpr-exec.h"
#include "keeper.h"
#include "macros.h"
#include "sd-notify.h"

#define CMD_MAGIC "cprkit-fdstore-1"

void fdstore_init(struct fdstore *st)
{
    st->seq = 0;
    st->names = g_ptr_array_new_with_free_func(g_free);
}

void fdstore_free(struct fdstore *st)
{
    g_ptr_array_unref(st->names);
}

static int store_one(GPtrArray *names, const char *name, int fd)
{
    g_autofree char *msg =
        g_strdup_printf("FDSTORE=1\nFDPOLL=0\nFDNAME=%s", name);
    int r = sdnotify_send_fds(msg, &fd, 1);

    if (r < 0)
        return r;
    g_ptr_array_add(names, g_strdup(name));
    return 0;
}

/* The command line, the generation and the program's pid, as a sealed
 * memfd. */
static int cmd_memfd(const struct kept *k, int pid)
{
    g_autoptr(GString) s = g_string_new(CMD_MAGIC);
    int fd, n = (int)g_strv_length(k->argv);

    g_string_append_c(s, '\0');
    g_string_append_printf(s, "%d", pid);
    g_string_append_c(s, '\0');
    g_string_append_printf(s, "%" G_GUINT64_FORMAT, k->generation);
    g_string_append_c(s, '\0');
    g_string_append(s, k->path);
    g_string_append_c(s, '\0');
    g_string_append_printf(s, "%d", n);
    g_string_append_c(s, '\0');
    for (int i = 0; i < n; i++) {
        g_string_append(s, k->argv[i]);
        g_string_append_c(s, '\0');
    }
    fd = memfd_create("cprkit-keeper-cmd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    if (write(fd, s->str, s->len) != (ssize_t)s->len ||
        fcntl(fd, F_ADD_SEALS,
              F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
        int e = errno ? errno : EIO;

        close(fd);
        return -e;
    }
    return fd;
}

int fdstore_push(struct fdstore *st, const struct kept *k, int pid)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *prefix = NULL;
    _cleanup_close_ int cmd = -EBADF;
    int r;

    if (!getenv("NOTIFY_SOCKET"))
        return -ENOTCONN;
    cmd = cmd_memfd(k, pid);
    if (cmd < 0)
        return cmd;
    prefix = g_strdup_printf("cprkit-%" G_GUINT64_FORMAT, st->seq + 1);
    {
        g_autofree char *n_cmd = g_strdup_printf("%s-cmd", prefix);
        g_autofree char *n_blob = g_strdup_printf("%s-blob", prefix);

        r = store_one(names, n_cmd, cmd);
        if (r >= 0)
            r = store_one(names, n_blob, k->blob_fd);
    }
    for (guint i = 0; r >= 0 && i < k->fds->len; i++) {
        g_autofree char *n = g_strdup_printf(
            "%s-fd-%d", prefix, g_array_index(k->targets, int, i));

        r = store_one(names, n, g_array_index(k->fds, int, i));
    }
    /* Whatever got in: the complete old set stays, this one goes. */
    if (r < 0) {
        for (guint i = 0; i < names->len; i++) {
            g_autofree char *msg = g_strdup_printf(
                "FDSTOREREMOVE=1\nFDNAME=%s", (char *)names->pdata[i]);

            sdnotify_send(msg);
        }
        return r;
    }
    for (guint i = 0; i < st->names->len; i++) {
        g_autofree char *msg = g_strdup_printf("FDSTOREREMOVE=1\nFDNAME=%s",
                                               (char *)st->names->pdata[i]);

        sdnotify_send(msg);
    }
    g_ptr_array_set_size(st->names, 0);
    g_ptr_array_extend_and_steal(st->names, g_steal_pointer(&names));
    st->seq++;
    return 0;
}

/* "cprkit-SEQ-REST" -> SEQ and REST, or false. */
static bool parse_name(const char *name, uint64_t *ret_seq,
                       const char **ret_rest)
{
    char *end;

    if (!g_str_has_prefix(name, "cprkit-") ||
        !g_ascii_isdigit(name[strlen("cprkit-")]))
        return false;
    *ret_seq = g_ascii_strtoull(name + strlen("cprkit-"), &end, 10);
    if (*end != '-')
        return false;
    *ret_rest = end + 1;
    return true;
}

static int read_cmd(int fd, struct kept *k, int *ret_pid)
{
    g_autoptr(GString) s = g_string_new(NULL);
    char buf[4096];
    ssize_t n;
    off_t off = 0;
    g_autoptr(GPtrArray) parts = g_ptr_array_new_with_free_func(g_free);
    int argc;

    while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
        g_string_append_len(s, buf, n);
        off += n;
    }
    if (n < 0)
        return -errno;
    for (gsize o = 0; o < s->len;) {
        gsize l = strnlen(s->str + o, s->len - o);

        if (o + l == s->len)
            return -EBADMSG;
        g_ptr_array_add(parts, g_strndup(s->str + o, l));
        o += l + 1;
    }
    if (parts->len < 5 || strcmp(parts->pdata[0], CMD_MAGIC))
        return -EBADMSG;
    argc = atoi(parts->pdata[4]);
    if (argc < 1 || (guint)argc != parts->len - 5)
        return -EBADMSG;
    *ret_pid = atoi(parts->pdata[1]);
    k->generation = g_ascii_strtoull(parts->pdata[2], NULL, 10);
    k->path = g_strdup(parts->pdata[3]);
    k->argv = g_new0(char *, argc + 1);
    for (int i = 0; i < argc; i++)
        k->argv[i] = g_strdup(parts->pdata[5 + i]);
    return 0;
}

void fdstore_drop(struct fdstore *st)
{
    for (guint i = 0; i < st->names->len; i++) {
        g_autofree char *msg = g_strdup_printf("FDSTOREREMOVE=1\nFDNAME=%s",
                                               (char *)st->names->pdata[i]);

        sdnotify_send(msg);
    }
    g_ptr_array_set_size(st->names, 0);
}

int fdstore_recover(struct fdstore *st, struct kept *ret)
{
    const char *pid = getenv("LISTEN_PID");
    const char *nfds = getenv("LISTEN_FDS");
    const char *names_env = getenv("LISTEN_FDNAMES");
    g_auto(GStrv) names = NULL;
    uint64_t best = 0, seq;
    const char *rest;
    int n, cmd = -1, r = 0, old_pid = 0;

    if (!pid || !nfds || atoi(pid) != (int)getpid())
        return 0;
    n = atoi(nfds);
    names = g_strsplit(names_env ? names_env : "", ":", -1);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    unsetenv("LISTEN_PIDFDID");
    /* The newest set that has its command line and its blob. */
    for (int i = 0; i < n && names[i]; i++)
        if (parse_name(names[i], &seq, &rest) && !strcmp(rest, "cmd") &&
            seq > best) {
            for (int j = 0; j < n && names[j]; j++) {
                uint64_t s2;
                const char *r2;

                if (parse_name(names[j], &s2, &r2) && s2 == seq &&
                    !strcmp(r2, "blob"))
                    best = seq;
            }
        }
    for (int i = 0; i < n; i++) {
        int fd = 3 + i;
        const char *name = names[i] ? names[i] : "";

        fcntl(fd, F_SETFD, FD_CLOEXEC);
        if (!parse_name(name, &seq, &rest))
            continue; /* not ours: leave it */
        if (seq != best) {
            /* An older set a keeper could not remove before it died. */
            g_autofree char *msg =
                g_strdup_printf("FDSTOREREMOVE=1\nFDNAME=%s", name);

            sdnotify_send(msg);
            close(fd);
            continue;
        }
        g_ptr_array_add(st->names, g_strdup(name));
        if (!strcmp(rest, "cmd")) {
            cmd = fd;
        } else if (!strcmp(rest, "blob")) {
            ret->blob_fd = fd;
        } else if (g_str_has_prefix(rest, "fd-") &&
                   g_ascii_isdigit(rest[3])) {
            int target = atoi(rest + 3);

            g_array_append_val(ret->fds, fd);
            g_array_append_val(ret->targets, target);
        } else {
            close(fd);
        }
    }
    if (!best)
        return 0;
    st->seq = best;
    if (cmd < 0)
        return -EBADMSG;
    r = read_cmd(cmd, ret, &old_pid);
    close(cmd);
    if (r < 0) {
        log_msg(LOG_ERR, "keeper: the fd store's command line is unreadable: "
                "%s", strerror(-r));
        return r;
    }
    /* Two programs driving one device would corrupt it: the one the dead
     * keeper ran must be gone (systemd kills a unit's processes when its
     * main process dies). */
    if (old_pid > 0 && kill(old_pid, 0) == 0) {
        g_autofree char *link = g_strdup_printf("/proc/%d/exe", old_pid);
        g_autofree char *exe = g_file_read_link(link, NULL);

        if (exe && !strcmp(exe, ret->path)) {
            log_msg(LOG_ERR,
                    "keeper: the program the previous keeper ran (pid %d, "
                    "%s) still runs: not starting a second one on the same "
                    "devices",
                    old_pid, exe);
            return -EBUSY;
        }
    }
    return kept_valid(ret) ? 1 : -EBADMSG;
}
