/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VM test of the operator path with real VFIO: a program driving the edu
 * device through libcprkit's hooks runs under `cpr-exec run`, and the
 * example script shim/examples/cprkit-upgrade upgrades it — committed,
 * then a broken version rolled back, then committed again — while the
 * device keeps its DMA mapping and MSI. The JSON results and
 * `cpr-exec status` are checked.
 *
 * One binary, three roles (the VM harness copies test programs and their
 * libraries into the guest, not other files):
 *   ops-vm driver          the TAP test (run by run-vm)
 *   ops-vm app [--mode veto]   the VFIO program
 *   .../cpr-exec ...       the cpr-exec command (shim/ compiled in), when
 *                          invoked through a symlink named cpr-exec
 * The script is embedded at build time (ops-script.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/vfio.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include <cprkit/cprkit-control.h>
#include <cprkit/cprkit-vfio.h>

#include "edu.h"
#include "ops-script.h"
#include "ops-util.h"
#include "tap.h"
#include "vfio-util.h"

int cpr_exec_main(int argc, char **argv);

#define RAM_SIZE (1u << 20)
#define IOVA 0x100000u
#define XFER 1024u
#define PROT (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)
#define DIR "/tmp/cprkit-ops"

/* ---- the VFIO program ------------------------------------------------------ */

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    stop = 1;
}

static void app_log(void *userdata, int priority, const char *msg)
{
    if (priority <= 6)
        fprintf(stderr, "ops-app[%d]: %s\n", (int)getpid(), msg);
}

/* RAM -> device -> RAM with an MSI at the end: the device works and its
 * DMA mapping points at this process's memory. */
static bool dma_round_trip(const struct vfio_bar *bar, uint8_t *mem, int evfd,
                           uint8_t seed)
{
    uint64_t count = 0;

    for (unsigned i = 0; i < XFER; i++)
        mem[i] = (uint8_t)(seed + i);
    memset(mem + 0x1000, 0, XFER);
    if (edu_dma_to_device(bar, IOVA, 0, XFER) < 0 ||
        edu_dma_start(bar, EDU_BUF_ADDR, IOVA + 0x1000, XFER,
                      EDU_DMA_TO_RAM | EDU_DMA_RAISE_IRQ) < 0 ||
        edu_dma_wait(bar, EVENT_TIMEOUT_MS) < 0 ||
        eventfd_count_until(evfd, 1, EVENT_TIMEOUT_MS, &count) < 0)
        return false;
    bar_write32(bar, EDU_REG_IRQ_ACK, EDU_DMA_IRQ_VALUE);
    return memcmp(mem, mem + 0x1000, XFER) == 0;
}

static int upgrade_fn(void *userdata, cprkit_ctx *ctx, const char *binary,
                      char *const argv[])
{
    return cprkit_exec(ctx, binary, argv, NULL);
}

static int app_main(int argc, char **argv)
{
    bool veto = argc >= 3 && strcmp(argv[1], "--mode") == 0 &&
                strcmp(argv[2], "veto") == 0;
    cprkit_control *control;
    struct vfio_bar bar;
    cprkit_ctx *ctx;
    bool reclaimed;
    char bdf[16];
    uint8_t *mem;
    int container, group, device, ram, evfd;

    signal(SIGTERM, on_term);
    if (cprkit_new(&ctx) < 0)
        return 1;
    cprkit_set_log_fn(ctx, app_log, NULL);
    if (cprkit_load_incoming(ctx) < 0) {
        cprkit_rollback(ctx, cprkit_last_error(ctx));
        return 1;
    }
    if (pci_find(0x1234, 0x11e8, bdf) < 0)
        return 1;
    container = cprkit_vfio_container_open(ctx, 0, NULL);
    group = cprkit_vfio_group_open(ctx, container,
                                   (unsigned)pci_iommu_group(bdf), NULL);
    device = cprkit_vfio_device_open(ctx, group, bdf, &reclaimed);
    ram = cprkit_ram_open(ctx, "ops", RAM_SIZE, NULL);
    if (container < 0 || group < 0 || device < 0 || ram < 0 ||
        vfio_bar_open(device, 0, &bar) < 0)
        goto fail;
    mem = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram, 0);
    if (mem == MAP_FAILED ||
        cprkit_vfio_dma_map(ctx, container, IOVA, RAM_SIZE, mem, PROT) < 0 ||
        cprkit_vfio_irq_enable(ctx, device, VFIO_PCI_MSI_IRQ_INDEX, 1, &evfd) <
            0)
        goto fail;
    if (!reclaimed && pci_enable_bus_master(device) < 0)
        goto fail;
    if (cprkit_control_listen(ctx, NULL, &control) < 0)
        goto fail;
    cprkit_control_set_upgrade_fn(control, upgrade_fn, NULL);

    if (cprkit_is_incoming(ctx)) {
        if (veto && !cprkit_is_rollback(ctx)) {
            cprkit_rollback(ctx, "health check failed (ops veto)");
            goto fail;
        }
        if (!dma_round_trip(&bar, mem, evfd, 0x5a)) {
            cprkit_rollback(ctx, "DMA check after restore failed");
            goto fail;
        }
        if (cprkit_commit(ctx) < 0) {
            cprkit_rollback(ctx, cprkit_last_error(ctx));
            goto fail;
        }
    } else if (!dma_round_trip(&bar, mem, evfd, 0x11)) {
        fprintf(stderr, "ops-app: DMA check failed\n");
        return 1;
    }
    cprkit_control_mark_serving(control);
    fprintf(stderr, "ops-app[%d]: serving %s, generation %llu\n",
            (int)getpid(), bdf, (unsigned long long)cprkit_generation(ctx));

    while (!stop) {
        struct pollfd p = {.fd = cprkit_control_fd(control), .events = POLLIN};

        poll(&p, 1, 500);
        cprkit_control_dispatch(control);
    }
    cprkit_control_free(control);
    return 0;

