/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The service manager notification protocol (sd_notify), without
 * libsystemd: see sd-notify.c. Internal, not installed. */
#pragma once

/* Sends message ("READY=1\nSTATUS=...") to $NOTIFY_SOCKET. Returns 1 when
 * sent, 0 when NOTIFY_SOCKET is not set (not run by a service manager that
 * wants notifications), negative errno on failure. */
int sdnotify_send(const char *message);

/* The same with a printf format. */
int sdnotify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
