/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprkit reference workload: a userspace driver for edu, nvme and e1000e
 * that keeps DMA and interrupts in flight while it live-updates itself with
 * libcprkit. See docs/testing.md, "The reference workload".
 *
 * Shape: one engine per device (edu-engine.c, nvme-engine.c,
 * e1000e-engine.c) behind struct engine_ops; the update cycle that drives
 * them lives in update.c, the failure injections in inject.c, the check and
 * report output in report.c.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cprkit/cprkit.h>
#include <cprkit/cprkit-iommufd.h>
#include <cprkit/cprkit-vfio.h>

#include "vfio-util.h"

#define WL_MAX_ENGINES 4
#define WL_MAX_CONTAINERS 2
#define WL_MAX_FAULTS 12

/* Environment variables the workload passes to its next image. */
#define WL_TAP_ENV "CPRKIT_WORKLOAD_TAP"     /* "count failed" */
#define WL_FAULT_ENV "CPRKIT_FAULT"          /* read by fault-ioctl.so */

/* Failure injections (--inject); see inject.c for what each one does. */
enum fault {
    FAULT_NONE = 0,
    /* old side: cprkit_exec() fails and the old binary keeps serving */
    FAULT_ANON_DMA,          /* blocker: DMA mapping of anonymous memory */
    FAULT_NO_UPDATE_VADDR,   /* blocker: container lacks VFIO_UPDATE_VADDR */
    FAULT_SUSPEND_FAILS,     /* first UNMAP_DMA|VADDR fails */
    FAULT_SUSPEND_PARTIAL,   /* no UNMAP_ALL, second UNMAP_DMA|VADDR fails */
    FAULT_EXEC_MISSING,      /* new binary does not exist */
    FAULT_EXEC_GARBAGE,      /* passes the blockers, execve fails */
    FAULT_EXEC_NOT_CPRKIT,   /* blocker: new binary is /bin/true */
    FAULT_EXEC_SCRIPT,       /* blocker: new binary is a script */
    FAULT_V2_BINARY,         /* blocker: new binary reads format 2 only */
    /* new side: the new binary rolls back to the old one */
    FAULT_CORRUPT_BLOB,      /* a bit of the blob flips on its way in */
    FAULT_UNCLAIMED_EVENTFD, /* new binary forgets an interrupt eventfd */
    FAULT_UNCLAIMED_DEVICE,  /* new binary forgets a whole device */
    FAULT_SWAPPED_DEVICES,   /* two preserved device fds swapped by number */
    FAULT_SWAPPED_EVENTFDS,  /* two preserved interrupt eventfds swapped */
    FAULT_VETO,              /* new binary's health check fails */
    /* new side, operator mode only: the new binary dies or hangs and the
     * keeper of `cpr-exec run` starts the old one again (a rollback that
     * is also a restart). Acted by tests/vm/interposer/act-wrap.c, told by
     * WL_ACT_ENV; never in --inject/--fault. */
    FAULT_CRASH_AFTER_LOAD,  /* SIGSEGV right after loading the state */
    FAULT_ABORT_MID_REMAP,   /* abort() after remapping half the DMA maps */
    FAULT_HANG,              /* hangs before commit, past the deadline */
    FAULT_EXIT_EARLY,        /* exit(1) before loading the state */
};

const char *fault_name(enum fault f);
int fault_parse(const char *s, enum fault *ret);
bool fault_is_new_side(enum fault f);

struct workload;
struct engine;

/* Time and traffic an engine saw while its driver was away. */
struct blackout {
    uint64_t first_service_ns; /* CLOCK_MONOTONIC of the first DMA/IRQ */
    uint64_t irqs;             /* interrupts that waited in eventfds */
    uint64_t dma_bytes;        /* bytes DMA'd while no driver ran */
    unsigned completions;      /* commands completed while away */
};

