/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who may talk to the control endpoint: the peer's credentials as the
 * kernel saw them at connect() (SO_PEERCRED), not anything the client
 * says. Only the process's own user or root may drive updates; the
 * socket file's mode (0600) keeps others from even connecting, this is
 * the real check.
 */
#include <sys/socket.h>

#include "control-endpoint.h"

int control_peer_authorize(cprkit_control *c, int fd, struct ucred *ret_cred)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -errno;
    if (cred.uid != 0 && cred.uid != geteuid()) {
        cprkit_log(c->ctx, LOG_WARNING,
                   "control: refused a client with uid %u (pid %d)",
                   (unsigned)cred.uid, (int)cred.pid);
        control_reply_error(fd, NULL, CONTROL_ERROR_NOT_PERMITTED,
                            "permission denied: uid %u may not control this "
                            "process (only uid %u or root)",
                            (unsigned)cred.uid, (unsigned)geteuid());
        return -EPERM;
    }
    *ret_cred = cred;
    return 0;
}
