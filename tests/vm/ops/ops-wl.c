/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VM test of the operator walk-through (docs/operations.md, "Walk-through:
 * the reference workload"): the reference workload runs in operator mode
 * (`cprkit-workload --control edu-msi nvme`) under `cpr-exec run`, and the
 * example script shim/examples/cprkit-upgrade upgrades it:
 *   1. to the same binary: committed (exit 0), generation 1, a blackout;
 *   2. with --fail-health-check: the new image vetoes, rolled back (exit 3),
 *      the reason names the health check, generation still 1;
 *   3. to a binary that does not exist: failed at the blockers (exit 1),
 *      nothing changed (script and `cpr-exec upgrade --json` directly);
 * then `cpr-exec status`, SIGTERM, and the workload's own verdict: it
 * checks every update itself (no reset, data intact, every interrupt of
 * the blackout serviced, fd count and VmLck unchanged, fresh DMA + IRQ
 * after the commit and after the rollback) and exits 0 only if all passed.
 *
 * One binary, several roles (the VM harness copies programs, not other
 * files), chosen by the name it is called by:
 *   ops-wl [driver]         the TAP test (run by run-vm)
 *   ops-wl setup DIR        DIR/cpr-exec, DIR/cprkit-workload (symlinks to
 *                           this binary) and DIR/cprkit-upgrade (the
 *                           example script, embedded): the operator's kit
 *                           in the VM shell
 *   .../cpr-exec ...        cpr-exec (shim/ compiled in)
 *   .../cprkit-workload ... the reference workload (tests/vm/workload/)
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "ops-script.h"
#include "ops-util.h"
#include "tap.h"

int cpr_exec_main(int argc, char **argv);
int cprkit_workload_main(int argc, char **argv);

#define DIR "/tmp/cprkit-ops-wl"
#define SOCK DIR "/ctl.sock"
#define LOG DIR "/workload.log"
#define RESULT DIR "/result.json"

/* DIR/cpr-exec, DIR/cprkit-workload, DIR/cprkit-upgrade. */
static int setup(const char *dir)
{
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
    const char *const links[] = {"cpr-exec", "cprkit-workload"};
    g_autofree char *script = g_build_filename(dir, "cprkit-upgrade", NULL);

    if (!self || (mkdir(dir, 0700) < 0 && errno != EEXIST))
        return -errno;
    for (size_t i = 0; i < G_N_ELEMENTS(links); i++) {
        g_autofree char *p = g_build_filename(dir, links[i], NULL);

        unlink(p);
        if (symlink(self, p) < 0)
            return -errno;
    }
    if (!g_file_set_contents(script, (const char *)ops_script,
                             (gssize)ops_script_len, NULL) ||
        chmod(script, 0755) < 0)
        return -EIO;
    return 0;
}

static const char *str(JsonObject *o, const char *member)
{
    return o ? json_object_get_string_member_with_default(o, member, "")
             : "";
}

static gint64 num(JsonObject *o, const char *member)
{
    return o ? json_object_get_int_member_with_default(o, member, -1) : -1;
}

static void diag_file(const char *path)
{
    g_autofree char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        tap_diag("  %s", line);
}

/* The example script; returns its exit code, the result file in @p. */
static int script(const char *to, const char *arg, JsonParser *p,
                  JsonObject **ret)
{
    const char *const argv[] = {"sh", DIR "/cprkit-upgrade", "-s", SOCK,
                                "-o", RESULT, to, arg, NULL};
    g_autofree char *text = NULL;
    int code;

    unlink(RESULT);
    code = ops_run(DIR, argv, NULL);
    *ret = ops_parse_json(p, NULL, RESULT);
    if (g_file_get_contents(RESULT, &text, NULL, NULL))
        tap_diag("cprkit-upgrade %s%s%s -> exit %d: %s", to, arg ? " " : "",
                 arg ? arg : "", code, g_strstrip(text));
    else
        tap_diag("cprkit-upgrade %s%s%s -> exit %d, no result file", to,
                 arg ? " " : "", arg ? arg : "", code);
    return code;
}

static int driver_main(void)
{
    g_autoptr(JsonParser) p1 = json_parser_new();
    g_autoptr(JsonParser) p2 = json_parser_new();
    g_autoptr(JsonParser) p3 = json_parser_new();
    g_autoptr(JsonParser) p4 = json_parser_new();
    g_autofree char *out = NULL, *log = NULL, *missing_out = NULL;
    const char *const status_argv[] = {DIR "/cpr-exec", "status", "--json",
                                       "--socket", SOCK, NULL};
    const char *const missing_argv[] = {DIR "/cpr-exec", "upgrade", "--json",
                                        "--socket", SOCK, "--to",
                                        DIR "/missing", NULL};
    JsonObject *o;
    pid_t app, prog;
    int status, code;

    tap_plan(25);
    TAP_CHECK(setup(DIR));
    unlink(SOCK);

    app = fork();
    TAP_CHECK(app < 0 ? -errno : 0);
    if (app == 0) {
        int log_fd = open(LOG, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                          0600);

        dup2(log_fd, STDOUT_FILENO);
        dup2(log_fd, STDERR_FILENO);
        execl(DIR "/cpr-exec", "cpr-exec", "run", "--socket", SOCK, "--",
              DIR "/cprkit-workload", "--control", "edu-msi", "nvme",
              (char *)NULL);
        _exit(127);
    }
    tap_ok(ops_wait_for_socket(SOCK, app, 60),
           "cprkit-workload --control edu-msi nvme runs under cpr-exec run");
    /* cpr-exec run stays as the keeper; the program is its child. */
    prog = ops_status_pid(DIR, SOCK);
    tap_diag("keeper pid %d, program pid %d", (int)app, (int)prog);

    /* 1. committed */
    code = script(DIR "/cprkit-workload", NULL, p1, &o);
    tap_ok(code == 0, "upgrade to the same binary: script exits 0 (%d)", code);
    tap_ok(strcmp(str(o, "result"), "committed") == 0 &&
               num(o, "exit_code") == 0,
           "JSON: result committed, exit_code 0 (%s)", str(o, "result"));
    tap_ok(num(o, "generation") == 1, "JSON: generation 1 (%" G_GINT64_FORMAT
           ")", num(o, "generation"));
    tap_ok(num(o, "blackout_us") > 0,
           "JSON: blackout measured: %" G_GINT64_FORMAT " us",
           num(o, "blackout_us"));
    tap_ok(prog > 0 && prog != app && num(o, "pid") == prog,
           "JSON: same pid %d (the keeper's child, keeper %d)", (int)prog,
           (int)app);

    /* 2. broken new image: rolled back */
    code = script(DIR "/cprkit-workload", "--fail-health-check", p2, &o);
    tap_ok(code == 3, "upgrade to a new image that fails its health check: "
           "script exits 3 (%d)", code);
    tap_ok(strcmp(str(o, "result"), "rolled-back") == 0 &&
               num(o, "exit_code") == 3,
           "JSON: result rolled-back, exit_code 3 (%s)", str(o, "result"));
    tap_ok(strstr(ops_json_error(o), "health check") != NULL,
           "JSON: the reason names the health check: %s", ops_json_error(o));
    tap_ok(num(o, "generation") == 1,
           "JSON: generation still 1 (%" G_GINT64_FORMAT ")",
           num(o, "generation"));
    tap_ok(num(o, "blackout_us") > 0,
           "JSON: rollback round trip measured: %" G_GINT64_FORMAT " us",
           num(o, "blackout_us"));

    /* 3. missing binary: nothing changed */
    code = script(DIR "/missing", NULL, p3, &o);
    tap_ok(code == 1 && o == NULL,
           "upgrade to a missing binary: the script's pre-flight stops it, "
           "exit 1 (%d), no upgrade sent", code);
    code = ops_run(DIR, missing_argv, &missing_out);
    o = ops_parse_json(p3, missing_out, NULL);
    tap_diag("cpr-exec upgrade --json --to " DIR "/missing -> exit %d: %s",
             code, missing_out ? g_strstrip(missing_out) : "");
    tap_ok(code == 1 && strcmp(str(o, "result"), "failed") == 0 &&
               strcmp(str(o, "phase"), "blockers") == 0,
           "cpr-exec upgrade --json: exit 1, failed at the blockers (%d, %s, "
           "%s)", code, str(o, "result"), str(o, "phase"));
    tap_ok(strstr(ops_json_error(o), DIR "/missing") != NULL,
           "JSON: the error names the binary: %s", ops_json_error(o));
    tap_ok(num(o, "generation") == 1, "JSON: generation still 1");

    /* 4. an argument the workload does not take: refused before exec */
    {
        const char *const bogus_argv[] = {DIR "/cpr-exec", "upgrade",
                                          "--json", "--socket", SOCK,
                                          "--to", DIR "/cprkit-workload",
                                          "--", "--bogus", NULL};
        g_autoptr(JsonParser) p5 = json_parser_new();
        g_autofree char *bogus_out = NULL;

        code = ops_run(DIR, bogus_argv, &bogus_out);
        o = ops_parse_json(p5, bogus_out, NULL);
        tap_diag("cpr-exec upgrade --json --to cprkit-workload -- --bogus -> "
                 "exit %d: %s", code, bogus_out ? g_strstrip(bogus_out) : "");
        tap_ok(code == 1 && strcmp(str(o, "result"), "failed") == 0 &&
                   num(o, "generation") == 1,
               "unknown upgrade argument: exit 1, failed, generation still 1 "
               "(%d, %s)", code, str(o, "result"));
    }

    /* The process after all this */
    code = ops_run(DIR, status_argv, &out);
    o = ops_parse_json(p4, out, NULL);
    tap_diag("cpr-exec status --json -> exit %d: %s", code,
             out ? g_strstrip(out) : "");
    tap_ok(code == 0 && o, "cpr-exec status --json (exit %d)", code);
    tap_ok(num(o, "pid") == prog && num(o, "generation") == 1,
           "status: pid %" G_GINT64_FORMAT ", generation %" G_GINT64_FORMAT,
           num(o, "pid"), num(o, "generation"));
    if (o && json_object_has_member(o, "vfio")) {
        JsonObject *v = json_object_get_object_member(o, "vfio");
        JsonArray *devs = v && json_object_has_member(v, "devices")
                              ? json_object_get_array_member(v, "devices")
                              : NULL;

        tap_ok(devs && json_array_get_length(devs) == 2,
               "status: 2 devices preserved");
    } else {
        tap_ok(false, "status: 2 devices preserved");
    }

    kill(app, SIGTERM);
    tap_ok(waitpid(app, &status, 0) == app && WIFEXITED(status) &&
               WEXITSTATUS(status) == 0,
           "SIGTERM: the workload stops, exit 0 = every check of every "
           "image passed (status 0x%x)", status);
    tap_ok(access(SOCK, F_OK) < 0 && errno == ENOENT,
           "the socket file is gone");

    /* What the workload said about the updates (stdout). */
    g_file_get_contents(LOG, &log, NULL, NULL);
    tap_ok(log && strstr(log, "update 1 (generation 1") &&
               strstr(strstr(log, "update 1 (generation 1"), ": OK"),
           "workload: update 1 committed, its own checks OK");
    tap_ok(log && strstr(log, "ROLLED BACK (health check failed") &&
               strstr(strstr(log, "ROLLED BACK"), "OK"),
           "workload: rollback seen by the old image, fresh DMA + IRQ OK");
    tap_ok(log && strstr(log, "FAILED") == NULL &&
               strstr(log, "refused: unknown argument '--bogus'"),
           "workload: no failed check, the bogus argument refused");
    tap_ok(log && strstr(log, "PASSED"), "workload: PASSED at exit");
    tap_diag("workload output:");
    diag_file(LOG);
    unlink(DIR "/cpr-exec");
    unlink(DIR "/cprkit-workload");
    unlink(DIR "/cprkit-upgrade");
    unlink(RESULT);
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
        int r = setup(argv[2]);

        if (r < 0) {
            fprintf(stderr, "ops-wl setup %s: %s\n", argv[2], strerror(-r));
            return 1;
        }
        printf("%s/cpr-exec, %s/cprkit-workload, %s/cprkit-upgrade\n",
               argv[2], argv[2], argv[2]);
        return 0;
    }
    return driver_main();
}