struct engine_ops {
    const char *kind;
    /* Find-or-create device, memory, DMA mappings and interrupts; on a
     * fresh start also initialise the device. */
    int (*open)(struct workload *w, struct engine *e);
    /* Reclaim path, before commit: the device was not reset and kept its
     * state. Non-destructive (consumes no interrupt or completion), so a
     * rollback finds everything as it was. */
    void (*check_untouched)(struct workload *w, struct engine *e);
    /* Normal service: @rounds units of verified DMA + interrupts. */
    void (*serve)(struct workload *w, struct engine *e, unsigned rounds);
    /* Right before an update: start work that completes while the driver is
     * away, and write register values the next image checks. */
    void (*start_inflight)(struct workload *w, struct engine *e);
    /* After the update (or a failed attempt): service what completed while
     * away, verify it, account every interrupt and completion. */
    void (*finish_inflight)(struct workload *w, struct engine *e,
                            struct blackout *ret);
    /* The engine's state as an application section. */
    int (*save)(struct workload *w, struct engine *e);
    /* Crash restart (the keeper restarted us after a SIGKILL, say): the
     * state is the engine's live "<name>-state" RAM block, current to the
     * instruction the dead image stopped at; the device was not reset.
     * Reconcile that state with the device, service what completed while
     * no driver ran, verify the data, account the interrupts. NULL: the
     * engine does not support crash restarts. */
    void (*recover)(struct workload *w, struct engine *e,
                    struct blackout *ret);
};

struct engine {
    const struct engine_ops *ops;
    char name[16];          /* "edu-msi", "nvme", ...: unique per run */
    int index;
    int container_index;
    uint16_t vendor, device_id;
    char bdf[16];
    int group_nr;
    int container;          /* fds; container: the iommufd with iommufd */
    int group;
    int device;
    bool reclaimed;
    struct vfio_bar bar;
    struct {                /* its DMA mappings, for the fault checks */
        uint64_t iova, size;
        void *vaddr;
    } maps[2];
    unsigned nmaps;
    void *priv;             /* engine-specific state */
};

/* Application section "workload": what crosses an update besides the
 * engines' own sections. Plain old data, versioned by its own field. */
#define WL_STATE_VERSION 1
struct wl_state {
    uint32_t version;
    uint32_t nonce;
    uint32_t next_fault;    /* index into faults[] of the next injection */
    uint32_t attempt_fault; /* enum fault of the attempt in progress */
    uint32_t updates_done;
    uint32_t fd_count;      /* measured right before the exec */
    uint64_t vmlck_kb;
    uint64_t exec_started_ns; /* our own clock, in case "suspend" is 0 */
};

/* RAM block "workload-state": what a crash restart compares with, written
 * by the serving image (the sections are as of the last keeper sync). */
#define WL_LIVE_VERSION 1
struct wl_live {
    uint32_t version;
    uint32_t fd_count;      /* of the serving process */
    uint64_t vmlck_kb;
    uint64_t restarts;      /* crash restarts recovered so far */
    uint32_t failed;        /* failed checks, every image (report.c) */
    uint32_t pad;
};

/* The DMA backend (--backend): a VFIO type1 container per "container", or
 * an iommufd with one IOAS per "container" and the devices' cdevs. */
enum wl_backend { WL_TYPE1 = 0, WL_IOMMUFD };

struct workload {
    cprkit_ctx *ctx;
    const char *self;       /* our binary (rollback target and update) */
    /* options */
    bool tap;
    unsigned updates;       /* total forward updates asked for */
    unsigned remaining;     /* forward updates still to do (argv) */
    unsigned rounds;        /* service rounds between updates */
    unsigned ncontainers;
    enum wl_backend backend;
    enum fault faults[WL_MAX_FAULTS];
    unsigned nfaults;
    enum fault acting_fault; /* --fault: this image plays a faulty binary */
    bool control;           /* --control: operator mode (control.c) */
    /* Called by update_incoming() once the work of the blackout is
     * serviced and checked, before fresh work: control.c tells the
     * control endpoint it serves (the end of the blackout it reports). */
    void (*on_serving)(struct workload *w);
    void *control_endpoint;
    const char *interposer_dir;
    const char *v2_binary;
    const char *fault_env_base; /* CPRKIT_FAULT between injections */
    char *dev_args[WL_MAX_ENGINES];
    int argc;               /* our own command line, as given */
    char **argv;
    /* runtime */
    int containers[WL_MAX_CONTAINERS]; /* or iommufds */
    uint32_t ioas[WL_MAX_CONTAINERS];  /* iommufd: the IOAS of each */
    struct {                /* RAM blocks: what backs a DMA map (iommufd) */
        void *addr;
        uint64_t size;
        int fd;
    } ram[3 * WL_MAX_ENGINES + 1];
    unsigned nram;
    struct engine engines[WL_MAX_ENGINES];
    unsigned nengines;
    bool incoming;
    bool restart;           /* crash restart by the keeper, not an update */
    struct wl_live *live;   /* RAM block "workload-state" */
    uint64_t main_started_ns; /* this image reached main() */
    uint64_t generation;
    uint32_t nonce;         /* per run: patterns never match stale data */
    struct wl_state st;     /* section "workload" */
};


