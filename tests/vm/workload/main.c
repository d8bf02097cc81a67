/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprkit-workload: drive devices through VFIO and live-update while busy.
 *
 *   cprkit-workload [--tap] [--updates N] [--rounds N] [--containers 1|2]
 *                   [--backend type1|iommufd] [--inject FAULT[,FAULT...]]
 *                   [--interposer-dir DIR] [--v2-binary PATH] DEVICE...
 *   cprkit-workload --control [--rounds N] [--containers 1|2]
 *                   [--backend type1|iommufd] DEVICE...
 *
 * --control is the operator mode (control.c): started under
 * `cpr-exec run`, it serves its devices until SIGTERM/SIGINT and is
 * upgraded with `cpr-exec upgrade` (docs/operations.md, "Walk-through").
 *
 * DEVICE: edu-msi, edu-intx, nvme, e1000e (each at most once). Devices go
 * round-robin into the containers: VFIO type1 containers, or with
 * --backend iommufd one iommufd with one IOAS per "container" and the
 * devices' cdevs (kernel with CONFIG_IOMMUFD, e.g. 7.3-iommufd). Internal options, set by the workload
 * for its next image: --remaining N (forward updates still to do, counting
 * down) and --fault FAULT (this image plays a faulty new binary).
 *
 * Exit status 0 when every check passed.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "workload.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: cprkit-workload [--tap] [--updates N] [--rounds N] "
            "[--containers 1|2] [--backend type1|iommufd] "
            "[--inject FAULT,...] [--interposer-dir DIR] "
            "[--v2-binary PATH] edu-msi|edu-intx|nvme|e1000e...\n"
            "       cprkit-workload --control [--rounds N] [--containers 1|2] "
            "[--backend type1|iommufd] edu-msi|edu-intx|nvme|e1000e...\n");
    exit(2);
}

static unsigned parse_uint(const char *s, unsigned max)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v > max)
        usage();
    return (unsigned)v;
}

static void parse_faults(struct workload *w, const char *list)
{
    char *copy = strdup(list), *save = NULL;

    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (w->nfaults == WL_MAX_FAULTS || fault_parse(tok, &w->faults[w->nfaults]) < 0) {
            fprintf(stderr, "cprkit-workload: bad fault '%s'\n", tok);
            usage();
        }
        w->nfaults++;
    }
    free(copy);
}

static const struct engine_ops *engine_kind(const char *name)
{
    static const struct engine_ops *const all[] = {
        &edu_msi_ops, &edu_intx_ops, &nvme_ops, &e1000e_ops,
    };

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (!strcmp(all[i]->kind, name))
            return all[i];
    return NULL;
}

