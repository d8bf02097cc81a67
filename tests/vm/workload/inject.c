/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Failure injection at every step of the update sequence. Each one must
 * end with the old or the new binary serving, the device working (fresh
 * DMA and interrupts) and nothing lost (work that was in flight during the
 * attempt completes and is accounted for).
 *
 * Old side (cprkit_exec() returns an error, the old binary keeps going):
 *   anon-dma          blocker: a DMA mapping of anonymous memory
 *   no-update-vaddr   blocker: the container lacks VFIO_UPDATE_VADDR
 *                     (fault-ioctl.so answers VFIO_CHECK_EXTENSION with 0)
 *   suspend-fails     the vaddr suspend (UNMAP_DMA|VADDR) fails
 *   suspend-partial   no UNMAP_ALL, so one suspend per mapping, and the
 *                     second fails: the first must be undone
 *   exec-missing      the new binary does not exist (blocker)
 *   exec-garbage      a copy of this binary whose ELF interpreter is
 *                     missing: it passes every blocker, execve fails after
 *                     the suspend, the vaddrs must be valid again
 *   exec-not-cprkit   the new binary is /bin/true, no cprkit program
 *                     (blocker: it could not load the state)
 *   exec-script       the new binary is a shell script (blocker)
 *   v2-binary         the new binary reads state format 2 only (blocker)
 * New side (the new image rolls back to the old binary):
 *   corrupt-blob      corrupt-blob.so flips a payload bit as it is read
 *   unclaimed-eventfd the new binary does not reclaim an interrupt eventfd
 *   unclaimed-device  the new binary does not reclaim a device
 *   swapped-devices   two preserved VFIO device fds swapped by number before
 *                     the load (one anonymous inode: fstat cannot tell)
 *   swapped-eventfds  two preserved interrupt eventfds swapped likewise
 *   veto              the new binary's health check fails before commit
 * New side with the keeper (operator mode, `cpr-exec run`): the new binary
 * dies or hangs, the keeper starts the old binary again with the update's
 * state (tests/vm/interposer/act-wrap.c acts them; control.c asks for them):
 *   crash-after-load  SIGSEGV right after loading the state
 *   abort-mid-remap   abort() after remapping half of the DMA mappings
 *   hang              no commit until the keeper's deadline kills it
 *   exit-early        exit(1) before loading the state
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "linux-uapi-iommufd.h"
#include "workload.h"

static const char *const names[] = {
    [FAULT_NONE] = "none",
    [FAULT_ANON_DMA] = "anon-dma",
    [FAULT_NO_UPDATE_VADDR] = "no-update-vaddr",
    [FAULT_SUSPEND_FAILS] = "suspend-fails",
    [FAULT_SUSPEND_PARTIAL] = "suspend-partial",
    [FAULT_EXEC_MISSING] = "exec-missing",
    [FAULT_EXEC_GARBAGE] = "exec-garbage",
    [FAULT_EXEC_NOT_CPRKIT] = "exec-not-cprkit",
    [FAULT_EXEC_SCRIPT] = "exec-script",
    [FAULT_V2_BINARY] = "v2-binary",
    [FAULT_CORRUPT_BLOB] = "corrupt-blob",
    [FAULT_UNCLAIMED_EVENTFD] = "unclaimed-eventfd",
    [FAULT_UNCLAIMED_DEVICE] = "unclaimed-device",
    [FAULT_SWAPPED_DEVICES] = "swapped-devices",
    [FAULT_SWAPPED_EVENTFDS] = "swapped-eventfds",
    [FAULT_VETO] = "veto",
    [FAULT_CRASH_AFTER_LOAD] = "crash-after-load",
    [FAULT_ABORT_MID_REMAP] = "abort-mid-remap",
    [FAULT_HANG] = "hang",
    [FAULT_EXIT_EARLY] = "exit-early",
};

const char *fault_name(enum fault f)
{
    return (size_t)f < sizeof(names) / sizeof(names[0]) ? names[f] : "?";
}

int fault_parse(const char *s, enum fault *ret)
{
    for (size_t i = 1; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(s, names[i]) && !fault_is_keeper_side((enum fault)i)) {
            *ret = (enum fault)i;
            return 0;
        }
    return -EINVAL;
}

bool fault_is_new_side(enum fault f)
{
    return f >= FAULT_CORRUPT_BLOB;
}