/* ---- report.c: checks and output (TAP or human) ---------------------- */
void report_init(bool tap);
/* Records a check; prints "ok"/"not ok" (TAP) or only failures (human). */
__attribute__((format(printf, 2, 3))) bool check(bool pass, const char *fmt,
                                                 ...);
/* Informational line: "# ..." in TAP, plain otherwise. */
__attribute__((format(printf, 1, 2))) void note(const char *fmt, ...);
/* Fatal: "Bail out!" (TAP) or an error line, exit 1. */
__attribute__((format(printf, 1, 2), __noreturn__)) void fatal(const char *fmt,
                                                          ...);
unsigned report_failures(void);
/* The counters cross exec in WL_TAP_ENV: export before any exec. */
void report_export(void);
void report_import(void);
/* Human mode: keep the failure count in @failed too (RAM block
 * "workload-state"), which an @incoming image continues from: after a
 * restart by the keeper, the environment that carries it across an update
 * is not there. */
void report_attach(uint32_t *failed, bool incoming);
__attribute__((__noreturn__)) void report_finish(void);

/* ---- procstat.c ------------------------------------------------------- */
int proc_fd_count(void);
/* The same without sockets: in control mode the number of control
 * connections open at any moment is the operator's business. */
int proc_fd_count_nosock(void);
/* VmLck of this process in kB, or < 0. */
long proc_vmlck_kb(void);
/* Memory pinned for DMA in kB (wl_pinned_name(): VmLck with type1, VmPin
 * with iommufd), or < 0. */
long wl_pinned_kb(const struct workload *w);
const char *wl_pinned_name(const struct workload *w);
uint64_t mono_ns(void);

/* ---- vfio-open.c: containers, groups, devices through cprkit -------- */
int wl_open_containers(struct workload *w);
/* Group and device; the device fd is -1 if wl_forgets_device(). */
int wl_open_device(struct workload *w, struct engine *e);
bool wl_forgets_device(const struct workload *w, const struct engine *e);
/* Non-destructive probe: 1 if the mapping at @iova has a valid vaddr (not
 * suspended), 0 if suspended, < 0 on error. */
int dma_vaddr_valid(int container, uint64_t iova, uint64_t size, void *vaddr);
/* cprkit_ram_open() plus a shared mapping of it. */
int wl_ram(struct workload *w, const char *name, uint64_t size, void **ret);
/* An engine's live state: RAM block "<engine>-state" (one page), zeroed
 * and stamped @version on a fresh start, the incoming section copied in
 * on an update, left as the dead image wrote it on a crash restart. */
int wl_engine_state(struct workload *w, struct engine *e, size_t size,
                    uint32_t version, void **ret);

/* ---- engines ----------------------------------------------------------- */
extern const struct engine_ops edu_msi_ops, edu_intx_ops, nvme_ops,
    e1000e_ops;
/* IOVA window of an engine: each gets 16 MiB (edu DMA stays < 256 MiB). */
#define WL_IOVA_BASE(e) (0x1000000ull * (uint64_t)((e)->index + 1))
/* cprkit_vfio_dma_map() (type1) or cprkit_iommufd_map_file() of the RAM
 * block behind @vaddr (iommufd), and remember the mapping. */
int wl_dma_map(struct workload *w, struct engine *e, uint64_t iova,
               uint64_t size, void *vaddr);
/* Load an engine's section into @buf (exactly @size bytes, starting with
 * the uint32_t format @version). */
int wl_section_load(struct workload *w, const struct engine *e, void *buf,
                    size_t size, uint32_t version);
/* For FAULT_ANON_DMA: an IOVA no engine uses. */
#define WL_IOVA_ANON 0x8000000ull

