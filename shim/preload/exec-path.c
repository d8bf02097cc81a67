/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * execvp/execvpe's PATH search for the program's own exec. glibc's execvpe
 * calls its internal execve, which the shim does not see, so the shim
 * searches PATH itself and calls the interposed execve for each candidate.
 * The library has no PATH search (cprkit_exec takes a path), so this stays
 * here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "preload-internal.h"

int preload_execvpe_search(const char *file, char *const argv[],
                           char *const envp[])
{
    const char *path_env = getenv("PATH");
    char buf[4096];
    int saved = ENOENT;

    if (!path_env)
        path_env = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path_env;; p++) {
        const char *end = strchrnul(p, ':');
        int n = snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(end - p), p,
                         end == p ? "" : "/", file);

        if (n > 0 && (size_t)n < sizeof(buf) && access(buf, X_OK) == 0) {
            execve(buf, argv, envp);
            /* Like execvp: go on past entries that are not there or not
             * ours to run, stop at any other failure. */
            if (errno != ENOENT && errno != EACCES)
                return -1;
            saved = errno;
        }
        if (!*end)
            break;
        p = end;
    }
    return preload_errno_ret(-saved);
}
