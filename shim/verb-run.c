/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cpr-exec run [--socket S] -- PROG ARGS...
 *
 * Runs PROG with CPRKIT_CONTROL_SOCKET set, after printing the socket
 * path, as the child of a keeper (keeper.c, docs/keeper.md) that holds its
 * preserved fds and restarts it from them when it or an update's new
 * binary dies; with --no-keeper, execs PROG in place instead. A PROG that
 * links libcprkit serves the control socket itself; any other PROG runs
 * with the LD_PRELOAD shim (libcprkit-preload.so, shim/preload/), which
 * serves it and maps the program's VFIO calls onto the library.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "cpr-exec.h"
#include "keeper.h"

/* Where `ninja install` puts the shim; --preload or $CPRKIT_PRELOAD
 * override it. */
#ifndef CPRKIT_PRELOAD_PATH
#define CPRKIT_PRELOAD_PATH "/usr/local/lib/x86_64-linux-gnu/cprkit/libcprkit-preload.so"
#endif

/* Prepends the shim to LD_PRELOAD (space or colon separated). */
static int set_preload(const char *shim)
{
    const char *old = getenv("LD_PRELOAD");
    g_autofree char *val = NULL;

    if (strchr(shim, ' ') || strchr(shim, ':'))
        return -EINVAL;
    val = old && *old ? g_strdup_printf("%s:%s", shim, old) : g_strdup(shim);
    return setenv("LD_PRELOAD", val, 1) < 0 ? -errno : 0;
}

/* Whether the file mentions cprkit_control_listen (*ret_control) and
 * cprkit_new (*ret_core): in the dynamic symbol table when it links the
 * libraries, in the symbol table when it links them statically (unless
 * stripped). */
static int program_uses_cprkit(const char *path, bool *ret_control,
                               bool *ret_core)
{
    struct stat st;
    void *map;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || st.st_size == 0) {
        close(fd);
        return -EINVAL;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return -errno;
    *ret_control = memmem(map, (size_t)st.st_size, "cprkit_control_listen",
                          strlen("cprkit_control_listen")) != NULL;
    *ret_core = *ret_control || memmem(map, (size_t)st.st_size, "cprkit_new",
                                       strlen("cprkit_new")) != NULL;
    munmap(map, (size_t)st.st_size);
    return 0;
}

/* $RUNTIME_DIRECTORY (systemd RuntimeDirectory=), else
 * $XDG_RUNTIME_DIR/cprkit for users, /run/cprkit for root. NULL, with the
 * reason logged, when the directory cannot be made: a path that will never
 * exist is no use to the operator. */
static char *default_socket_path(const char *prog)
{
    g_autofree char *base = g_path_get_basename(prog);
    const char *rt = getenv("RUNTIME_DIRECTORY");
    g_autofree char *dir = NULL;
    bool shared = false;

    if (rt && *rt) {
        /* It may list several directories separated by ':'. */
        dir = g_strndup(rt, strcspn(rt, ":"));
        shared = true;
    } else if (geteuid() != 0 && getenv("XDG_RUNTIME_DIR")) {
        dir = g_build_filename(getenv("XDG_RUNTIME_DIR"), "cprkit", NULL);
    } else {
        dir = g_strdup("/run/cprkit");
    }
    if (g_mkdir_with_parents(dir, 0700) < 0) {
        log_msg(LOG_ERR,
                "run: cannot create %s for the control socket: %m%s; give "
                "one with --socket PATH",
                dir,
                geteuid() != 0 && !getenv("XDG_RUNTIME_DIR") && !shared
                    ? " (no XDG_RUNTIME_DIR for this user)"
                    : "");
        return NULL;
    }
    return shared ? g_strdup_printf("%s/%s.sock", dir, base)
                  : g_strdup_printf("%s/%s-%d.sock", dir, base, (int)getpid());
}