/* Expected n! for edu's factorial register (32-bit, as the device does). */
uint32_t edu_factorial(uint32_t n);

/* Deterministic pattern bytes: run nonce, generation, tag, index. */
void pattern_fill(void *buf, size_t len, uint32_t nonce, uint64_t gen,
                  uint32_t tag);
/* Offset of the first wrong byte, or -1 if the buffer holds the pattern. */
long pattern_check(const void *buf, size_t len, uint32_t nonce,
                   uint64_t gen, uint32_t tag);

/* ---- update.c ---------------------------------------------------------- */
/* Reclaim side: check, commit (or play the injected fault), account. */
void update_incoming(struct workload *w);
/* Crash restart side: recover every engine, check, commit, account. */
void restart_incoming(struct workload *w);
/* Record fd count and VmLck of the serving image in w->live. */
void wl_live_record(struct workload *w);
/* Old side: one forward update or one injected failure. Returns only when
 * the update did not happen (an old-side failure, or a bug). */
void update_once(struct workload *w, enum fault fault);
void save_sections(struct workload *w, enum fault attempt);

/* ---- inject.c ---------------------------------------------------------- */
/* Old-side faults: arrange, attempt, check the failure; returns after the
 * old binary has shown it still serves. */
void inject_old_side(struct workload *w, enum fault f);
/* The new image of swapped-devices / swapped-eventfds: swaps two preserved
 * fds of that kind by number before loading the state. */
void inject_swap_fds(struct workload *w);
/* New-side faults, in the faulty new image. Never returns. */
__attribute__((__noreturn__)) void inject_play_new_side(struct workload *w,
                                                    int load_result);
/* In the old image after the rollback: the reason fits the fault. */
void inject_check_rollback(struct workload *w, enum fault f);
/* Roll back to the previous binary, exporting the report counters. */
__attribute__((__noreturn__)) void wl_rollback(struct workload *w,
                                           const char *reason);
/* Build the argv of the next image. */
char **wl_next_argv(struct workload *w, const char *argv0,
                    unsigned remaining, enum fault acting);
void wl_free_argv(char **argv);
/* The next image's environment (see update.c); free() the array only. */
char **wl_next_envp(const char *preload);
/* fd count as the update checks compare it (no sockets in control mode). */
int wl_fd_count(const struct workload *w);

/* ---- control.c: operator mode (--control) -------------------------------- */
/* After the engines are open or reclaimed: the control endpoint, commit of
 * an incoming update, then service until SIGTERM/SIGINT. Never returns.
 * Weak: a build of the workload without control.c (and without
 * libcprkit-control) has no operator mode. */
__attribute__((weak, __noreturn__)) void wl_control_run(struct workload *w);
/* Upgrade argument the operator may pass: the new image fails its health
 * check (to see a rollback). */
#define WL_FAIL_HEALTH_CHECK "--fail-health-check"
/* Upgrade arguments the operator may add to make the new image die or hang
 * so that the keeper rolls back (FAULT_CRASH_AFTER_LOAD ... FAULT_EXIT_EARLY).
 * Only in a binary linked with the link-time interposer
 * tests/vm/interposer/act-wrap.c (which defines wl_act_hooks); elsewhere
 * the upgrade refuses them. */
#define WL_FAIL_CRASH_AFTER_LOAD "--fail-crash-after-load"
#define WL_FAIL_ABORT_MID_REMAP "--fail-abort-mid-remap"
#define WL_FAIL_HANG "--fail-hang"
#define WL_FAIL_EXIT_EARLY "--fail-exit-early"
/* The new image's environment only: "crash-after-load", "abort-mid-remap=N"
 * (abort after the Nth remap), "hang", "exit-early". */
#define WL_ACT_ENV "CPRKIT_WORKLOAD_ACT"
extern const char wl_act_hooks[] __attribute__((weak));
/* Faults acted through WL_ACT_ENV (not --fault): FAULT_CRASH_AFTER_LOAD on. */
bool fault_is_keeper_side(enum fault f);
/* ... or the new image SIGKILLs itself first thing (a crash inside the
 * update window, after the exec: the keeper rolls back). */
#define WL_CRASH_AT_START "--crash-at-start"
