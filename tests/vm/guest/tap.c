/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tap.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned planned;
static unsigned count;
static unsigned failed;

void tap_plan(unsigned n)
{
    planned = n;
    printf("1..%u\n", n);
    fflush(stdout);
}

void tap_resume(unsigned done, unsigned nfailed)
{
    count = done;
    failed = nfailed;
}

unsigned tap_count(void)
{
    return count;
}

unsigned tap_failed(void)
{
    return failed;
}

bool tap_ok(bool pass, const char *fmt, ...)
{
    va_list ap;

    count++;
    if (!pass)
        failed++;
    printf("%sok %u - ", pass ? "" : "not ", count);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    return pass;
}

void tap_diag(const char *fmt, ...)
{
    va_list ap;

    fputs("# ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

void tap_bail(const char *fmt, ...)
{
    va_list ap;

    fputs("Bail out! ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    exit(1);
}

void tap_exit(void)
{
    if (planned && count != planned)
        tap_diag("planned %u tests but ran %u", planned, count);
    exit(failed || (planned && count != planned) ? 1 : 0);
}
