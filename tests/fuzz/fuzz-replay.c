/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Runs the fuzz target over files, without libFuzzer: the regression test
 * of the 'fuzz' suite replays the committed corpus in every build (also the
 * ASan/UBSan and valgrind ones). Prints TAP.
 */
#include <stdio.h>
#include <stdlib.h>

#include <glib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int main(int argc, char **argv)
{
    int n = 0;

    printf("TAP version 13\n");
    for (int i = 1; i < argc; i++) {
        g_autoptr(GDir) dir = g_dir_open(argv[i], 0, NULL);
        const char *name;

        if (!dir) {
            printf("not ok %d - cannot open %s\n", ++n, argv[i]);
            continue;
        }
        while ((name = g_dir_read_name(dir))) {
            g_autofree char *path = g_build_filename(argv[i], name, NULL);
            g_autofree char *data = NULL;
            gsize size;

            if (!g_file_get_contents(path, &data, &size, NULL)) {
                printf("not ok %d - read %s\n", ++n, path);
                continue;
            }
            LLVMFuzzerTestOneInput((const unsigned char *)data, size);
            printf("ok %d - %s\n", ++n, name);
        }
    }
    printf("1..%d\n", n);
    /* An empty corpus would make this test assert nothing. */
    return n > 0 ? 0 : 1;
}
