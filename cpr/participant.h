/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Participants: what an update carries besides the named fds and the
 * application sections, and what must be done to it around the exec —
 * today the VFIO type1 layer (preserve/, restore/). The core calls them at
 * fixed points of the update and never names them: a participant registers
 * itself from a constructor (as QEMU's type_init does) and gets private
 * state in every context. Modelled on QEMU's vmstate handlers (a priority,
 * pre_save / post_load) and its CPR notifiers.
 *
 * Every callback is optional. The int ones return >= 0, or a negative
 * errno after ctx_fail() has said why, naming the culprit.
 *
 * Order (lower priority first; registration order among equals):
 *   init, check_blockers, suspend, save, load, adopt, rollback_prepare,
 *   committed, pending: ascending;
 *   resume, rollback_abort, clear: descending.
 * A failing suspend (rollback_prepare) of participant k has undone its
 * own part; the core then resumes (aborts) participants k-1 .. 0, so the
 * caller sees all or nothing. See docs/design.md, "Layers".
 */
#pragma once

#include <stdint.h>

#include <glib.h>

#include "cprkit/cprkit.h"
#include "cprkit-state.pb-c.h"

/* Priorities: lower runs first on the way out (suspend, save) and last on
 * the way back (resume). DMA address spaces go first: once the IOMMU no
 * longer uses this process's addresses, nothing else depends on them. */
#define PARTICIPANT_PRI_IOMMU 100
#define PARTICIPANT_PRI_DEFAULT 500

/* One statistic for status output, e.g. ("mapped_bytes", 1 << 20). */
/* names: NULL, or the NULL-terminated values the figure counts (see
 * cprkit_stat_fn in cprkit.h). */
typedef void (*participant_stat_fn)(void *userdata, const char *key,
                                    uint64_t value, const char *const *names);

struct participant {
    const char *name;
    int priority;
    /* Bytes of private state per context, zeroed before init; get it with
     * participant_state(). */
    size_t state_size;

    /* Makes the private state empty; clear frees what it holds (not the
     * application's fds). The core also calls clear then init to drop
     * what a failed load left. init cannot fail: memory comes from GLib,
     * which aborts when out of it, like the rest of the library. */
    void (*init)(cprkit_ctx *ctx);
    void (*clear)(cprkit_ctx *ctx);

    /* Old side. check_blockers only checks, changes nothing (used by
     * cprkit_check_update() and `cpr-exec check`). suspend runs right
     * before the blob is written, inside the blackout; resume undoes it
     * when the exec did not happen. save puts the participant's records
     * into the State being built (memory from state_alloc()). */
    int (*check_blockers)(cprkit_ctx *ctx);
    int (*suspend)(cprkit_ctx *ctx);
    int (*resume)(cprkit_ctx *ctx);
    int (*save)(cprkit_ctx *ctx, Cprkit__State *state);

    /* New side. load reads the participant's records from a decoded State
     * after the fd registry was loaded. pending appends to out, as one
     * clause of commit's error message, what is still not reclaimed, and
     * returns how many; commit refuses while any participant has some.
     * committed: the update is over. rollback_prepare puts everything back
     * as the previous binary left it, before the rollback exec;
     * rollback_abort undoes that when the exec failed. */
    int (*load)(cprkit_ctx *ctx, const Cprkit__State *state);
    unsigned (*pending)(cprkit_ctx *ctx, GString *out);
    void (*committed)(cprkit_ctx *ctx);
    int (*rollback_prepare)(cprkit_ctx *ctx);
    void (*rollback_abort)(cprkit_ctx *ctx);
    /* New side, in a process the keeper started after its predecessor
     * died (cprkit_is_restart()), once load passed and the fds are
     * validated: the predecessor may have died anywhere — with its state
     * as committed, halfway through a suspend, or after the new binary of
     * an update had redone half of it. Bring the kernel's state to what
     * load expects (VFIO: every mapping's vaddr suspended). */
    int (*adopt)(cprkit_ctx *ctx);

    /* Figures for status output and the exec log line. */
    void (*stats)(cprkit_ctx *ctx, participant_stat_fn add, void *userdata);
};

/* Adds p to the table, kept sorted by priority. Call it from a
 * constructor (PARTICIPANT_REGISTER), before any context exists. The
 * constructor has a priority so that it runs before the plain
 * constructors of the same binary: the LD_PRELOAD shim makes its context
 * in one (shim/preload/preload.c). */
void participant_register(const struct participant *p);
#define PARTICIPANT_CONSTRUCTOR_PRIORITY 101
#define PARTICIPANT_REGISTER(p)                                                \
    __attribute__((constructor(                                                \
        PARTICIPANT_CONSTRUCTOR_PRIORITY))) static void register_##p(void)     \
    {                                                                          \
        participant_register(&(p));                                            \
    }

/* p's private state in ctx. p must have been registered. */
void *participant_state(cprkit_ctx *ctx, const struct participant *p);

/* For the core: the steps of the update over every participant, in the
 * order above. */
void participants_init(cprkit_ctx *ctx);
void participants_clear(cprkit_ctx *ctx);
void participants_reset(cprkit_ctx *ctx);
int participants_check_blockers(cprkit_ctx *ctx);
int participants_suspend(cprkit_ctx *ctx);
int participants_resume(cprkit_ctx *ctx);
int participants_save(cprkit_ctx *ctx, Cprkit__State *state);
int participants_load(cprkit_ctx *ctx, const Cprkit__State *state);
int participants_adopt(cprkit_ctx *ctx);
unsigned participants_pending(cprkit_ctx *ctx, GString *out);
void participants_committed(cprkit_ctx *ctx);
int participants_rollback_prepare(cprkit_ctx *ctx);
void participants_rollback_abort(cprkit_ctx *ctx);
void participants_stats(cprkit_ctx *ctx, participant_stat_fn add,
                        void *userdata);
