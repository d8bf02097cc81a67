/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The keeper protocol: how a program under `cpr-exec run` hands its
 * preserved fds and its state to the keeper process (shim/keeper.c), its
 * parent, which keeps dups of them so that the device and its memory
 * outlive the program (docs/keeper.md).
 *
 * One SOCK_SEQPACKET socketpair per program process; the program's end is
 * CPRKIT_KEEPER_FD (it crosses the program's own execs like a preserved
 * fd). Only the program writes; the keeper learns everything else from
 * waitpid(). Each message is one datagram: a header line
 * "KIND key=value ...\n", then a tail of NUL-terminated strings, and
 * SCM_RIGHTS fds:
 *
 *   fds                      tail: the fd number each passed fd has in the
 *                            program, one per fd (at most KEEPER_FDS_PER_MSG
 *                            per message); accumulated until the next
 *                            "state" or "exec"
 *   state generation=N       a committed state: fds = [blob], tail = the
 *                            command line to restart with (path, argv...).
 *                            Replaces what the keeper kept; ends an update.
 *   exec generation=N deadline_ms=M
 *                            an update's exec is next: fds = [blob] (the
 *                            exec's blob, mappings suspended), tail = the
 *                            rollback command line; the new binary has M ms
 *                            to commit
 *   exec-failed              execve returned: the old binary serves on
 *   hello pid=P loaded=0|1   a binary started (loaded=1: it read a state)
 *   unkept reason=...        the state cannot be kept (tail: why); the
 *                            keeper drops what it held
 *
 * The variables below are set by the keeper in the environment of every
 * process it starts, and carried by the library across the program's
 * execs.
 */
#pragma once

#define CPRKIT_KEEPER_FD_ENV "CPRKIT_KEEPER_FD"
#define CPRKIT_KEEPER_PID_ENV "CPRKIT_KEEPER_PID"
/* How many times the keeper restarted the program, the last cause and
 * when (CLOCK_REALTIME, µs). */
#define CPRKIT_KEEPER_RESTARTS_ENV "CPRKIT_KEEPER_RESTARTS"
#define CPRKIT_KEEPER_LAST_CAUSE_ENV "CPRKIT_KEEPER_LAST_CAUSE"
#define CPRKIT_KEEPER_LAST_AT_ENV "CPRKIT_KEEPER_LAST_AT"
/* Set on a process the keeper started after its predecessor died: the
 * cause. The predecessor may have left kernel state half-changed. */
#define CPRKIT_RESTART_REASON_ENV "CPRKIT_RESTART_REASON"
/* CLOCK_MONOTONIC ns when the keeper saw the predecessor die (timestamp
 * "died", the start of a crash restart's blackout). */
#define CPRKIT_KEEPER_DIED_NS_ENV "CPRKIT_KEEPER_DIED_NS"

/* SCM_MAX_FD is 253. */
#define KEEPER_FDS_PER_MSG 250
/* Largest datagram: header plus a command line. */
#define KEEPER_MSG_MAX (64u * 1024u)
