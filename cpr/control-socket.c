/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control endpoint's socket I/O: accepting connections, reading request
 * lines, writing reply lines, and the dispatch loop over its epoll fd.
 * What a request asks for is control-commands.c's business.
 */
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "control-endpoint.h"

void control_client_free(struct control_client *cl)
{
    if (!cl)
        return;
    closep(&cl->fd);
    g_string_free(cl->buf, true);
    g_free(cl);
}

/* Writes one line; a client that does not read for a second is given up.
 * MSG_NOSIGNAL: a client that went away must not kill the server. */
/* A client that does not read its replies must not stall the program: a
 * write that fails or times out ends the connection. shutdown() makes
 * every later reply to it fail at once, and the next read see the end,
 * which drops the client (client_serve). */
static int write_failed(int fd, int r)
{
    shutdown(fd, SHUT_RDWR);
    return r;
}

int control_write_line(int fd, const char *line)
{
    g_autofree char *data = g_strconcat(line, "\n", NULL);
    size_t len = strlen(data), off = 0;

    while (off < len) {
        ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int r = poll(&p, 1, CONTROL_WRITE_TIMEOUT_MS);

            if (r == 0)
                return write_failed(fd, -ETIMEDOUT);
            if (r < 0 && errno != EINTR)
                return write_failed(fd, -errno);
            continue;
        }
        if (n < 0)
            return write_failed(fd, -errno);
        off += (size_t)n;
    }
    return 0;
}

void control_refuse_others(cprkit_control *c, struct control_client *keep,
                           const char *binary)
{
    for (guint i = 0; i < c->clients->len; i++) {
        struct control_client *cl = g_ptr_array_index(c->clients, i);

        if (cl == keep)
            continue;
        control_reply_error(cl->fd, NULL, CONTROL_ERROR_BUSY,
                            "busy: an update to %s is under way; ask again "
                            "when it is over",
                            binary);
        shutdown(cl->fd, SHUT_RDWR);
    }
}

static void client_drop(cprkit_control *c, struct control_client *cl)
{
    epoll_ctl(c->epoll_fd, EPOLL_CTL_DEL, cl->fd, NULL);
    g_ptr_array_remove(c->clients, cl); /* frees and closes */
}

/* Reads what is there; serves every complete line. Returns false when the
 * client is done (EOF, error, oversized request) and was dropped. */
static bool client_serve(cprkit_control *c, struct control_client *cl)
{
    bool eof = false;

    for (;;) {
        char chunk[4096];
        ssize_t n = recv(cl->fd, chunk, sizeof(chunk), 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            eof = true;
            break;
        }
        g_string_append_len(cl->buf, chunk, n);
        cl->last_active_ns = control_now_ns();
        if (cl->buf->len > CONTROL_MAX_REQUEST + 1)
            break;
    }

    for (;;) {
        char *nl = memchr(cl->buf->str, '\n', cl->buf->len);
        size_t len;

        if (!nl)
            break;
        len = (size_t)(nl - cl->buf->str);
        if (len > CONTROL_MAX_REQUEST)
            break;
        {
            g_autofree char *line = g_strndup(cl->buf->str, len);

            g_string_erase(cl->buf, 0, (gssize)len + 1);
            if (len > 0)
                control_handle_request(c, cl, line, len);
        }
    }
    if (cl->buf->len > CONTROL_MAX_REQUEST) {
        control_reply_error(cl->fd, NULL, CONTROL_ERROR_BAD_REQUEST,
                            "request longer than %u bytes",
                            CONTROL_MAX_REQUEST);
        client_drop(c, cl);
        return false;
    }
    if (eof) {
        client_drop(c, cl);
        return false;
    }
    return true;
}

/* Makes room for a new client: drops the connection idle longest, if it
 * has been idle CONTROL_IDLE_EVICT_MS. Returns whether it did. */
static bool evict_idle_client(cprkit_control *c)
{
    struct control_client *oldest = NULL;
    uint64_t now = control_now_ns();

    for (guint i = 0; i < c->clients->len; i++) {
        struct control_client *cl = g_ptr_array_index(c->clients, i);

        if (!oldest || cl->last_active_ns < oldest->last_active_ns)
            oldest = cl;
    }
    if (!oldest ||
        now - oldest->last_active_ns < CONTROL_IDLE_EVICT_MS * 1000000ull)
        return false;
    control_reply_error(oldest->fd, NULL, CONTROL_ERROR_BUSY,
                        "closing an idle connection: all %u control "
                        "connections are taken",
                        CONTROL_MAX_CLIENTS);
    client_drop(c, oldest);
    return true;
}

static void accept_clients(cprkit_control *c)
{
    for (;;) {
        struct ucred cred;
        struct control_client *cl;
        struct epoll_event ev = {.events = EPOLLIN};
        int fd =
            accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN, or EMFILE: try again at the next dispatch */
        }
        /* Only the same user or root may drive updates. */
        if (control_peer_authorize(c, fd, &cred) < 0) {
            close(fd);
            continue;
        }
        if (c->clients->len >= CONTROL_MAX_CLIENTS &&
            !evict_idle_client(c)) {
            control_reply_error(fd, NULL, CONTROL_ERROR_BUSY,
                                "busy: too many control connections");
            close(fd);
            continue;
        }
        cl = g_new0(struct control_client, 1);
        cl->fd = fd;
        cl->buf = g_string_new(NULL);
        cl->uid = cred.uid;
        cl->pid = cred.pid;
        cl->last_active_ns = control_now_ns();
        ev.data.ptr = cl;
        if (epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            control_client_free(cl);
            continue;
        }
        g_ptr_array_add(c->clients, cl);
    }
}

CPRKIT_EXPORT int cprkit_control_fd(const cprkit_control *control)
{
    return control->epoll_fd;
}

CPRKIT_EXPORT int cprkit_control_dispatch(cprkit_control *c)
{
    /* Committed without saying so: the reply goes out now. */
    if (c->update_pending && !cprkit_is_incoming(c->ctx))
        control_finish_update(c, control_now_ns());
    /* The keeper gets what changed since the last request (no-op without
     * a keeper, or when nothing changed). */
    control_keeper_sync(c);

    for (int round = 0; round < 8; round++) {
        struct epoll_event events[16];
        int n = epoll_wait(c->epoll_fd, events, ELEMENTSOF(events), 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return control_fail(c->ctx, -errno, "control endpoint: epoll: %m");
        if (n == 0)
            break;
        for (int i = 0; i < n; i++) {
            struct control_client *cl = events[i].data.ptr;

            if (!cl) {
                accept_clients(c);
                continue;
            }
            /* A client dropped earlier in this round is gone from the
             * array; its event must not be used. */
            if (!g_ptr_array_find(c->clients, cl, NULL))
                continue;
            client_serve(c, cl);
        }
    }
    control_keeper_sync(c);
    return 0;
}
