/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VM test of the keeper (docs/keeper.md) with real vfio-pci: the reference
 * workload runs in operator mode (`cprkit-workload --control edu-msi
 * nvme`) under `cpr-exec run`, with NVMe I/O and edu DMA in flight, and is
 * upgraded four times to a new binary that fails in a different way:
 *   1. SIGSEGV right after loading the state      --fail-crash-after-load
 *   2. abort() after remapping half of its DMA     --fail-abort-mid-remap
 *      mappings (some vaddrs valid in a dead address space, some suspended)
 *   3. hangs before commit, --commit-timeout 5     --fail-hang
 *   4. exit(1) before loading the state            --fail-exit-early
 * (An upgrade to /bin/true, no cprkit program at all, is refused by the
 * blockers before anything changes: checked first.)
 * Each must end with `cpr-exec upgrade` reporting "rolled-back" (exit 3)
 * with the keeper's cause, the OLD binary serving again as a new process
 * started by the keeper (new pid, generation unchanged, one more restart
 * in `cpr-exec status`), and the workload's own checks of a rollback
 * passing in it: no device reset (edu registers, NVMe CSTS.RDY and
 * CC/AQA/ASQ/ACQ), the data DMA'd meanwhile intact, every interrupt of the
 * blackout accounted, fd count and VmLck as before the upgrade. Then one
 * normal upgrade commits, SIGTERM, and the workload's verdict: exit 0.
 * The new images act their fault through tests/vm/interposer/act-wrap.c
 * (linked into this binary with ld --wrap), told by control.c.
 *
 * One binary, several roles, chosen by the name it is called by:
 *   ops-keeper-faults [driver [--backend=iommufd]]
 *                                 the TAP test (run by run-vm); the
 *                                 option goes to the workload
 *   ops-keeper-faults setup DIR   DIR/cpr-exec, DIR/cprkit-workload
 *   .../cpr-exec ...              cpr-exec (shim/ compiled in)
 *   .../cprkit-workload ...       the reference workload
 */
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

#define DIR "/tmp/cprkit-ops-kf"
#define SOCK DIR "/ctl.sock"
#define LOG DIR "/workload.log"

static const struct fault_case {
    const char *name;
    const char *binary; /* NULL: the workload */
    const char *arg;    /* the upgrade argument, or NULL */
    const char *commit_timeout;
    const char *cause;
    unsigned still_valid; /* vaddrs the dead image left valid (of 3) */
} cases[] = {
    {"crash after load", NULL, "--fail-crash-after-load", NULL,
     "new binary killed by SIGSEGV before commit", 0},
    {"abort mid-remap", NULL, "--fail-abort-mid-remap", NULL,
     "new binary killed by SIGABRT before commit", 1},
    {"hang before commit", NULL, "--fail-hang", "5", "no commit within 5 s",
     3},
    {"exit 1 before load", NULL, "--fail-exit-early", NULL,
     "new binary exited with status 1 without loading the state", 0},
};
#define N_CASES G_N_ELEMENTS(cases)

static void diag_file(const char *path)
{
    g_autofree char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        tap_diag("  %s", line);
}

/* `cpr-exec status --json`: the object (owned by p), or NULL. */
static JsonObject *get_status(JsonParser *p)
{
    const char *const argv[] = {DIR "/cpr-exec", "status", "--json",
                                "--socket", SOCK, NULL};
    g_autofree char *out = NULL;
    int code = ops_run(DIR, argv, &out);

    tap_diag("cpr-exec status --json -> exit %d: %s", code,
             out ? g_strstrip(out) : "");
    return code == 0 ? ops_parse_json(p, out, NULL) : NULL;
}

