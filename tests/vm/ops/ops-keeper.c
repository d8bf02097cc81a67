/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VM test of the keeper with real vfio-pci: the reference workload in
 * operator mode (`cprkit-workload --control edu-msi nvme`) under
 * `cpr-exec run --restart-burst 1000 --restart-delay 10`:
 *   a. SIGKILL the committed program 50 times in a row at a random moment
 *      of its service loop (NVMe WRITE/READ and edu DMA running); each time
 *      the keeper restarts it, the new process recovers both engines from
 *      their live state blocks without resetting anything (the workload's
 *      own checks: CSTS.RDY, CC/AQA/ASQ/ACQ, data, interrupts, fd count,
 *      VmLck) and `cpr-exec status` says "restarted" with a new pid. The
 *      keeper's own fd count must not grow over the 50 cycles.
 *   b. SIGKILL inside the update window: in execve() (kill-exec.so, armed
 *      by a file) and first thing in the new image (--crash-at-start); each
 *      time `cpr-exec upgrade` must end "rolled-back" (exit 3) and the old
 *      binary serve again.
 * then SIGTERM: exit 0 is the workload's verdict that every check of every
 * image passed. The crash-restart blackout (status last_update.blackout_us,
 * from the keeper seeing the death to serving again) is printed each time
 * and as min/median/max.
 *
 * One binary, several roles chosen by argv[0], as ops-wl:
 *   ops-keeper driver KILL_EXEC_SO   the TAP test
 *   .../cpr-exec, .../cprkit-workload
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "ops-util.h"
#include "tap.h"

int cpr_exec_main(int argc, char **argv);
int cprkit_workload_main(int argc, char **argv);

#define KDIR "/tmp/cprkit-ops-keeper"
#define SOCK KDIR "/ctl.sock"
#define LOG KDIR "/workload.log"
#define TRIGGER KDIR "/kill-exec"
#define KILLS 50

static int fd_count(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    struct dirent *de;
    int n = 0;

    if (!d)
        return -1;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* `cpr-exec status --json`; the parsed object (owned by @p) or NULL. */
static JsonObject *get_status(JsonParser *p)
{
    const char *const argv[] = {KDIR "/cpr-exec", "status", "--json",
                                "--socket", SOCK, NULL};
    g_autofree char *out = NULL;

    if (ops_run(KDIR, argv, &out) != 0)
        return NULL;
    return ops_parse_json(p, out, NULL);
}

/* Polls the status until "last_update"."result" is "restarted" and the pid
 * is not @old; the new pid (blackout in *ret_us), or -1 after ~@seconds. */
static pid_t wait_restarted(pid_t old, int seconds, gint64 *ret_us,
                            gint64 *ret_restarts)
{
    gint64 deadline = g_get_monotonic_time() + seconds * G_USEC_PER_SEC;

    while (g_get_monotonic_time() < deadline) {
        g_autoptr(JsonParser) p = json_parser_new();
        JsonObject *o = get_status(p);
        JsonObject *u = ops_json_obj(o, "last_update");

        if (o && ops_json_int(o, "pid") > 0 && ops_json_int(o, "pid") != old &&
            strcmp(ops_json_str(u, "result"), "restarted") == 0) {
            *ret_us = ops_json_int(u, "blackout_us");
            *ret_restarts = ops_json_int(ops_json_obj(o, "keeper"), "restarts");
            return (pid_t)ops_json_int(o, "pid");
        }
        g_usleep(50000);
    }
    return -1;
}

/* True once @pid sits in poll(fds, 1, 100): nvme_wait() waiting for
 * commands it submitted (/proc/PID/syscall); false after ~@seconds. */
static bool wait_nvme_io(pid_t pid, int seconds)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/syscall", (int)pid);
    gint64 deadline = g_get_monotonic_time() + seconds * G_USEC_PER_SEC;

    while (g_get_monotonic_time() < deadline) {
        g_autofree char *text = NULL;
        unsigned long nr, a0, a1, a2;

        if (g_file_get_contents(path, &text, NULL, NULL) &&
            sscanf(text, "%lu %lx %lx %lx", &nr, &a0, &a1, &a2) == 4 &&
            nr == 7 /* poll */ && a1 == 1 && a2 == 100)
            return true;
        g_usleep(2000);
    }
    return false;
}

static int cmp_gint64(const void *a, const void *b)
{
    gint64 x = *(const gint64 *)a, y = *(const gint64 *)b;

    return x < y ? -1 : x > y;
}

static void diag_file(const char *path)
{
    g_autofree char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        tap_diag("  %s", line);
}

/* `cpr-exec upgrade --json` to the workload with @arg; exit code, the
 * answer in *ret (owned by @p). */
