/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The live update as the application sees it.
 *
 * Old image: put work in flight, record state in sections, cprkit_exec()
 * its own binary with the remaining count in argv.
 * New image: reclaim (main.c opens the engines), check nothing was reset,
 * commit, then service what completed while no driver ran and report the
 * blackout. The per-update line goes to stdout in both output modes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "workload.h"

extern char **environ;

void save_sections(struct workload *w, enum fault attempt)
{
    int r;

    w->st.attempt_fault = attempt;
    r = cprkit_section_put(w->ctx, "workload", &w->st, sizeof(w->st));
    for (unsigned i = 0; r == 0 && i < w->nengines; i++)
        r = w->engines[i].ops->save(w, &w->engines[i]);
    if (r < 0)
        fatal("cprkit_section_put: %s", strerror(-r));
}

/* asprintf() that cannot return NULL. */
__attribute__((format(printf, 1, 2))) static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s;
    int r;

    va_start(ap, f);
    r = vasprintf(&s, f, ap);
    va_end(ap);
    if (r < 0)
        fatal("out of memory");
    return s;
}

char **wl_next_argv(struct workload *w, const char *argv0, unsigned remaining,
                    enum fault acting)
{
    char **argv = calloc(32, sizeof(char *));
    char faults[256] = "";
    int n = 0;

    argv[n++] = strdup(argv0);
    if (w->tap)
        argv[n++] = strdup("--tap");
    argv[n++] = fmt("--updates=%u", w->updates);
    argv[n++] = fmt("--rounds=%u", w->rounds);
    argv[n++] = fmt("--containers=%u", w->ncontainers);
    if (w->backend == WL_IOMMUFD)
        argv[n++] = strdup("--backend=iommufd");
    for (unsigned i = 0; i < w->nfaults; i++) {
        strncat(faults, i ? "," : "", sizeof(faults) - strlen(faults) - 1);
        strncat(faults, fault_name(w->faults[i]),
                sizeof(faults) - strlen(faults) - 1);
    }
    if (w->nfaults)
        argv[n++] = fmt("--inject=%s", faults);
    if (w->interposer_dir)
        argv[n++] = fmt("--interposer-dir=%s", w->interposer_dir);
    if (w->v2_binary)
        argv[n++] = fmt("--v2-binary=%s", w->v2_binary);
    argv[n++] = fmt("--remaining=%u", remaining);
    if (acting != FAULT_NONE)
        argv[n++] = fmt("--fault=%s", fault_name(acting));
    for (unsigned i = 0; i < w->nengines; i++)
        argv[n++] = strdup(w->dev_args[i]);
    argv[n] = NULL;
    return argv;
}

void wl_free_argv(char **argv)
{
    for (char **a = argv; a && *a; a++)
        free(*a);
    free(argv);
}

/*
 * The next image's environment: ours without LD_PRELOAD and CPRKIT_FAULT
 * (an interposer is put in a process on purpose, never inherited by
 * accident), plus
 * @preload if given. The report counters travel in WL_TAP_ENV.
 */
char **wl_next_envp(const char *preload)
{
    size_t n = 0, k = 0;
    char **envp;

    while (environ[n])
        n++;
    envp = calloc(n + 2, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) &&
            strncmp(environ[i], WL_FAULT_ENV "=", strlen(WL_FAULT_ENV) + 1))
            envp[k++] = environ[i];
    if (preload)
        envp[k++] = fmt("LD_PRELOAD=%s", preload);
    envp[k] = NULL;
    return envp;
}

int wl_fd_count(const struct workload *w)
{
    return w->control ? proc_fd_count_nosock() : proc_fd_count();
}

void wl_rollback(struct workload *w, const char *reason)
{
    char why[512];
    int r;

    /* cprkit_rollback() execs with our environ: no interposer there. */
    snprintf(why, sizeof(why), "%s", reason);
    unsetenv("LD_PRELOAD");
    report_export();
    r = cprkit_rollback(w->ctx, why);
    unsetenv(WL_TAP_ENV);
    fatal("cprkit_rollback failed (%d): %s", r, cprkit_last_error(w->ctx));
}

