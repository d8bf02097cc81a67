/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Minimal TAP producer for guest tests.
 *
 * Guest tests may exec themselves mid-test; the numbering then continues in
 * the new image (tap_resume()). Every line is flushed at once so nothing
 * buffered is lost across execve() or a crash.
 */
#pragma once

#include <stdbool.h>
#include <stdnoreturn.h>
#include <string.h>

/* Print the plan "1..n". */
void tap_plan(unsigned n);

/* Continue numbering after an exec: the next test is number @done + 1. */
void tap_resume(unsigned done, unsigned failed);

/* Number of results printed so far, and how many of them failed. */
unsigned tap_count(void);
unsigned tap_failed(void);

/* Print "ok N - desc" or "not ok N - desc"; returns @pass. */
__attribute__((format(printf, 2, 3)))
bool tap_ok(bool pass, const char *fmt, ...);

/* Print a "# ..." diagnostic line. */
__attribute__((format(printf, 1, 2)))
void tap_diag(const char *fmt, ...);

/*
 * Abort the test program: print "Bail out! reason" and exit 1. Used when a
 * step that later results depend on failed (e.g. the device did not open).
 */
__attribute__((format(printf, 1, 2)))
noreturn void tap_bail(const char *fmt, ...);

/* Exit with 0 if everything passed and the plan was met, 1 otherwise. */
noreturn void tap_exit(void);

/* Bail out when @err (a negative errno) is an error; otherwise return it. */
#define TAP_CHECK(expr)                                                     \
    ({                                                                      \
        __auto_type _r = (expr);                                            \
        if (_r < 0)                                                         \
            tap_bail("%s: %s (line %d)", #expr, strerror((int)-_r),         \
                     __LINE__);                                             \
        _r;                                                                 \
    })