fail:
    fprintf(stderr, "ops-app: %s\n", cprkit_last_error(ctx));
    return 1;
}

/* ---- the test ---------------------------------------------------------------- */

static char *self_path(void)
{
    return g_file_read_link("/proc/self/exe", NULL);
}

static void script_upgrade(const char *self, const char *const *extra,
                           int expect_code, const char *expect_result,
                           gint64 expect_generation)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(JsonParser) p = json_parser_new();
    JsonObject *o;
    int code;

    g_ptr_array_add(argv, "sh");
    g_ptr_array_add(argv, DIR "/cprkit-upgrade");
    g_ptr_array_add(argv, "-s");
    g_ptr_array_add(argv, DIR "/ctl.sock");
    g_ptr_array_add(argv, "-o");
    g_ptr_array_add(argv, DIR "/result.json");
    g_ptr_array_add(argv, (char *)self);
    for (const char *const *e = extra; *e; e++)
        g_ptr_array_add(argv, (char *)*e);
    g_ptr_array_add(argv, NULL);
    unlink(DIR "/result.json");
    code = ops_run(DIR, (const char *const *)argv->pdata, NULL);
    tap_ok(code == expect_code, "example script exits %d (%s)", code,
           expect_result);
    o = ops_parse_json(p, NULL, DIR "/result.json");
    if (!tap_ok(o != NULL, "result JSON written"))
        return;
    tap_ok(g_strcmp0(json_object_get_string_member_with_default(o, "result",
                                                                ""),
                     expect_result) == 0,
           "result is \"%s\"",
           json_object_get_string_member_with_default(o, "result", "?"));
    tap_ok(json_object_get_int_member_with_default(o, "generation", -1) ==
               expect_generation,
           "generation %" G_GINT64_FORMAT ", blackout %" G_GINT64_FORMAT " us",
           json_object_get_int_member_with_default(o, "generation", -1),
           json_object_get_int_member_with_default(o, "blackout_us", -1));
    if (strcmp(expect_result, "rolled-back") == 0)
        tap_ok(strstr(ops_json_error(o), "ops veto") != NULL,
               "rollback reason reported: %s", ops_json_error(o));
}

static int driver_main(void)
{
    g_autofree char *self = self_path();
    g_autofree char *out = NULL;
    g_autoptr(JsonParser) p = json_parser_new();
    const char *const status_argv[] = {DIR "/cpr-exec", "status", "--json",
                                       "--socket", DIR "/ctl.sock", NULL};
    JsonObject *o;
    pid_t app, prog;
    int status;

    tap_plan(18);
    mkdir(DIR, 0700);
    unlink(DIR "/cpr-exec");
    TAP_CHECK(symlink(self, DIR "/cpr-exec") == 0 ? 0 : -errno);
    TAP_CHECK(g_file_set_contents(DIR "/cprkit-upgrade", (const char *)ops_script,
                                  (gssize)ops_script_len, NULL)
                  ? 0
                  : -EIO);

    app = fork();
    TAP_CHECK(app < 0 ? -errno : 0);
    if (app == 0) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

        dup2(null, STDOUT_FILENO); /* run prints the socket path */
        execl(DIR "/cpr-exec", "cpr-exec", "run", "--socket",
              DIR "/ctl.sock", "--", self, "app", (char *)NULL);
        _exit(127);
    }
    tap_ok(ops_wait_for_socket(DIR "/ctl.sock", 0, 20),
           "edu program runs under cpr-exec run, socket accepts");
    /* cpr-exec run stays as the keeper; the program is its child. */
    prog = ops_status_pid(DIR, DIR "/ctl.sock");
    tap_diag("keeper pid %d, program pid %d", (int)app, (int)prog);

    script_upgrade(self, (const char *const[]){"app", NULL}, 0, "committed", 1);
    script_upgrade(self, (const char *const[]){"app", "--mode", "veto", NULL},
                   3, "rolled-back", 1);
    script_upgrade(self, (const char *const[]){"app", NULL}, 0, "committed", 2);

    tap_ok(ops_run(DIR, status_argv, &out) == 0, "cpr-exec status");
    o = out && json_parser_load_from_data(p, out, -1, NULL)
            ? json_node_get_object(json_parser_get_root(p))
            : NULL;
    tap_ok(o && prog > 0 && prog != app &&
               json_object_get_int_member_with_default(o, "pid", 0) == prog,
           "same pid %d (the keeper's child, keeper %d) after three updates",
           (int)prog, (int)app);
    if (o) {
        JsonObject *v = json_object_get_object_member(o, "vfio");

        tap_ok(json_object_get_int_member_with_default(v, "dma_mappings", 0) ==
                       1 &&
                   json_array_get_length(
                       json_object_get_array_member(v, "devices")) == 1,
               "status: 1 device, 1 DMA mapping");
    } else {
        tap_ok(false, "status: 1 device, 1 DMA mapping");
    }

    kill(app, SIGTERM);
    tap_ok(waitpid(app, &status, 0) == app && WIFEXITED(status) &&
               WEXITSTATUS(status) == 0,
           "the program exits cleanly");
    unlink(DIR "/cpr-exec");
    unlink(DIR "/cprkit-upgrade");
    unlink(DIR "/result.json");
    tap_exit();
}

int main(int argc, char **argv)
{
    g_autofree char *name = g_path_get_basename(argv[0]);

    if (strcmp(name, "cpr-exec") == 0)
        return cpr_exec_main(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "app") == 0)
        return app_main(argc - 1, argv + 1);
    return driver_main();
}