/* `cpr-exec upgrade --json`; returns its exit code, the result in *ret. */
static int upgrade(const char *binary, const char *commit_timeout,
                   const char *arg, JsonParser *p, JsonObject **ret)
{
    const char *argv[12] = {DIR "/cpr-exec", "upgrade", "--json",
                            "--socket", SOCK, "--to", binary};
    g_autofree char *out = NULL;
    int n = 7, code;

    if (commit_timeout) {
        argv[n++] = "--commit-timeout";
        argv[n++] = commit_timeout;
    }
    if (arg) {
        argv[n++] = "--";
        argv[n++] = arg;
    }
    argv[n] = NULL;
    code = ops_run(DIR, argv, &out);
    *ret = ops_parse_json(p, out, NULL);
    tap_diag("cpr-exec upgrade --to %s%s%s%s%s -> exit %d: %s", binary,
             commit_timeout ? " --commit-timeout " : "",
             commit_timeout ? commit_timeout : "", arg ? " -- " : "",
             arg ? arg : "", code, out ? g_strstrip(out) : "");
    return code;
}

/* The n-th (from 0) "(K still had its addresses)" of the log: K, or -1. */
static int still_valid(const char *log, unsigned n)
{
    const char *key = " still had its addresses)";
    const char *p = log;

    for (unsigned i = 0; p && i <= n; i++) {
        p = strstr(p, key);
        if (p && i < n)
            p += strlen(key);
    }
    if (!p)
        return -1;
    while (p > log && p[-1] != '(')
        p--;
    return atoi(p);
}

/* iommufd: how many restarted images logged that they took the DMA
 * accounting of the iommufd's 3 mappings over (one CHANGE_PROCESS each;
 * there are no vaddrs to count). */
static unsigned iommufd_takeovers(const char *log)
{
    const char *key = "took over the DMA accounting of 1 iommufd (3 mappings)";
    unsigned n = 0;

    for (const char *p = strstr(log, key); p; p = strstr(p + 1, key))
        n++;
    return n;
}