static void parse_options(struct workload *w, int argc, char **argv)
{
    enum { O_UPDATES = 256, O_ROUNDS, O_CONTAINERS, O_INJECT, O_INTERPOSER,
           O_V2, O_REMAINING, O_FAULT, O_TAP, O_CONTROL, O_CRASH,
           O_BACKEND };
    static const struct option opts[] = {
        { "tap", no_argument, NULL, O_TAP },
        { "updates", required_argument, NULL, O_UPDATES },
        { "rounds", required_argument, NULL, O_ROUNDS },
        { "containers", required_argument, NULL, O_CONTAINERS },
        { "backend", required_argument, NULL, O_BACKEND },
        { "inject", required_argument, NULL, O_INJECT },
        { "interposer-dir", required_argument, NULL, O_INTERPOSER },
        { "v2-binary", required_argument, NULL, O_V2 },
        { "remaining", required_argument, NULL, O_REMAINING },
        { "fault", required_argument, NULL, O_FAULT },
        { "control", no_argument, NULL, O_CONTROL },
        { "crash-at-start", no_argument, NULL, O_CRASH },
        {}
    };
    bool have_remaining = false;
    int c;

    w->updates = 3;
    w->rounds = 1;
    w->ncontainers = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_TAP: w->tap = true; break;
        case O_CONTROL: w->control = true; break;
        case O_CRASH: raise(SIGKILL); break; /* WL_CRASH_AT_START */
        case O_UPDATES: w->updates = parse_uint(optarg, 1000); break;
        case O_ROUNDS: w->rounds = parse_uint(optarg, 1000); break;
        case O_CONTAINERS:
            w->ncontainers = parse_uint(optarg, WL_MAX_CONTAINERS);
            if (!w->ncontainers)
                usage();
            break;
        case O_BACKEND:
            if (!strcmp(optarg, "type1"))
                w->backend = WL_TYPE1;
            else if (!strcmp(optarg, "iommufd"))
                w->backend = WL_IOMMUFD;
            else
                usage();
            break;
        case O_INJECT: parse_faults(w, optarg); break;
        case O_INTERPOSER: w->interposer_dir = optarg; break;
        case O_V2: w->v2_binary = optarg; break;
        case O_REMAINING:
            w->remaining = parse_uint(optarg, 1000);
            have_remaining = true;
            break;
        case O_FAULT:
            if (fault_parse(optarg, &w->acting_fault) < 0)
                usage();
            break;
        default: usage();
        }
    }
    if (!have_remaining)
        w->remaining = w->updates;
    if (optind >= argc || argc - optind > WL_MAX_ENGINES)
        usage();
    for (int i = optind; i < argc; i++) {
        struct engine *e = &w->engines[w->nengines];

        e->ops = engine_kind(argv[i]);
        if (!e->ops)
            usage();
        for (unsigned j = 0; j < w->nengines; j++)
            if (w->engines[j].ops == e->ops)
                usage();
        snprintf(e->name, sizeof(e->name), "%s", e->ops->kind);
        e->index = (int)w->nengines;
        e->container_index = (int)(w->nengines % w->ncontainers);
        e->container = e->group = e->device = -1;
        w->dev_args[w->nengines] = argv[i];
        w->nengines++;
    }
    if (w->ncontainers > w->nengines)
        usage();
    /* The vaddr faults act on type1's UNMAP_DMA|VADDR: iommufd has none. */
    for (unsigned i = 0; i < w->nfaults; i++)
        if (w->backend == WL_IOMMUFD &&
            (w->faults[i] == FAULT_NO_UPDATE_VADDR ||
             w->faults[i] == FAULT_SUSPEND_FAILS ||
             w->faults[i] == FAULT_SUSPEND_PARTIAL))
            fatal("--inject=%s acts on VFIO type1 vaddrs; iommufd has none",
                  fault_name(w->faults[i]));
    /* Operator mode: updates come from the control socket, not a count,
     * and faults only from the operator (--fail-health-check). */
    if (w->control && (w->nfaults || (w->acting_fault != FAULT_NONE &&
                                      w->acting_fault != FAULT_VETO)))
        usage();
}

/*
 * Faults that need fault-ioctl.so in the old binary: preload it by
 * re-exec'ing ourselves before anything is opened. LD_PRELOAD then stays
 * in this image's environment only: update.c drops it for the next one.
 */
static void preload_interposer(struct workload *w, char **argv)
{
    const char *cur = getenv("LD_PRELOAD");
    bool needed = false;
    char path[4096];

    for (unsigned i = 0; i < w->nfaults; i++)
        needed |= w->faults[i] == FAULT_NO_UPDATE_VADDR ||
                  w->faults[i] == FAULT_SUSPEND_FAILS ||
                  w->faults[i] == FAULT_SUSPEND_PARTIAL;
    if (!needed || getenv(CPRKIT_STATE_FD_ENV) || (cur && strstr(cur, "fault-ioctl")))
        return;
    if (!w->interposer_dir)
        fatal("--inject needs --interposer-dir for fault-ioctl.so");
    snprintf(path, sizeof(path), "%s/fault-ioctl.so", w->interposer_dir);
    if (access(path, R_OK) < 0)
        fatal("%s: %s", path, strerror(errno));
    setenv("LD_PRELOAD", path, 1);
    execv("/proc/self/exe", argv);
    fatal("re-exec with %s preloaded: %s", path, strerror(errno));
}