int verb_run(int argc, char **argv)
{
    g_autofree char *arg_socket = NULL;
    g_autofree char *arg_preload = NULL;
    gboolean arg_json = false, arg_no_check = false, arg_no_keeper = false,
             arg_fd_store = false;
    g_autofree char *arg_restart = NULL;
    int arg_restart_delay = 100, arg_restart_max_delay = 5000,
        arg_restart_burst = 5, arg_restart_interval = 10000,
        arg_commit_timeout = 30000;
    GOptionEntry entries[] = {
        {"socket", 'S', 0, G_OPTION_ARG_FILENAME, &arg_socket,
         "Control socket path (default: $CPRKIT_CONTROL_SOCKET, else "
         "$RUNTIME_DIRECTORY/PROG.sock, else /run/cprkit/PROG-PID.sock)",
         "PATH"},
        {"json", 0, 0, G_OPTION_ARG_NONE, &arg_json,
         "Print {\"socket\":..,\"pid\":..} instead of the bare path", NULL},
        {"no-check", 0, 0, G_OPTION_ARG_NONE, &arg_no_check,
         "Do not check whether PROG links libcprkit; never preload the shim",
         NULL},
        {"preload", 0, 0, G_OPTION_ARG_FILENAME, &arg_preload,
         "The LD_PRELOAD shim for programs that do not link libcprkit "
         "(default: $CPRKIT_PRELOAD, else " CPRKIT_PRELOAD_PATH ")",
         "PATH"},
        {"no-keeper", 0, 0, G_OPTION_ARG_NONE, &arg_no_keeper,
         "Exec PROG in place of this process, without a keeper: nothing "
         "survives a crash of PROG or of an update's new binary",
         NULL},
        {"restart", 0, 0, G_OPTION_ARG_STRING, &arg_restart,
         "Restart a committed PROG that dies: on-failure (default) or no",
         "WHEN"},
        {"restart-delay", 0, 0, G_OPTION_ARG_INT, &arg_restart_delay,
         "First restart after MS ms, doubled for each further one within "
         "--restart-interval (default 100)",
         "MS"},
        {"restart-max-delay", 0, 0, G_OPTION_ARG_INT, &arg_restart_max_delay,
         "Longest restart delay (default 5000)", "MS"},
        {"restart-burst", 0, 0, G_OPTION_ARG_INT, &arg_restart_burst,
         "Give up after N restarts within --restart-interval (default 5)",
         "N"},
        {"restart-interval", 0, 0, G_OPTION_ARG_INT, &arg_restart_interval,
         "The window of --restart-burst (default 10000)", "MS"},
        {"fd-store", 0, 0, G_OPTION_ARG_NONE, &arg_fd_store,
         "Also keep the state in systemd's fd store (FDSTORE=1), so that a "
         "restart of the keeper itself keeps the device; at start, take it "
         "back from there (LISTEN_FDS). Needs FileDescriptorStoreMax=",
         NULL},
        {"commit-timeout", 0, 0, G_OPTION_ARG_INT, &arg_commit_timeout,
         "A restarted PROG must commit within MS ms, or it is killed and "
         "started again (default 30000; an update's deadline is "
         "`cpr-exec upgrade --commit-timeout`)",
         "MS"},
        {"verbose", 'v', 0, G_OPTION_ARG_NONE, &arg_verbose, "Debug output",
         NULL},
        {NULL},
    };
    struct keeper_options ko = {0};
    g_autofree char *prog = NULL;
    g_autofree char *path = NULL;
    bool uses = false, uses_core = false, preload = false;
    const char *shim = NULL;
    int r;

    if (!parse_verb_options("run", "-- PROG [ARGS...]",
                            "Runs PROG with CPRKIT_CONTROL_SOCKET set, after "
                            "printing the socket path on\nstdout, as the "
                            "child of a keeper that holds its preserved fds "
                            "and restarts\nit from them when it, or the new "
                            "binary of an update, dies (docs/keeper.md).\n"
                            "Exits with PROG's status.",
                            entries, &argc, &argv))
        return EXIT_USAGE;
    if (arg_restart && strcmp(arg_restart, "on-failure") &&
        strcmp(arg_restart, "no")) {
        log_msg(LOG_ERR, "run: --restart is on-failure or no, not '%s'",
                arg_restart);
        return EXIT_USAGE;
    }
    if (arg_restart_delay < 0 || arg_restart_max_delay < arg_restart_delay ||
        arg_restart_burst < 1 || arg_restart_interval < 1 ||
        arg_commit_timeout < 1) {
        log_msg(LOG_ERR, "run: restart delays must be >= 0 (the maximum not "
                "below the first), --restart-burst, --restart-interval and "
                "--commit-timeout >= 1");
        return EXIT_USAGE;
    }
    /* GOption leaves "--" in place when it stops there. */
    if (argc >= 2 && strcmp(argv[1], "--") == 0) {
        argv++;
        argc--;
    }
    if (argc < 2) {
        log_msg(LOG_ERR, "run: no program given (cpr-exec run -- PROG ARGS...)");
        return EXIT_USAGE;
    }
    prog = strchr(argv[1], '/') ? g_strdup(argv[1])
                                : g_find_program_in_path(argv[1]);
    if (!prog || access(prog, X_OK) < 0) {
        log_msg(LOG_ERR, "run: %s: no such executable", argv[1]);
        return EXIT_FAILED;
    }
    if (!arg_no_check) {
        r = program_uses_cprkit(prog, &uses, &uses_core);
        if (r < 0) {
            log_msg(LOG_ERR, "run: cannot read %s: %s", prog, strerror(-r));
            return EXIT_FAILED;
        }
        /* A program that links libcprkit manages its own state: the shim
         * beside it would preserve (and leak) fds behind its back. */
        if (uses_core && !uses)
            log_msg(LOG_WARNING,
                    "run: %s links libcprkit but not its control endpoint "
                    "(cprkit_control_listen): it runs without the LD_PRELOAD "
                    "shim, and `cpr-exec upgrade` cannot reach it",
                    prog);
        if (!uses_core) {
            shim = arg_preload           ? arg_preload
                   : getenv("CPRKIT_PRELOAD") ? getenv("CPRKIT_PRELOAD")
                                              : CPRKIT_PRELOAD_PATH;
            if (access(shim, R_OK) < 0) {
                log_msg(LOG_ERR,
                        "run: %s does not link libcprkit, and the LD_PRELOAD "
                        "shim that serves such programs is not at %s (%m); "
                        "give it with --preload PATH",
                        prog, shim);
                return EXIT_FAILED;
            }
            preload = true;
        }
    }

    path = arg_socket ? g_strdup(arg_socket)
                      : (getenv("CPRKIT_CONTROL_SOCKET")
                             ? g_strdup(getenv("CPRKIT_CONTROL_SOCKET"))
                             : default_socket_path(prog));
    if (!path)
        return EXIT_FAILED;
    if (!g_path_is_absolute(path)) {
        g_autofree char *cwd = g_get_current_dir();
        g_autofree char *abs = g_build_filename(cwd, path, NULL);

        g_free(path);
        path = g_steal_pointer(&abs);
    }
    setenv("CPRKIT_CONTROL_SOCKET", path, 1);
    if (preload) {
        r = set_preload(shim);
        if (r < 0) {
            log_msg(LOG_ERR, "run: cannot preload %s: %s", shim, strerror(-r));
            return EXIT_FAILED;
        }
    }
    if (!arg_no_keeper) {
        ko.restart = !arg_restart || strcmp(arg_restart, "no") != 0;
        ko.delay_ms = (uint32_t)arg_restart_delay;
        ko.max_delay_ms = (uint32_t)arg_restart_max_delay;
        ko.burst = (unsigned)arg_restart_burst;
        ko.interval_ms = (uint32_t)arg_restart_interval;
        ko.commit_timeout_ms = (uint32_t)arg_commit_timeout;
        ko.socket_path = path;
        ko.preload = preload ? shim : NULL;
        ko.json = arg_json;
        ko.fd_store = arg_fd_store;
        return keeper_run(prog, argv + 1, &ko);
    }
    if (arg_json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonNode) root = NULL;

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "socket");
        json_builder_add_string_value(b, path);
        json_builder_set_member_name(b, "pid");
        json_builder_add_int_value(b, getpid());
        json_builder_set_member_name(b, "program");
        json_builder_add_string_value(b, prog);
        json_builder_set_member_name(b, "preload");
        if (preload)
            json_builder_add_string_value(b, shim);
        else
            json_builder_add_null_value(b);
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        print_json(root, false);
    } else {
        printf("%s\n", path);
        fflush(stdout);
    }
    log_msg(LOG_INFO, "running %s with control socket %s (pid %d)%s%s", prog,
            path, (int)getpid(), preload ? " under the LD_PRELOAD shim " : "",
            preload ? shim : "");
    execv(prog, argv + 1);
    log_msg(LOG_ERR, "run: execv %s: %m", prog);
    return EXIT_FAILED;
}
