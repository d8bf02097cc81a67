/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The service manager notification protocol (sd_notify), without
 * libsystemd: see sd-notify.c. Internal, not installed. */
#pragma once

/* Sends message ("READY=1\nSTATUS=...") to $NOTIFY_SOCKET. Returns 1 when
 * sent, 0 when NOTIFY_SOCKET is not set (not run by a service manager that
 * wants notifications), negative errno on failure. */
int sdnotify_send(const char *message);

/* The same with fds attached (SCM_RIGHTS), as sd_pid_notify_with_fds():
 * "FDSTORE=1\nFDNAME=x" puts them in the service manager's fd store. */
int sdnotify_send_fds(const char *message, const int *fds, unsigned n_fds);

/* The same with a printf format. */
int sdnotify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