/*
 * iommufd charges nothing to a process with CAP_IPC_LOCK but still counts
 * its pages in VmPin, which CHANGE_PROCESS then does not move
 * (docs/kernel-facts.md): run without it, in this image and the ones it
 * execs, so VmPin is accounted and must cross every update exactly. The
 * pinned memory is then checked against RLIMIT_MEMLOCK: lift it.
 */
static void drop_pinning_privilege(void)
{
    struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
    int r;

    if (setrlimit(RLIMIT_MEMLOCK, &unlimited) < 0)
        fatal("setrlimit(RLIMIT_MEMLOCK): %s", strerror(errno));
    r = cap_ipc_lock_drop(true);
    if (r < 0)
        fatal("dropping CAP_IPC_LOCK: %s", strerror(-r));
}

static void log_to_stderr(void *userdata, int priority, const char *msg)
{
    fprintf(stderr, "cprkit[%d]: %s\n", priority, msg);
}

static void load_workload_state(struct workload *w, struct wl_state *st)
{
    const void *data;
    size_t size;

    if (cprkit_section_get(w->ctx, "workload", &data, &size) < 0 ||
        size != sizeof(*st))
        fatal("incoming state has no valid 'workload' section");
    memcpy(st, data, sizeof(*st));
    if (st->version != WL_STATE_VERSION)
        fatal("'workload' section version %u, expected %u", st->version,
              WL_STATE_VERSION);
}

static void open_engines(struct workload *w)
{
    int r;

    r = wl_open_containers(w);
    if (!check(r == 0, "%s %u %s", w->incoming ? "reclaimed" : "opened",
               w->ncontainers,
               w->backend == WL_IOMMUFD ? "iommufd(s) with an IOAS each"
                                        : "VFIO container(s)"))
        fatal("containers: %s (%s)", strerror(-r), cprkit_last_error(w->ctx));
    for (unsigned i = 0; i < w->nengines; i++) {
        struct engine *e = &w->engines[i];

        r = e->ops->open(w, e);
        if (!check(r == 0, "%s: %s %s (group %d, container %d)", e->name,
                   w->incoming ? "reclaimed" : "opened", e->bdf, e->group_nr,
                   e->container_index))
            fatal("%s: %s (%s)", e->name, strerror(-r),
                  cprkit_last_error(w->ctx));
    }
}

