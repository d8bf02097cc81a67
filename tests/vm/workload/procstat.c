/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What an update must leave unchanged, as /proc shows it. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "workload.h"

int proc_fd_count(void)
{
    struct dirent *de;
    DIR *d;
    int n = 0;

    d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

int proc_fd_count_nosock(void)
{
    char path[300], target[64];
    struct dirent *de;
    DIR *d;
    int n = 0;

    d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while ((de = readdir(d))) {
        ssize_t len;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
        len = readlink(path, target, sizeof(target) - 1);
        if (len >= 0) {
            target[len] = '\0';
            if (!strncmp(target, "socket:", 7))
                continue;
        }
        n++;
    }
    closedir(d);
    return n - 1; /* the directory's own fd */
}

long proc_vmlck_kb(void)
{
    return proc_status_kb("VmLck");
}

/* Pages pinned for DMA are charged as VmLck by type1 (locked_vm) and as
 * VmPin by iommufd (pinned_vm). */
long wl_pinned_kb(const struct workload *w)
{
    return proc_status_kb(wl_pinned_name(w));
}

const char *wl_pinned_name(const struct workload *w)
{
    return w->backend == WL_IOMMUFD ? "VmPin" : "VmLck";
}

uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
