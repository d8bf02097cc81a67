/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VM test of the LD_PRELOAD shim with real VFIO: edu-raw (a driver that
 * does not link libcprkit, tests/vm/preload/edu-raw.c) runs under
 * `cpr-exec run`, which preloads libcprkit-preload.so; `cpr-exec upgrade`
 * replaces it three times while its DMA loop runs, then once with a
 * version whose DMA layout differs, which the shim rolls back.
 * Asserted: the program runs as the child of `cpr-exec run` (the keeper)
 * and keeps its pid through every update, committed generations, the
 * device not reset (bus mastering still on and the DMA count register as the previous binary
 * left it, seen by the new binary before its own initialisation), a DMA in
 * flight at the exec landed in the preserved buffer and its MSI was
 * counted in the eventfd the new binary reads, the refused version ends
 * with the old version serving, and the DMA loop never failed.
 *
 * One binary, two roles (the VM harness copies programs, not other
 * files): "preload-vm driver EDU_RAW" is the TAP test; invoked through a
 * symlink named cpr-exec it is the cpr-exec command. The shim is embedded
 * (preload-so.h) and written out in the guest.
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

#include "preload-so.h"
#include "tap.h"

int cpr_exec_main(int argc, char **argv);

#define DIR "/tmp/cprkit-preload"
#define SOCK DIR "/ctl.sock"
#define OUT DIR "/app.out"
#define SHIM DIR "/libcprkit-preload.so"
#define UPDATES 3

static char *read_out(void)
{
    char *text = NULL;

    g_file_get_contents(OUT, &text, NULL, NULL);
    return text ? text : g_strdup("");
}

/* The first line at or after *offset containing needle; moves *offset past
 * it. Waits up to timeout_s for it to appear. */
static char *wait_line(size_t *offset, const char *needle, int timeout_s)
{
    for (int i = 0; i < timeout_s * 10; i++) {
        g_autofree char *text = read_out();
        char *hit = strlen(text) > *offset ? strstr(text + *offset, needle) : NULL;

        if (hit) {
            char *start = hit, *end = strchr(hit, '\n');

            while (start > text && start[-1] != '\n')
                start--;
            if (end) {
                *offset = (size_t)(end - text) + 1;
                return g_strndup(start, (size_t)(end - start));
            }
        }
        g_usleep(100000);
    }
    return NULL;
}

static long field(const char *line, const char *key)
{
    g_autofree char *k = g_strdup_printf(" %s=", key);
    const char *p = line ? strstr(line, k) : NULL;

    return p ? strtol(p + strlen(k), NULL, 0) : -1;
}

static JsonObject *upgrade(JsonParser *p, const char *self_dir_cpr_exec,
                           const char *edu_raw, const char *tag,
                           const char *extra, int *ret_code)
{
    g_autofree char *tag_arg = g_strdup_printf("--tag=%s", tag);
    const char *argv[] = {self_dir_cpr_exec, "upgrade", "--json", "--timeout",
                          "120", "--socket", SOCK, "--to", edu_raw, "--",
                          tag_arg, extra, NULL};
    g_autofree char *out = NULL;
    int status;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, 0, NULL, NULL, &out, NULL,
                      &status, NULL))
        return NULL;
    *ret_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    tap_diag("upgrade to %s: %s", tag, out ? g_strstrip(out) : "");
    if (!out || !*out || !json_parser_load_from_data(p, out, -1, NULL) ||
        !json_parser_get_root(p) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)))
        return NULL;
    return json_node_get_object(json_parser_get_root(p));
}

static const char *str_member(JsonObject *o, const char *m)
{
    return o ? json_object_get_string_member_with_default(o, m, "") : "";
}

/* The "desc" of the "error" object: {"class", "desc"}. */
static const char *error_desc(JsonObject *o)
{
    JsonNode *e = o ? json_object_get_member(o, "error") : NULL;

    return e && JSON_NODE_HOLDS_OBJECT(e)
               ? str_member(json_node_get_object(e), "desc")
               : "";
}

static gint64 int_member(JsonObject *o, const char *m)
{
    return o ? json_object_get_int_member_with_default(o, m, -1) : -1;
}