bool fault_is_keeper_side(enum fault f)
{
    return f >= FAULT_CRASH_AFTER_LOAD;
}

static bool contains(const char *haystack, const char *needle)
{
    return haystack && strcasestr(haystack, needle);
}

/* A copy of the binary at self whose PT_INTERP names no file: it passes
 * every blocker (it links cprkit, as self does), then execve() fails with
 * ENOENT after the suspend. In self's directory, so that its $ORIGIN
 * run path finds the same libcprkit. */
static int write_uninterpretable_binary(const char *self, const char *path)
{
    struct stat st;
    Elf64_Ehdr *eh;
    Elf64_Phdr *ph;
    char *data = NULL;
    bool patched = false;
    int fd, r = 0;

    fd = open(self, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || st.st_size < (off_t)sizeof(*eh) ||
        !(data = malloc((size_t)st.st_size)) ||
        read(fd, data, (size_t)st.st_size) != st.st_size)
        r = -EIO;
    close(fd);
    if (r < 0) {
        free(data);
        return r;
    }
    eh = (Elf64_Ehdr *)data;
    ph = (Elf64_Phdr *)(data + eh->e_phoff);
    for (unsigned i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_INTERP) {
            data[ph[i].p_offset] = 'X'; /* "Xlib64/ld-linux..." */
            patched = true;
        }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (!patched || fd < 0 ||
        write(fd, data, (size_t)st.st_size) != st.st_size)
        r = patched ? -EIO : -ENOEXEC;
    if (fd >= 0)
        close(fd);
    free(data);
    return r;
}

static int write_script(const char *path)
{
    static const char script[] = "#!/bin/sh\nexit 0\n";
    int fd, r = 0;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (fd < 0)
        return -errno;
    if (write(fd, script, strlen(script)) != (ssize_t)strlen(script))
        r = -EIO;
    close(fd);
    return r;
}

/* Nothing changed: every preserved fd still close-on-exec. */
static bool preserved_fds_cloexec(struct workload *w)
{
    for (unsigned i = 0; i < w->nengines; i++) {
        const struct engine *e = &w->engines[i];
        int fds[] = { e->container, e->group, e->device };

        for (size_t j = 0; j < 3; j++)
            if (fds[j] >= 0 && cloexec_get(fds[j]) != 1)
                return false;
    }
    return true;
}

/*
 * anon-dma on iommufd: cprkit's hook maps only files, so the program maps
 * anonymous memory with IOMMU_IOAS_MAP itself, behind cprkit's back. The
 * blocker must still see it: the kernel refuses to move such a mapping to
 * another process (IOMMU_IOAS_CHANGE_PROCESS: EINVAL), and cprkit asks it.
 */
static void iommufd_anon_map(struct workload *w, void *anon, size_t size)
{
    struct iommu_ioas_map map = {
        .size = sizeof(map),
        .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
                 IOMMU_IOAS_MAP_WRITEABLE,
        .ioas_id = w->ioas[0],
        .user_va = (uintptr_t)anon,
        .length = size,
        .iova = WL_IOVA_ANON,
    };
    int r;

    r = ioctl(w->containers[0], IOMMU_IOAS_MAP, &map) < 0 ? -errno : 0;
    check(r == 0, "anon-dma: IOMMU_IOAS_MAP of anonymous memory, not "
          "through cprkit (%d)", r);
    r = cprkit_check_update(w->ctx, w->self);
    check(r < 0 && contains(cprkit_last_error(w->ctx), "MAP_FILE"),
          "anon-dma: cprkit_check_update refuses, naming MAP_FILE: %s",
          cprkit_last_error(w->ctx));
}