void update_once(struct workload *w, enum fault fault)
{
    struct cprkit_exec_opts opts = { .size = sizeof(opts) };
    const char *path = w->self;
    char preload[4096];
    char **argv, **envp;
    int r;

    for (unsigned i = 0; i < w->nengines; i++)
        w->engines[i].ops->start_inflight(w, &w->engines[i]);
    snprintf(preload, sizeof(preload), "%s/corrupt-blob.so",
             w->interposer_dir ? w->interposer_dir : ".");

    w->st.fd_count = (uint32_t)wl_fd_count(w);
    w->st.vmlck_kb = (uint64_t)wl_pinned_kb(w);
    w->st.exec_started_ns = mono_ns();
    save_sections(w, fault);
    argv = wl_next_argv(w, "cprkit-workload",
                        fault == FAULT_NONE ? w->remaining - 1 : w->remaining,
                        fault_is_new_side(fault) ? fault : FAULT_NONE);
    report_export();
    envp = wl_next_envp(fault == FAULT_CORRUPT_BLOB ? preload : NULL);
    opts.envp = envp;

    r = cprkit_exec(w->ctx, path, argv, &opts);

    /* Still here: the update did not happen. */
    unsetenv(WL_TAP_ENV);
    free(envp);
    wl_free_argv(argv);
    check(false, "cprkit_exec %s: %s (%d)", path, cprkit_last_error(w->ctx),
          r);
    for (unsigned i = 0; i < w->nengines; i++) {
        struct blackout b = {0};

        w->engines[i].ops->finish_inflight(w, &w->engines[i], &b);
    }
    fatal("live update failed: %s", cprkit_last_error(w->ctx));
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static const char *suspend_phase(struct workload *w, uint64_t *ret_ns)
{
    static const char *const phases[] = { "suspend", "exec" };

    for (size_t i = 0; i < 2; i++) {
        uint64_t t = cprkit_timestamp(w->ctx, phases[i]);

        if (t) {
            *ret_ns = t;
            return phases[i];
        }
    }
    *ret_ns = w->st.exec_started_ns;
    return "before cprkit_exec";
}

/* One engine's share of a blackout into the total; t_first: the earliest
 * first service so far. */
static void blackout_add(struct blackout *total, uint64_t *t_first,
                         const struct blackout *b)
{
    if (b->first_service_ns && b->first_service_ns < *t_first)
        *t_first = b->first_service_ns;
    total->irqs += b->irqs;
    total->dma_bytes += b->dma_bytes;
    total->completions += b->completions;
}

void update_incoming(struct workload *w)
{
    struct blackout total = {0};
    char detail[512] = "";
    const char *from;
    uint64_t t0, t_first = UINT64_MAX, t_commit, t_exec;
    char split[160];
    long vmlck;
    int r, fds;
    bool ok;

    for (unsigned i = 0; i < w->nengines; i++)
        if (w->engines[i].device >= 0)
            w->engines[i].ops->check_untouched(w, &w->engines[i]);

    if (w->acting_fault == FAULT_VETO) {
        check(true, "faulty new binary: reclaimed everything, health check "
                    "vetoes the update before commit");
        wl_rollback(w, "health check failed: injected veto");
    }
    r = cprkit_commit(w->ctx);
    t_commit = mono_ns();
    if (w->acting_fault == FAULT_UNCLAIMED_EVENTFD ||
        w->acting_fault == FAULT_UNCLAIMED_DEVICE)
        inject_play_new_side(w, r);
    if (!check(r == 0, "cprkit_commit: %s",
               r == 0 ? "every preserved resource claimed"
                      : cprkit_last_error(w->ctx)))
        wl_rollback(w, cprkit_last_error(w->ctx));

    if (cprkit_is_rollback(w->ctx))
        inject_check_rollback(w, (enum fault)w->st.attempt_fault);
    else
        w->st.updates_done++;

    /* Service what happened while no driver ran: the blackout ends with
     * the first interrupt or DMA this image handles. */
    for (unsigned i = 0; i < w->nengines; i++) {
        struct engine *e = &w->engines[i];
        struct blackout b = {0};
        size_t len = strlen(detail);

        e->ops->finish_inflight(w, e, &b);
        blackout_add(&total, &t_first, &b);
        snprintf(detail + len, sizeof(detail) - len,
                 "%s%s %llu irq/%llu B", len ? ", " : "", e->name,
                 (unsigned long long)b.irqs, (unsigned long long)b.dma_bytes);
    }
    from = suspend_phase(w, &t0);

    fds = wl_fd_count(w);
    vmlck = wl_pinned_kb(w);
    check(fds == (int)w->st.fd_count,
          "fd count unchanged across the update (%u before, %d after%s)",
          w->st.fd_count, fds, w->control ? ", sockets not counted" : "");
    check(vmlck == (long)w->st.vmlck_kb,
          "%s unchanged across the update (%llu kB before, %ld kB after)",
          wl_pinned_name(w), (unsigned long long)w->st.vmlck_kb, vmlck);

    check(t_first != UINT64_MAX && total.irqs > 0,
          "this image serviced interrupts that waited during the "
          "blackout (%llu)", (unsigned long long)total.irqs);
    ok = report_failures() == 0;
    /* "execve" (right before the syscall, after the blob is written) where
     * the library records it, else "exec" (before the blob). */
    t_exec = cprkit_timestamp(w->ctx, "execve");
    if (!t_exec)
        t_exec = cprkit_timestamp(w->ctx, "exec");
    if (t_first == UINT64_MAX)
        t_first = t_commit;
    if (t_exec < t0 || t_exec > w->main_started_ns)
        t_exec = t0;
    /* Where the blackout went: old side after the suspend, kernel exec and
     * dynamic loading, cprkit load + reclaim + commit, first service. */
    snprintf(split, sizeof(split), "suspend->exec %.1f + exec->main %.1f + "
             "main->commit %.1f + commit->service %.1f",
             ms(t_exec - t0), ms(w->main_started_ns - t_exec),
             ms(t_commit - w->main_started_ns), ms(t_first - t_commit));
    if (cprkit_is_rollback(w->ctx))
        note("update %u ROLLED BACK (%s): old binary serving again %.1f ms "
             "after the %s; during it: %llu irq, %llu B DMA [%s]: %s",
             w->st.updates_done + 1, cprkit_rollback_reason(w->ctx),
             ms(t_first - t0), from, (unsigned long long)total.irqs,
             (unsigned long long)total.dma_bytes, detail,
             ok ? "OK" : "FAILED");
    else if (w->control)
        note("update %u (generation %llu, %s): blackout %.1f ms (%s -> "
             "first IRQ/DMA serviced = %s); during blackout: %llu irq, "
             "%llu B DMA, %u completion(s) [%s]; fds %u->%d, %s "
             "%llu->%ld kB: %s",
             w->st.updates_done, (unsigned long long)w->generation,
             w->argv[0], ms(t_first - t0), from, split,
             (unsigned long long)total.irqs,
             (unsigned long long)total.dma_bytes, total.completions, detail,
             w->st.fd_count, fds, wl_pinned_name(w),
             (unsigned long long)w->st.vmlck_kb, vmlck,
             ok ? "OK" : "FAILED");
    else
        note("update %u/%u (generation %llu): blackout %.1f ms (%s -> first "
             "IRQ/DMA serviced = %s); during blackout: %llu irq, %llu B DMA, "
             "%u completion(s) [%s]; fds %u->%d, %s %llu->%ld kB: %s",
             w->st.updates_done, w->updates,
             (unsigned long long)w->generation, ms(t_first - t0), from, split,
             (unsigned long long)total.irqs,
             (unsigned long long)total.dma_bytes, total.completions, detail,
             w->st.fd_count, fds, wl_pinned_name(w),
             (unsigned long long)w->st.vmlck_kb, vmlck,
             ok ? "OK" : "FAILED");

    if (w->on_serving)
        w->on_serving(w);
    /* Fresh work after the update: the device serves as before. */
    for (unsigned i = 0; i < w->nengines; i++)
        w->engines[i].ops->serve(w, &w->engines[i], w->rounds);
}

void wl_live_record(struct workload *w)
{
    w->live->fd_count = (uint32_t)wl_fd_count(w);
    w->live->vmlck_kb = (uint64_t)wl_pinned_kb(w);
}

/*
 * After a crash: the engines' live state blocks are current (the sections
 * are as of the last keeper sync, so only "workload" is read from them:
 * the nonce). Recover each engine (no re-initialisation: see its
 * recover()), commit, compare fd count and VmLck with the image that
 * served before, mark serving, fresh work.
 */
void restart_incoming(struct workload *w)
{
    struct blackout total = {0};
    char detail[512] = "";
    uint64_t t_first = UINT64_MAX, t_commit;
    long vmlck;
    int r, fds;
    bool ok;

    for (unsigned i = 0; i < w->nengines; i++) {
        struct engine *e = &w->engines[i];
        struct blackout b = {0};
        size_t len = strlen(detail);

        if (!e->ops->recover)
            fatal("%s: crash restarts are not supported by this engine",
                  e->name);
        e->ops->recover(w, e, &b);
        blackout_add(&total, &t_first, &b);
        snprintf(detail + len, sizeof(detail) - len,
                 "%s%s %llu irq/%u completion(s)", len ? ", " : "", e->name,
                 (unsigned long long)b.irqs, b.completions);
    }
    r = cprkit_commit(w->ctx);
    t_commit = mono_ns();
    if (!check(r == 0, "crash restart: cprkit_commit: %s",
               r == 0 ? "every preserved resource claimed"
                      : cprkit_last_error(w->ctx)))
        fatal("crash restart: commit failed: %s", cprkit_last_error(w->ctx));
    fds = wl_fd_count(w);
    vmlck = wl_pinned_kb(w);
    check(fds == (int)w->live->fd_count,
          "crash restart: fd count as in the image that died (%u, now %d%s)",
          w->live->fd_count, fds, w->control ? ", sockets not counted" : "");
    check(vmlck == (long)w->live->vmlck_kb,
          "crash restart: %s as in the image that died (%llu kB, now %ld "
          "kB)", wl_pinned_name(w), (unsigned long long)w->live->vmlck_kb,
          vmlck);
    w->live->restarts++;
    ok = report_failures() == 0;
    note("crash restart %llu (%s, generation %llu): %.1f ms from main() to "
         "commit; while no driver ran: %llu irq, %u completion(s) [%s]; "
         "fds %d, %s %ld kB: %s",
         (unsigned long long)w->live->restarts,
         cprkit_restart_reason(w->ctx), (unsigned long long)w->generation,
         (double)(t_commit - w->main_started_ns) / 1e6,
         (unsigned long long)total.irqs, total.completions, detail, fds,
         wl_pinned_name(w), vmlck, ok ? "OK" : "FAILED");
    if (w->on_serving)
        w->on_serving(w);
    for (unsigned i = 0; i < w->nengines; i++)
        w->engines[i].ops->serve(w, &w->engines[i], w->rounds);
}