int main(int argc, char **argv)
{
    struct workload w = { .containers = { -1, -1 } };
    struct utsname uts;
    int r;

    w.main_started_ns = mono_ns();
    w.argc = argc;
    w.argv = argv;
    setvbuf(stdout, NULL, _IOLBF, 0);
    parse_options(&w, argc, argv);
    report_init(w.tap);
    preload_interposer(&w, argv);
    /* The library learns VFIO_UNMAP_ALL when it opens a container: hide it
     * from the start for the per-mapping suspend test. */
    for (unsigned i = 0; i < w.nfaults; i++)
        if (w.faults[i] == FAULT_SUSPEND_PARTIAL && !getenv(CPRKIT_STATE_FD_ENV))
            w.fault_env_base = "no-unmap-all";
    if (w.fault_env_base)
        setenv(WL_FAULT_ENV, w.fault_env_base, 1);
    report_import();
    w.self = "/proc/self/exe";
    if (w.backend == WL_IOMMUFD)
        drop_pinning_privilege();

    if (cprkit_new(&w.ctx) < 0)
        fatal("cprkit_new: out of memory");
    cprkit_set_log_fn(w.ctx, log_to_stderr, NULL);
    cprkit_set_log_priority(w.ctx, LOG_NOTICE);

    if (w.acting_fault == FAULT_SWAPPED_DEVICES ||
        w.acting_fault == FAULT_SWAPPED_EVENTFDS)
        inject_swap_fds(&w);
    r = cprkit_load_incoming(w.ctx);
    if (w.acting_fault == FAULT_CORRUPT_BLOB ||
        w.acting_fault == FAULT_SWAPPED_DEVICES ||
        w.acting_fault == FAULT_SWAPPED_EVENTFDS)
        inject_play_new_side(&w, r);
    if (r < 0) {
        check(false, "load the state of the previous binary: %s",
              cprkit_last_error(w.ctx));
        wl_rollback(&w, cprkit_last_error(w.ctx));
    }
    w.incoming = r == 1;
    /* The keeper restarted us after the previous process died outside an
     * update (a failed update's restart is a rollback instead). */
    w.restart = w.incoming && cprkit_is_restart(w.ctx) &&
                !cprkit_is_rollback(w.ctx);
    w.generation = cprkit_generation(w.ctx);
    {
        void *mem;

        r = wl_ram(&w, "workload-state", 4096, &mem);
        if (r < 0)
            fatal("RAM block workload-state: %s (%s)", strerror(-r),
                  cprkit_last_error(w.ctx));
        w.live = mem;
        if (!w.incoming)
            w.live->version = WL_LIVE_VERSION;
        else if (w.live->version != WL_LIVE_VERSION)
            fatal("RAM block workload-state: version %u, expected %u",
                  w.live->version, WL_LIVE_VERSION);
        report_attach(&w.live->failed, w.incoming);
    }
    if (w.restart)
        note("crash restart by the keeper (%s): generation %llu, state "
             "from the live RAM blocks", cprkit_restart_reason(w.ctx),
             (unsigned long long)w.generation);

    if (w.incoming) {
        load_workload_state(&w, &w.st);
        w.nonce = w.st.nonce;
    } else {
        uname(&uts);
        w.nonce = (uint32_t)(mono_ns() ^ (uint64_t)getpid() << 16);
        w.st.version = WL_STATE_VERSION;
        w.st.nonce = w.nonce;
        char devs[128] = "";

        for (unsigned i = 0; i < w.nengines; i++)
            snprintf(devs + strlen(devs), sizeof(devs) - strlen(devs), "%s%s",
                     i ? " + " : "", w.dev_args[i]);
        if (w.control)
            note("cprkit workload: %s, operator mode (cpr-exec), %u "
                 "container(s), kernel %s%s", devs, w.ncontainers,
                 uts.release, w.backend == WL_IOMMUFD ? ", iommufd" : "");
        else
            note("cprkit workload: %s, %u live update(s), %u container(s), "
                 "kernel %s%s", devs, w.updates, w.ncontainers, uts.release,
                 w.backend == WL_IOMMUFD ? ", iommufd" : "");
    }

    open_engines(&w);
    if (w.control) {
        if (!wl_control_run)
            fatal("--control: this build has no control endpoint (it is "
                  "built without control.c and libcprkit-control)");
        wl_control_run(&w); /* serves until stopped; never returns */
    }
    if (w.restart) {
        restart_incoming(&w);
    } else if (w.incoming) {
        update_incoming(&w); /* commits, or rolls back a faulty image */
    } else {
        for (unsigned i = 0; i < w.nengines; i++)
            w.engines[i].ops->serve(&w, &w.engines[i], w.rounds);
        note("generation 0 serving: %u device(s) with DMA and interrupts",
             w.nengines);
    }

    /* Injected failures first, then the real updates. */
    while (w.st.next_fault < w.nfaults) {
        enum fault f = w.faults[w.st.next_fault++];

        if (fault_is_new_side(f)) {
            update_once(&w, f); /* execs; the rollback lands in main() */
            fatal("update with %s returned", fault_name(f));
        }
        inject_old_side(&w, f);
    }
    while (w.remaining > 0)
        update_once(&w, FAULT_NONE);

    /* The last image shows it still serves. Exiting closes the device fds:
     * vfio-pci resets what it can, as after any driver. */
    for (unsigned i = 0; i < w.nengines; i++)
        w.engines[i].ops->serve(&w, &w.engines[i], 1);
    check(cprkit_generation(w.ctx) == w.updates,
          "generation %llu after %u update(s)",
          (unsigned long long)cprkit_generation(w.ctx), w.updates);
    cprkit_free(w.ctx);
    report_finish();
}