static int upgrade(JsonParser *p, const char *arg, JsonObject **ret)
{
    const char *const argv[] = {KDIR "/cpr-exec", "upgrade", "--json",
                                "--socket", SOCK, "--to",
                                KDIR "/cprkit-workload", "--", arg, NULL};
    g_autofree char *out = NULL;
    int code = ops_run(KDIR, arg ? argv : (const char *const[]){
                           KDIR "/cpr-exec", "upgrade", "--json", "--socket",
                           SOCK, "--to", KDIR "/cprkit-workload", NULL},
                       &out);

    *ret = ops_parse_json(p, out, NULL);
    tap_diag("cpr-exec upgrade --json%s%s -> exit %d: %s", arg ? " -- " : "",
             arg ? arg : "", code, out ? g_strstrip(out) : "");
    return code;
}

/* backend_arg: NULL, or "--backend=iommufd" for the workload. */
static int driver_main(const char *kill_exec_so, const char *backend_arg)
{
    gint64 blackouts[KILLS], restarts = -1;
    g_autofree char *log = NULL;
    unsigned nblack = 0;
    int status, code, keeper_fds0, keeper_fds1;
    pid_t app, prog;
    JsonObject *o;

    tap_plan(4 + KILLS + 2 + 8 + 4);
    TAP_CHECK(ops_link_self(KDIR));
    unlink(SOCK);
    unlink(TRIGGER);

    app = fork();
    TAP_CHECK(app < 0 ? -errno : 0);
    if (app == 0) {
        int log_fd = open(LOG, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                          0600);

        dup2(log_fd, STDOUT_FILENO);
        dup2(log_fd, STDERR_FILENO);
        /* For part b; inert until TRIGGER exists, and in any process that
         * is not the workload. */
        setenv("LD_PRELOAD", kill_exec_so, 1);
        setenv("CPRKIT_KILL_EXEC", TRIGGER, 1);
        execl(KDIR "/cpr-exec", "cpr-exec", "run", "--socket", SOCK,
              "--restart-burst", "1000", "--restart-delay", "10", "--",
              KDIR "/cprkit-workload", "--control", "edu-msi", "nvme",
              backend_arg, (char *)NULL);
        _exit(127);
    }
    tap_ok(ops_wait_for_socket(SOCK, app, 60),
           "cprkit-workload --control edu-msi nvme runs under cpr-exec run "
           "--restart-burst 1000 --restart-delay 10");
    prog = ops_status_pid(KDIR, SOCK);
    tap_ok(prog > 0 && prog != app, "the program (pid %d) is the keeper's "
           "child (keeper %d)", (int)prog, (int)app);
    g_usleep(500000);
    keeper_fds0 = fd_count(app);
    tap_ok(keeper_fds0 > 0, "keeper holds %d fds", keeper_fds0);
    access(kill_exec_so, R_OK) == 0
        ? tap_ok(true, "%s is there", kill_exec_so)
        : tap_ok(false, "%s: %s", kill_exec_so, strerror(errno));

    /* a. 50 kills of the committed, serving program */
    for (int i = 1; i <= KILLS; i++) {
        gint64 us = -1;
        pid_t next;

        const char *when = "at a random moment";

        /* Odd kills: while NVMe commands are outstanding (the workload
         * waits for their completions in nvme_wait(): poll() of one
         * eventfd, 100 ms). Even kills: a random moment of the service
         * loop (a round of edu DMA and NVMe I/O, then up to 100 ms
         * waiting for a request). */
        if (i % 2 && wait_nvme_io(prog, 3))
            when = "with NVMe I/O outstanding";
        else
            g_usleep((gulong)g_random_int_range(0, 150000));
        if (prog <= 0 || kill(prog, SIGKILL) < 0) {
            tap_ok(false, "kill %d: pid %d: %s", i, (int)prog,
                   strerror(errno));
            break;
        }
        next = wait_restarted(prog, 120, &us, &restarts);
        tap_ok(next > 0, "kill %d: pid %d SIGKILLed %s, restarted as pid "
               "%d, serving again %" G_GINT64_FORMAT " us after the keeper "
               "saw it die", i, (int)prog, when, (int)next, us);
        if (next <= 0) {
            tap_diag("workload output so far:");
            diag_file(LOG);
            break;
        }
        if (us >= 0) {
            blackouts[nblack++] = us;
            tap_diag("crash-restart blackout %d: %" G_GINT64_FORMAT " us",
                     i, us);
        }
        prog = next;
        /* Let it serve a little: the next kill hits a full service loop. */
        g_usleep(200000);
    }
    keeper_fds1 = fd_count(app);
    tap_ok(keeper_fds1 == keeper_fds0, "the keeper's fd count did not grow "
           "over the kills (%d before, %d after)", keeper_fds0, keeper_fds1);
    tap_ok(restarts >= KILLS, "status: keeper restarts %" G_GINT64_FORMAT,
           restarts);
    if (nblack) {
        qsort(blackouts, nblack, sizeof(blackouts[0]), cmp_gint64);
        tap_diag("crash-restart blackout over %u kills: min %" G_GINT64_FORMAT
                 " us, median %" G_GINT64_FORMAT " us, max %" G_GINT64_FORMAT
                 " us", nblack, blackouts[0], blackouts[nblack / 2],
                 blackouts[nblack - 1]);
    }

    /* b1. killed in execve(): after the keeper heard of the exec */
    {
        g_autoptr(JsonParser) p = json_parser_new();
        g_autoptr(JsonParser) p2 = json_parser_new();
        int fd = open(TRIGGER, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        pid_t after;

        close(fd);
        code = upgrade(p, NULL, &o);
        tap_ok(code == 3 && strcmp(ops_json_str(o, "result"), "rolled-back") == 0,
               "killed in execve(): upgrade exit 3, rolled-back (%d, %s)",
               code, ops_json_str(o, "result"));
        tap_ok(strstr(ops_json_error(o), "SIGKILL") != NULL,
               "the reason names the kill: %s", ops_json_error(o));
        tap_ok(access(TRIGGER, F_OK) < 0, "kill-exec.so fired");
        after = ops_status_pid(KDIR, SOCK);
        o = get_status(p2);
        tap_ok(after > 0 && after != prog && ops_json_int(o, "generation") == 0,
               "the old binary serves again: pid %d, generation %"
               G_GINT64_FORMAT, (int)after, ops_json_int(o, "generation"));
        prog = after;
        g_usleep(300000);
    }
    /* b2. the new image kills itself first thing */
    {
        g_autoptr(JsonParser) p = json_parser_new();
        g_autoptr(JsonParser) p2 = json_parser_new();
        pid_t after;

        code = upgrade(p, "--crash-at-start", &o);
        tap_ok(code == 3 && strcmp(ops_json_str(o, "result"), "rolled-back") == 0,
               "new image killed at start: upgrade exit 3, rolled-back "
               "(%d, %s)", code, ops_json_str(o, "result"));
        tap_ok(strstr(ops_json_error(o), "SIGKILL") != NULL,
               "the reason names the kill: %s", ops_json_error(o));
        after = ops_status_pid(KDIR, SOCK);
        o = get_status(p2);
        tap_ok(after > 0 && ops_json_int(o, "generation") == 0,
               "the old binary serves again: pid %d, generation %"
               G_GINT64_FORMAT, (int)after, ops_json_int(o, "generation"));
        /* And a real update still commits. */
        code = upgrade(p2, NULL, &o);
        tap_ok(code == 0 && strcmp(ops_json_str(o, "result"), "committed") == 0,
               "then an update commits (%d, %s)", code, ops_json_str(o, "result"));
        prog = after;
    }

    if (app > 0)
        kill(app, SIGTERM);
    tap_ok(waitpid(app, &status, 0) == app && WIFEXITED(status) &&
               WEXITSTATUS(status) == 0,
           "SIGTERM: the workload stops, exit 0 = every check of every "
           "image passed (status 0x%x)", status);
    g_file_get_contents(LOG, &log, NULL, NULL);
    {
        unsigned n = 0;

        for (const char *s = log; s && (s = strstr(s, "crash restart "));
             s++)
            n += strncmp(s, "crash restart by", 16) != 0 &&
                 strncmp(s, "crash restart: ", 15) != 0;
        tap_ok(n >= KILLS, "workload: %u crash restarts recovered", n);
    }
    {
        /* What was in flight at the kills, as the restarted images saw it
         * ("crash restart N (...): ... [edu-msi I irq/C completion(s),
         * nvme I irq/C completion(s)]"). */
        unsigned nvme = 0, edu = 0;

        for (const char *s = log; s && (s = strstr(s, "\ncrash restart "));
             s++) {
            const char *eol = strchr(s + 1, '\n');
            const char *e = strstr(s, "edu-msi "), *v = strstr(s, "nvme ");
            unsigned irq, c;

            if (e && (!eol || e < eol) &&
                sscanf(e, "edu-msi %u irq/%u", &irq, &c) == 2 && c)
                edu++;
            if (v && (!eol || v < eol) &&
                sscanf(v, "nvme %u irq/%u", &irq, &c) == 2 && c)
                nvme++;
        }
        tap_diag("in flight at the kill (completed while no driver ran): "
                 "NVMe commands in %u, an edu transfer in %u of %d kills",
                 nvme, edu, KILLS);
    }
    tap_ok(log && !strstr(log, "FAIL"), "workload: no failed check");
    tap_ok(log && strstr(log, "PASSED"), "workload: PASSED at exit");
    tap_diag("workload output:");
    diag_file(LOG);
    unlink(KDIR "/cpr-exec");
    unlink(KDIR "/cprkit-workload");
    unlink(LOG);
    tap_exit();
}

int main(int argc, char **argv)
{
    g_autofree char *name = g_path_get_basename(argv[0]);

    if (strcmp(name, "cpr-exec") == 0)
        return cpr_exec_main(argc, argv);
    if (strcmp(name, "cprkit-workload") == 0)
        return cprkit_workload_main(argc, argv);
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "driver") == 0)
        return driver_main(argv[2], argc == 4 ? argv[3] : NULL);
    fprintf(stderr, "usage: %s driver KILL_EXEC_SO [--backend=iommufd]\n",
            argv[0]);
    return 2;
}