/* backend_arg: NULL, or "--backend=iommufd" for the workload. */
static int driver_main(const char *backend_arg)
{
    g_autoptr(JsonParser) ps = json_parser_new();
    g_autofree char *log = NULL;
    const char *self = DIR "/cprkit-workload";
    JsonObject *o, *k;
    gint64 pid, prev_pid;
    pid_t app;
    int status, code;

    tap_plan(13 + 9 * N_CASES);
    TAP_CHECK(ops_link_self(DIR));
    unlink(SOCK);

    app = fork();
    TAP_CHECK(app < 0 ? -errno : 0);
    if (app == 0) {
        int log_fd = open(LOG, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                          0600);

        dup2(log_fd, STDOUT_FILENO);
        dup2(log_fd, STDERR_FILENO);
        execl(DIR "/cpr-exec", "cpr-exec", "run", "--socket", SOCK, "--",
              self, "--control", "edu-msi", "nvme", backend_arg, (char *)NULL);
        _exit(127);
    }
    tap_ok(ops_wait_for_socket(SOCK, app, 60),
           "cprkit-workload --control edu-msi nvme runs under cpr-exec run "
           "(the keeper is pid %d)", (int)app);

    o = get_status(ps);
    k = ops_json_obj(o, "keeper");
    pid = ops_json_int(o, "pid");
    tap_ok(o && pid > 0 && pid != app && ops_json_int(o, "generation") == 0,
           "status: program pid %" G_GINT64_FORMAT " (a child of the keeper),"
           " generation %" G_GINT64_FORMAT, pid, ops_json_int(o, "generation"));
    tap_ok(k && ops_json_int(k, "pid") == app && ops_json_int(k, "restarts") == 0,
           "status: keeper pid %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
           " restarts", ops_json_int(k, "pid"), ops_json_int(k, "restarts"));

    /* No cprkit program: refused before anything is suspended, the same
     * process serves on (no restart). */
    {
        g_autoptr(JsonParser) pu = json_parser_new();
        g_autoptr(JsonParser) pst = json_parser_new();
        g_autofree char *reply = NULL;
        JsonNode *error;

        code = upgrade("/bin/true", NULL, NULL, pu, &o);
        /* The error as JSON text, whatever its shape. */
        error = o ? json_object_get_member(o, "error") : NULL;
        reply = error ? json_to_string(error, false) : NULL;
        tap_ok(code == 1 && !strcmp(ops_json_str(o, "result"), "failed") &&
                   !strcmp(ops_json_str(o, "phase"), "blockers") && reply &&
                   strstr(reply, "does not use libcprkit"),
               "/bin/true: refused by the blockers, exit %d, %s in phase %s: "
               "%s", code, ops_json_str(o, "result"), ops_json_str(o, "phase"),
               reply ? reply : "(no error)");
        o = get_status(pst);
        k = ops_json_obj(o, "keeper");
        tap_ok(ops_json_int(o, "pid") == pid &&
                   ops_json_int(o, "generation") == 0 && k &&
                   ops_json_int(k, "restarts") == 0,
               "/bin/true: the same process serves on: pid %" G_GINT64_FORMAT
               ", generation %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
               " restarts", ops_json_int(o, "pid"),
               ops_json_int(o, "generation"), ops_json_int(k, "restarts"));
    }

    for (unsigned i = 0; i < N_CASES; i++) {
        const struct fault_case *c = &cases[i];
        g_autoptr(JsonParser) pu = json_parser_new();
        g_autoptr(JsonParser) pst = json_parser_new();

        prev_pid = pid;
        code = upgrade(c->binary ? c->binary : self, c->commit_timeout,
                       c->arg, pu, &o);
        tap_ok(code == 3 && !strcmp(ops_json_str(o, "result"), "rolled-back") &&
                   ops_json_int(o, "exit_code") == 3,
               "%u. %s: cpr-exec upgrade exits 3, rolled-back (%d, %s)",
               i + 1, c->name, code, ops_json_str(o, "result"));
        tap_ok(!strcmp(ops_json_error(o), c->cause),
               "%u. %s: the cause is '%s' ('%s')", i + 1, c->name, c->cause,
               ops_json_error(o));
        tap_ok(ops_json_int(o, "generation") == 0 && ops_json_int(o, "pid") > 0 &&
                   ops_json_int(o, "pid") != prev_pid,
               "%u. %s: answered by the old binary started again: generation "
               "%" G_GINT64_FORMAT ", pid %" G_GINT64_FORMAT " (was %"
               G_GINT64_FORMAT ")", i + 1, c->name, ops_json_int(o, "generation"),
               ops_json_int(o, "pid"), prev_pid);
        tap_ok(ops_json_int(o, "blackout_us") > 0,
               "%u. %s: rollback round trip measured: %" G_GINT64_FORMAT
               " us", i + 1, c->name, ops_json_int(o, "blackout_us"));

        o = get_status(pst);
        k = ops_json_obj(o, "keeper");
        pid = ops_json_int(o, "pid");
        tap_ok(o && pid > 0 && pid != prev_pid && pid != app &&
                   ops_json_int(o, "generation") == 0,
               "%u. %s: status: a new pid %" G_GINT64_FORMAT " serves, "
               "generation %" G_GINT64_FORMAT, i + 1, c->name, pid,
               ops_json_int(o, "generation"));
        tap_ok(k && ops_json_int(k, "pid") == app && ops_json_int(k, "restarts") == i + 1 &&
                   !strcmp(ops_json_str(k, "last_cause"), c->cause),
               "%u. %s: status: keeper %" G_GINT64_FORMAT ", %"
               G_GINT64_FORMAT " restarts, last cause '%s'", i + 1, c->name,
               ops_json_int(k, "pid"), ops_json_int(k, "restarts"), ops_json_str(k, "last_cause"));
        tap_ok(kill((pid_t)pid, 0) == 0 && kill((pid_t)prev_pid, 0) < 0,
               "%u. %s: pid %" G_GINT64_FORMAT " alive, pid %" G_GINT64_FORMAT
               " gone", i + 1, c->name, pid, prev_pid);
    }

    /* The state is still good: a normal upgrade commits. */
    {
        g_autoptr(JsonParser) pu = json_parser_new();
        g_autoptr(JsonParser) pst = json_parser_new();

        prev_pid = pid;
        code = upgrade(self, NULL, NULL, pu, &o);
        tap_ok(code == 0 && !strcmp(ops_json_str(o, "result"), "committed") &&
                   ops_json_int(o, "generation") == 1,
               "then a normal upgrade commits: exit %d, %s, generation %"
               G_GINT64_FORMAT, code, ops_json_str(o, "result"), ops_json_int(o, "generation"));
        tap_ok(ops_json_int(o, "pid") == prev_pid,
               "the update execs in place: pid %" G_GINT64_FORMAT " (%"
               G_GINT64_FORMAT ")", ops_json_int(o, "pid"), prev_pid);
        o = get_status(pst);
        k = ops_json_obj(o, "keeper");
        tap_ok(ops_json_int(o, "pid") == prev_pid && ops_json_int(o, "generation") == 1 &&
                   k && ops_json_int(k, "restarts") == N_CASES,
               "status: pid %" G_GINT64_FORMAT ", generation %"
               G_GINT64_FORMAT ", %" G_GINT64_FORMAT " restarts",
               ops_json_int(o, "pid"), ops_json_int(o, "generation"), ops_json_int(k, "restarts"));
    }

    kill(app, SIGTERM);
    status = -1;
    if (waitpid(app, &status, 0) != app)
        status = -1;
    tap_ok(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "SIGTERM to the keeper: the workload stops, exit 0 = every check "
           "of its last image passed (status 0x%x)", status);
    tap_ok(access(SOCK, F_OK) < 0 && errno == ENOENT,
           "the socket file is gone");

    /* What the workload said (stdout + stderr of every image). */
    g_file_get_contents(LOG, &log, NULL, NULL);
    for (unsigned i = 0; i < N_CASES; i++) {
        g_autofree char *needle =
            g_strdup_printf("ROLLED BACK (%s)", cases[i].cause);
        const char *line = log ? strstr(log, needle) : NULL;
        const char *eol = line ? strchrnul(line, '\n') : NULL;
        int valid = log ? still_valid(log, i) : -1;

        tap_ok(line && eol - line > 4 && !strncmp(eol - 4, ": OK", 4),
               "workload %u. %s: the old image checked the rollback: no "
               "reset, data intact, every interrupt accounted, fds and "
               "pinned memory (VmLck, VmPin on iommufd) as before: OK", i + 1,
               cases[i].name);
        if (backend_arg)
            tap_ok(log && iommufd_takeovers(log) > i,
                   "workload %u. %s: the restarted image took the DMA "
                   "accounting of the iommufd's 3 mappings over (%u "
                   "takeovers logged)", i + 1, cases[i].name,
                   log ? iommufd_takeovers(log) : 0);
        else
            tap_ok(valid == (int)cases[i].still_valid,
                   "workload %u. %s: the restarted image took over 3 DMA "
                   "mappings, %d of them still valid in the dead process "
                   "(%u expected)", i + 1, cases[i].name, valid,
                   cases[i].still_valid);
    }
    tap_ok(log && strstr(log, "update 1 (generation 1") &&
               strstr(strstr(log, "update 1 (generation 1"), ": OK"),
           "workload: the final update committed, its own checks OK");
    tap_ok(log && !strstr(log, "FAIL") && !strstr(log, "Bail out"),
           "workload: no failed check in any image (no FAIL/FATAL line)");
    tap_ok(log && strstr(log, "PASSED"), "workload: PASSED at exit");
    tap_diag("workload output:");
    diag_file(LOG);
    unlink(DIR "/cpr-exec");
    unlink(DIR "/cprkit-workload");
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
    if (argc == 3 && strcmp(argv[1], "setup") == 0) {
        int r = ops_link_self(argv[2]);

        if (r < 0) {
            fprintf(stderr, "ops-keeper-faults setup %s: %s\n", argv[2],
                    strerror(-r));
            return 1;
        }
        printf("%s/cpr-exec, %s/cprkit-workload\n", argv[2], argv[2]);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "driver") == 0)
        return driver_main(argv[2]);
    return driver_main(NULL);
}
