/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control thread serves the control socket ($CPRKIT_CONTROL_SOCKET)
 * with the library's endpoint; an "upgrade" request, like the program's
 * own execve, ends in preload_upgrade: the record is written and the new
 * binary exec'ed from the calling thread. The kernel ends every other
 * thread of the program at that execve.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>

#include "preload-internal.h"

/* The program's signal mask at start: the control thread blocks every
 * signal, and execve passes the calling thread's mask on, so the exec runs
 * with this one. */
static sigset_t program_sigmask;

/* Called with the lock held, so no interposed VFIO call is half done. */
int preload_upgrade(void *userdata, cprkit_ctx *c, const char *binary,
                    char *const argv[])
{
    struct preload_exec_fds changed = {0};
    sigset_t old;
    int r;

    /* The reasons go to the operator too, through the control endpoint. */
    if (preload_tainted[0]) {
        preload_log(LOG_ERR, "update to %s refused: %s", binary,
                    preload_tainted);
        return cprkit_set_error(
            c, -EOPNOTSUPP, "refused by the preload shim: %s", preload_tainted);
    }
    if (preload_incoming) {
        preload_log(LOG_ERR,
                    "update to %s refused: the previous update is "
                    "not committed yet",
                    binary);
        return cprkit_set_error(c, -EBUSY,
                                "refused by the preload shim: the previous "
                                "update is not committed yet");
    }
    r = preload_records_save();
    if (r < 0)
        return r;
    preload_log(LOG_INFO,
                "exec %s: the program's threads stop here, the new "
                "binary re-runs its initialisation",
                binary);
    /* An update from the control socket, not the program's own execve:
     * the fds the program opened are not meant to cross it. */
    if (userdata == PRELOAD_UPGRADE_FROM_CONTROL)
        preload_exec_fds_close_on_exec(&changed);
    preload_in_lib++;
    pthread_sigmask(SIG_SETMASK, &program_sigmask, &old);
    r = cprkit_exec(c, binary, argv, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    preload_in_lib--;
    preload_exec_fds_restore(&changed);
    preload_log(LOG_ERR, "update to %s failed, this binary keeps serving: %s",
                binary, cprkit_last_error(c));
    return r;
}

static void *control_thread(void *arg)
{
    /* This thread only runs shim and library code. */
    preload_in_lib = 1;
    for (;;) {
        struct pollfd p = {.fd = cprkit_control_fd(preload_control),
                           .events = POLLIN};

        /* The timeout also wakes the deadline check up. */
        poll(&p, 1, 100);
        pthread_mutex_lock(&preload_lock);
        /* Outside an update's incoming phase the record goes to the
         * keeper with the next sync (in the dispatch). */
        if (!preload_incoming)
            preload_records_save_if_changed();
        cprkit_control_dispatch(preload_control);
        preload_check_deadline();
        pthread_mutex_unlock(&preload_lock);
    }
    return NULL;
}

/* Called once at start-up, from the program's thread. Returns 0 or a
 * negative errno. */
int preload_control_thread_start(void)
{
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_t thread;
    int r;

    /* Signals are the program's business, not the control thread's. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    program_sigmask = old;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    r = pthread_create(&thread, &attr, control_thread, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -r;
}