static int driver_main(const char *edu_raw)
{
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
    const char *cpr_exec = DIR "/cpr-exec";
    size_t off = 0;
    unsigned pending_seen = 0;
    int status, code = -1;
    pid_t app, prog = -1;
    char *line;

    tap_plan(3 + UPDATES * 7 + 1 + 7 + 2 + 3);
    mkdir(DIR, 0700);
    unlink(cpr_exec);
    unlink(OUT);
    unlink(SOCK);
    TAP_CHECK(symlink(self, cpr_exec) == 0 ? 0 : -errno);
    TAP_CHECK(g_file_set_contents(SHIM, (const char *)preload_so,
                                  (gssize)preload_so_len, NULL)
                  ? 0
                  : -EIO);

    app = fork();
    TAP_CHECK(app < 0 ? -errno : 0);
    if (app == 0) {
        int fd = open(OUT, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

        dup2(fd, STDOUT_FILENO);
        execl(cpr_exec, "cpr-exec", "run", "--socket", SOCK, "--preload", SHIM,
              "--", edu_raw, "--tag=v0", (char *)NULL);
        _exit(127);
    }
    tap_ok(wait_line(&off, SOCK, 30) != NULL,
           "cpr-exec run prints the socket (edu-raw does not link libcprkit)");
    line = wait_line(&off, "init pid=", 60);
    /* cpr-exec run stays as the keeper: the program is its child. */
    if (line)
        prog = (pid_t)field(line, "pid");
    tap_ok(line && prog > 0 && prog != app && strstr(line, "tag=v0") &&
               field(line, "preserved") == 0,
           "v0 starts fresh under the shim, as the keeper's child (pid %d, "
           "keeper %d): %s", (int)prog, (int)app,
           line ? line : "no init line");
    g_free(line);
    line = wait_line(&off, "serving pid=", 60);
    tap_ok(line != NULL, "v0 serving");
    g_free(line);
    g_usleep(500000);

    for (int u = 1; u <= UPDATES; u++) {
        g_autoptr(JsonParser) p = json_parser_new();
        g_autofree char *tag = g_strdup_printf("v%d", u);
        g_autofree char *serving = NULL;
        JsonObject *o = upgrade(p, cpr_exec, edu_raw, tag, NULL, &code);
        char *pend;

        tap_ok(o && code == 0 && strcmp(str_member(o, "result"), "committed") == 0,
               "upgrade to %s: exit %d, result \"%s\"", tag, code,
               str_member(o, "result"));
        tap_ok(int_member(o, "pid") == prog && int_member(o, "generation") == u,
               "%s: same pid %d, generation %" G_GINT64_FORMAT ", blackout %"
               G_GINT64_FORMAT " us",
               tag, (int)prog, int_member(o, "generation"),
               int_member(o, "blackout_us"));
        line = wait_line(&off, "init pid=", 60);
        tap_ok(line && field(line, "pid") == prog && strstr(line, tag) &&
                   field(line, "preserved") == 1,
               "%s re-ran its initialisation on the preserved buffer: %s", tag,
               line ? line : "no init line");
        tap_ok(line && field(line, "bus_master_at_open") == 1,
               "%s: bus mastering was still on when it opened the device (no "
               "reset)",
               tag);
        tap_ok(line && field(line, "count_reg") == field(line, "last_count") &&
                   field(line, "count_reg") > 0,
               "%s: edu DMA count register kept the previous binary's value "
               "(%ld)",
               tag, field(line, "count_reg"));
        g_free(line);
        serving = wait_line(&off, "serving pid=", 60);
        /* a "pending" line comes between init and serving, if any */
        {
            g_autofree char *text = read_out();
            g_autofree char *seg = NULL;

            pend = NULL;
            if (serving) {
                char *s = strstr(text, serving);
                const char *init = s ? g_strrstr_len(text, s - text, "init pid=") : NULL;

                if (init)
                    seg = g_strndup(init, (size_t)(s - init));
            }
            pend = seg ? strstr(seg, "pending seq=") : NULL;
            if (pend) {
                pending_seen++;
                tap_ok(field(pend - 1, "landed") == 1 && field(pend - 1, "irq") >= 1,
                       "%s: the DMA in flight at the exec landed in the "
                       "preserved buffer and its MSI is in the eventfd: %.60s",
                       tag, pend);
            } else {
                tap_ok(true, "%s: no DMA was in flight at the exec", tag);
            }
        }
        tap_ok(serving != NULL, "%s serving", tag);
        g_usleep(300000);
    }
    tap_ok(pending_seen > 0,
           "%u of %d updates caught a DMA in flight (DMA and MSI during the "
           "blackout)",
           pending_seen, UPDATES);

    {
        g_autoptr(JsonParser) p = json_parser_new();
        g_autofree char *last = g_strdup_printf("tag=v%d", UPDATES);
        JsonObject *o = upgrade(p, cpr_exec, edu_raw, "bad", "--iova=200000",
                                &code);

        tap_ok(o && code == 3 &&
                   strcmp(str_member(o, "result"), "rolled-back") == 0,
               "a version with another DMA layout: exit %d, result \"%s\"", code,
               str_member(o, "result"));
        tap_ok(strstr(error_desc(o), "DMA") != NULL,
               "rollback reason names the DMA mapping: %s", error_desc(o));
        tap_ok(int_member(o, "pid") == prog && int_member(o, "generation") == UPDATES,
               "same pid, generation still %d", UPDATES);
        line = wait_line(&off, "init pid=", 60);
        tap_ok(line && strstr(line, last) && field(line, "preserved") == 1 &&
                   field(line, "bus_master_at_open") == 1,
               "the old version took the device back: %s", line ? line : "none");
        g_free(line);
        line = wait_line(&off, "serving pid=", 60);
        tap_ok(line && strstr(line, last) && field(line, "pid") == prog,
               "the old version serves again: %s", line ? line : "none");
        g_free(line);
        g_usleep(500000);
        {
            g_autofree char *text = read_out();

            tap_ok(!strstr(text, "error pid="), "no driver errors");
            /* it was rolled back inside its VFIO_IOMMU_MAP_DMA */
            tap_ok(!strstr(text, "tag=bad"),
                   "the refused version never got past its DMA mapping");
        }
    }

    /* The program dies (SIGKILL): the keeper starts it again under the
     * shim with the fds it kept, and the shim answers its re-opens with
     * them, as after an update: no reset, the device's state kept. */
    {
        g_autofree char *last = g_strdup_printf("tag=v%d", UPDATES);
        pid_t again = -1;

        kill(prog, SIGKILL);
        line = wait_line(&off, "init pid=", 60);
        if (line)
            again = (pid_t)field(line, "pid");
        tap_ok(line && again > 0 && again != prog && strstr(line, last) &&
                   field(line, "preserved") == 1 &&
                   field(line, "bus_master_at_open") == 1 &&
                   field(line, "count_reg") == field(line, "last_count") &&
                   field(line, "count_reg") > 0,
               "after SIGKILL of pid %d the keeper restarted it under the "
               "shim from the kept fds: no reset, the count register kept: "
               "%s", (int)prog, line ? line : "no init line");
        g_free(line);
        line = wait_line(&off, "serving pid=", 60);
        tap_ok(line && field(line, "pid") == again,
               "the restarted program serves: %s", line ? line : "none");
        g_free(line);
        g_usleep(500000);
    }

    kill(app, SIGTERM);
    status = -1;
    if (waitpid(app, &status, 0) != app)
        status = -1;
    tap_ok(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "edu-raw exits cleanly (status 0x%x)", status);
    line = wait_line(&off, "exit pid=", 10);
    tap_ok(line && field(line, "bad") == 0 && field(line, "ok") > 0,
           "DMA loop over all versions: %s", line ? line : "no exit line");
    tap_ok(line && field(line, "nic_bad") == 0 && field(line, "nic_ok") > 0,
           "e1000e interrupts on its sparse and grown MSI-X vectors over all "
           "versions: %s",
           line ? line : "no exit line");
    g_free(line);
    {
        g_autofree char *text = read_out();

        tap_diag("edu-raw output:\n%s", text);
    }
    unlink(cpr_exec);
    unlink(SHIM);
    tap_exit();
}

int main(int argc, char **argv)
{
    g_autofree char *name = g_path_get_basename(argv[0]);

    if (strcmp(name, "cpr-exec") == 0)
        return cpr_exec_main(argc, argv);
    if (argc == 3 && strcmp(argv[1], "driver") == 0)
        return driver_main(argv[2]);
    fprintf(stderr, "usage: %s driver EDU_RAW\n", argv[0]);
    return 2;
}