void inject_old_side(struct workload *w, enum fault f)
{
    struct cprkit_exec_opts opts = { .size = sizeof(opts) };
    const char *path = w->self, *err;
    const char *script = "/tmp/cprkit-workload-script";
    char garbage[4096];
    const size_t anon_size = 0x10000;
    char expect[64] = "", **argv;
    void *anon = NULL;
    long vmlck0;
    int fds0, r;

    note("inject %s: old binary attempts an update that must fail",
         fault_name(f));
    /* Work in flight across the attempt: it must not be lost either. */
    for (unsigned i = 0; i < w->nengines; i++)
        w->engines[i].ops->start_inflight(w, &w->engines[i]);
    fds0 = proc_fd_count();
    vmlck0 = wl_pinned_kb(w);

    switch (f) {
    case FAULT_ANON_DMA:
        anon = mmap(NULL, anon_size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (anon == MAP_FAILED)
            fatal("mmap: %s", strerror(errno));
        if (w->backend == WL_IOMMUFD) {
            iommufd_anon_map(w, anon, anon_size);
            snprintf(expect, sizeof(expect), "MAP_FILE");
            break;
        }
        r = cprkit_vfio_dma_map(w->ctx, w->containers[0], WL_IOVA_ANON,
                                anon_size, anon,
                                VFIO_DMA_MAP_FLAG_READ |
                                    VFIO_DMA_MAP_FLAG_WRITE);
        check(r == 0, "anon-dma: anonymous memory maps for DMA (%d)", r);
        snprintf(expect, sizeof(expect), "0x%llx",
                 (unsigned long long)WL_IOVA_ANON);
        r = cprkit_check_update(w->ctx, w->self);
        check(r < 0 && contains(cprkit_last_error(w->ctx), expect),
              "anon-dma: cprkit_check_update refuses, naming IOVA %s: %s",
              expect, cprkit_last_error(w->ctx));
        break;
    case FAULT_NO_UPDATE_VADDR:
        setenv(WL_FAULT_ENV, "no-update-vaddr", 1);
        snprintf(expect, sizeof(expect), "UPDATE_VADDR");
        break;
    case FAULT_SUSPEND_FAILS:
        setenv(WL_FAULT_ENV, "unmap-vaddr-fail=1", 1);
        snprintf(expect, sizeof(expect), "suspending");
        break;
    case FAULT_SUSPEND_PARTIAL:
        setenv(WL_FAULT_ENV, "no-unmap-all,unmap-vaddr-fail=2", 1);
        snprintf(expect, sizeof(expect), "suspending");
        break;
    case FAULT_EXEC_MISSING:
        path = "/nonexistent/cprkit-workload";
        snprintf(expect, sizeof(expect), "%s", path);
        break;
    case FAULT_EXEC_GARBAGE: {
        /* w->self may be /proc/self/exe: the copy goes next to the file. */
        char *real = realpath(w->self, NULL);

        if (!real)
            fatal("realpath %s: %s", w->self, strerror(errno));
        snprintf(garbage, sizeof(garbage), "%s-nointerp", real);
        free(real);
        r = write_uninterpretable_binary(w->self, garbage);
        if (r < 0)
            fatal("%s: %s", garbage, strerror(-r));
        path = garbage;
        snprintf(expect, sizeof(expect), "execve");
        break;
    }
    case FAULT_EXEC_NOT_CPRKIT:
        path = "/bin/true";
        snprintf(expect, sizeof(expect), "does not use libcprkit");
        break;
    case FAULT_EXEC_SCRIPT:
        r = write_script(script);
        if (r < 0)
            fatal("%s: %s", script, strerror(-r));
        path = script;
        snprintf(expect, sizeof(expect), "is a script");
        break;
    case FAULT_V2_BINARY:
        if (!w->v2_binary)
            fatal("v2-binary needs --v2-binary");
        path = w->v2_binary;
        snprintf(expect, sizeof(expect), "reads state format 2,");
        break;
    default:
        fatal("%s is not an old-side fault", fault_name(f));
    }

    argv = wl_next_argv(w, "cprkit-workload", w->remaining, FAULT_NONE);
    r = cprkit_exec(w->ctx, path, argv, &opts);
    err = cprkit_last_error(w->ctx);
    wl_free_argv(argv);
    if (w->fault_env_base)
        setenv(WL_FAULT_ENV, w->fault_env_base, 1);
    else
        unsetenv(WL_FAULT_ENV);
    check(r < 0, "%s: cprkit_exec fails (%d): %s", fault_name(f), r, err);
    if (expect[0])
        check(contains(err, expect), "%s: the error names the cause ('%s')",
              fault_name(f), expect);
    if (f == FAULT_ANON_DMA && w->backend == WL_IOMMUFD) {
        struct iommu_ioas_unmap unmap = {
            .size = sizeof(unmap),
            .ioas_id = w->ioas[0],
            .iova = WL_IOVA_ANON,
            .length = anon_size,
        };

        r = ioctl(w->containers[0], IOMMU_IOAS_UNMAP, &unmap) < 0 ? -errno : 0;
        check(r == 0, "anon-dma: the blocking mapping unmaps (%d)", r);
        munmap(anon, anon_size);
    } else if (f == FAULT_ANON_DMA) {
        r = cprkit_vfio_dma_unmap(w->ctx, w->containers[0], WL_IOVA_ANON,
                                  anon_size);
        check(r == 0, "anon-dma: the blocking mapping unmaps (%d)", r);
        munmap(anon, anon_size);
    }
    if (f == FAULT_EXEC_GARBAGE)
        unlink(garbage);
    if (f == FAULT_EXEC_SCRIPT)
        unlink(script);

    /* Nothing changed: vaddrs valid, fds and locked memory as before. */
    for (unsigned i = 0; i < w->nengines; i++) {
        const struct engine *e = &w->engines[i];

        /* iommufd has no vaddr to leave suspended. */
        for (unsigned m = 0; w->backend == WL_TYPE1 && m < e->nmaps; m++) {
            r = dma_vaddr_valid(e->container, e->maps[m].iova,
                                e->maps[m].size, e->maps[m].vaddr);
            check(r == 1, "%s: %s: DMA mapping at IOVA 0x%llx has a valid "
                  "vaddr (not left suspended) (%d)", fault_name(f), e->name,
                  (unsigned long long)e->maps[m].iova, r);
        }
    }
    check(preserved_fds_cloexec(w), "%s: VFIO fds are close-on-exec again",
          fault_name(f));
    check(proc_fd_count() == fds0, "%s: fd count unchanged (%d)",
          fault_name(f), fds0);
    check(wl_pinned_kb(w) == vmlck0, "%s: %s unchanged (%ld kB)",
          fault_name(f), wl_pinned_name(w), vmlck0);
    check(cprkit_generation(w->ctx) == w->generation,
          "%s: still generation %llu", fault_name(f),
          (unsigned long long)w->generation);

    /* The work in flight landed and its interrupts are all here; then
     * fresh DMA and interrupts. */
    for (unsigned i = 0; i < w->nengines; i++) {
        struct blackout b = {0};

        w->engines[i].ops->finish_inflight(w, &w->engines[i], &b);
        w->engines[i].ops->serve(w, &w->engines[i], 1);
    }
    note("inject %s: update refused (%s); old binary still serving: %s",
         fault_name(f), err, report_failures() ? "FAILED" : "OK");
}

/* What the kernel calls an fd: "anon_inode:[eventfd]", "/dev/vfio/devices/
 * vfio0", ... */
static bool fd_is(int fd, const char *kind)
{
    char path[64], target[128];
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    n = readlink(path, target, sizeof(target) - 1);
    if (n < 0)
        return false;
    target[n] = '\0';
    return !strncmp(target, kind, strlen(kind));
}

/* The pair inject_swap_fds() swapped, swapped back before the rollback:
 * the previous binary must find its fds as it left them (this models a new
 * binary whose fds got mixed up, refused by the load; with nobody to undo
 * it, only the keeper, which keeps its own dups, would put them back). */
static int swapped[2] = {-1, -1};

static void swap_pair(int a, int b)
{
    int tmp = fcntl(a, F_DUPFD_CLOEXEC, 3);

    if (tmp < 0 || dup2(b, a) < 0 || dup2(tmp, b) < 0)
        fatal("swapping fds %d and %d: %s", a, b, strerror(errno));
    close(tmp);
}

void inject_swap_fds(struct workload *w)
{
    bool devices = w->acting_fault == FAULT_SWAPPED_DEVICES;
    int found[2], n = 0;

    /* Before the load the open fds are the preserved ones (and stdio):
     * the first two of the kind are the application's. */
    for (int fd = 3; fd < 1024 && n < 2; fd++)
        if (devices ? fd_is(fd, "anon_inode:[vfio-device]") ||
                          fd_is(fd, "/dev/vfio/devices/")
                    : fd_is(fd, "anon_inode:[eventfd]"))
            found[n++] = fd;
    if (n < 2)
        fatal("%s: fewer than two preserved fds to swap", fault_name(w->acting_fault));
    swap_pair(found[0], found[1]);
    swapped[0] = found[0];
    swapped[1] = found[1];
    note("faulty new binary: fds %d and %d swapped before the load",
         found[0], found[1]);
}

void inject_play_new_side(struct workload *w, int r)
{
    const char *err = cprkit_last_error(w->ctx);

    switch (w->acting_fault) {
    case FAULT_CORRUPT_BLOB:
        check(r == -EBADMSG && contains(err, "checksum"),
              "new binary detects the corrupted blob: %s", err);
        break;
    case FAULT_UNCLAIMED_EVENTFD:
        check(r == -EBUSY && contains(err, "eventfd"),
              "faulty new binary: commit refuses, listing the unclaimed "
              "eventfd: %s", err);
        break;
    case FAULT_UNCLAIMED_DEVICE:
        check(r == -EBUSY && contains(err, "device"),
              "faulty new binary: commit refuses, listing the unclaimed "
              "device: %s", err);
        break;
    case FAULT_SWAPPED_DEVICES:
        check(r == -ESTALE && (contains(err, "swapped or replaced") ||
                               contains(err, "another vfio-device")),
              "new binary with two device fds swapped: the load refuses: %s",
              err);
        break;
    case FAULT_SWAPPED_EVENTFDS:
        check(r == -ESTALE && contains(err, "another eventfd"),
              "new binary with two interrupt eventfds swapped: the load "
              "refuses: %s", err);
        break;
    default:
        fatal("%s is not a new-side fault", fault_name(w->acting_fault));
    }
    if (swapped[0] >= 0)
        swap_pair(swapped[0], swapped[1]);
    wl_rollback(w, err);
}

void inject_check_rollback(struct workload *w, enum fault f)
{
    static const char *const expected[] = {
        [FAULT_CORRUPT_BLOB] = "checksum",
        [FAULT_UNCLAIMED_EVENTFD] = "eventfd",
        [FAULT_UNCLAIMED_DEVICE] = "device",
        [FAULT_SWAPPED_DEVICES] = "device",
        [FAULT_SWAPPED_EVENTFDS] = "another eventfd",
        [FAULT_VETO] = "health check",
        [FAULT_CRASH_AFTER_LOAD] = "killed by SIGSEGV before commit",
        [FAULT_ABORT_MID_REMAP] = "killed by SIGABRT before commit",
        [FAULT_HANG] = "no commit within",
        [FAULT_EXIT_EARLY] = "exited with status 1 without loading the state",
    };
    const char *reason = cprkit_rollback_reason(w->ctx);

    if (f == FAULT_NONE && cprkit_is_restart(w->ctx)) {
        /* No injected fault: the keeper restarted us after the update's
         * new image died (ops-keeper: killed in the update window;
         * ops-keeper-faults: /bin/true). The operator's news, checked by
         * the test from cpr-exec's report; here: the old generation. */
        note("update rolled back without an injected fault (restarted by "
             "the keeper: %s)", reason);
        check(reason && *reason, "the keeper gave the rollback a cause");
        check(cprkit_generation(w->ctx) == w->st.updates_done,
              "generation after the keeper's rollback is the old one (%llu)",
              (unsigned long long)cprkit_generation(w->ctx));
        return;
    }
    /* Operator mode: an upgrade the operator asked for without a fault
     * may roll back too (a new binary that is no cprkit program, say);
     * that is the operator's news, not a failed check of this image. */
    if (w->control && f == FAULT_NONE) {
        note("update rolled back without an injected fault (%s: %s)",
             cprkit_is_restart(w->ctx) ? "restarted by the keeper"
                                       : "rolled back by the new binary",
             reason);
    } else {
        if (!check(fault_is_new_side(f), "rolled back only after an "
                   "injected fault (attempt: %s, reason: %s)", fault_name(f),
                   reason))
            return;
        check(contains(reason, expected[f]),
              "%s: old binary resumed by rollback, reason names it: %s",
              fault_name(f), reason);
    }
    /* The keeper, not the new binary, rolls back a binary that died. */
    if (fault_is_keeper_side(f))
        check(cprkit_is_restart(w->ctx) && reason &&
                  cprkit_restart_reason(w->ctx) &&
                  !strcmp(reason, cprkit_restart_reason(w->ctx)),
              "%s: restarted by the keeper as a rollback (restart reason: "
              "%s)", fault_name(f), cprkit_restart_reason(w->ctx));
    check(cprkit_generation(w->ctx) == w->st.updates_done,
          "%s: generation after rollback is the old one (%llu)",
          fault_name(f), (unsigned long long)cprkit_generation(w->ctx));
}
