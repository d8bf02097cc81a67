/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * live-counter — the non-VFIO demo of cprkit's exec hand-off.
 *
 * A "device" (a child process) keeps writing sequence numbers into a
 * shared memfd ("RAM") and signalling an eventfd ("interrupt") every 50 µs.
 * The program consumes the interrupts and checks the RAM, and while the
 * device keeps going it live-updates itself by exec'ing its own binary N
 * times. Each new image reclaims the memfd and the eventfd by name and
 * reports the blackout (from just before execve to the first interrupt it
 * handles) and the interrupts that arrived meanwhile. Then it tries two
 * updates that must not hurt: to a binary that does not exist (refused
 * before anything changes) and to a version that vetoes itself after
 * restore (rolled back: the previous binary takes over again). At the end
 * the device stops and every interrupt it raised must have been counted.
 *
 *   live-counter [--updates N]
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cprkit/cprkit.h"

#define RAM_SIZE 4096
#define DEVICE_PERIOD_NS 50000

/* Layout of the shared "RAM": the device's counters. */
struct ram {
    volatile uint64_t raised;  /* interrupts raised so far */
    volatile uint64_t last_seq; /* last sequence number written */
    volatile uint64_t stopped; /* device has stopped; raised is final */
};

/* What crosses exec besides the fds, as an application section. */
struct app_state {
    pid_t device_pid;
    int updates_left;
    int updates_total;
    uint64_t handled;    /* interrupts handled so far */
    int vetoed;          /* the veto demo was done */
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fail(cprkit_ctx *ctx, const char *what)
{
    fprintf(stderr, "live-counter: %s: %s\n", what,
            ctx ? cprkit_last_error(ctx) : strerror(errno));
    exit(1);
}

static void device_loop(struct ram *ram, int irq_fd)
{
    uint64_t one = 1;
    struct timespec period = {0, DEVICE_PERIOD_NS};
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

    /* The device must not outlive the program, nor hold its stdout open
     * (a test harness would wait for EOF forever). The parent's exec does
     * not count as its death: the process lives on. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (devnull >= 0) {
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
    }

    while (!ram->stopped) {
        ram->last_seq++;
        if (write(irq_fd, &one, sizeof(one)) == sizeof(one))
            ram->raised++;
        nanosleep(&period, NULL);
    }
    _exit(0);
}

/* Handles interrupts for about duration_ns; returns the first handling
 * time (for the blackout) and the count of the first read. */
static void serve(int irq_fd, struct app_state *st, uint64_t duration_ns,
                  uint64_t *first_ns, uint64_t *first_count)
{
    uint64_t end = now_ns() + duration_ns;
    bool first = true;

    while (now_ns() < end) {
        struct pollfd p = {.fd = irq_fd, .events = POLLIN};
        uint64_t count;

        if (poll(&p, 1, 10) <= 0)
            continue;
        if (read(irq_fd, &count, sizeof(count)) != sizeof(count))
            continue;
        if (first) {
            if (first_ns)
                *first_ns = now_ns();
            if (first_count)
                *first_count = count;
            first = false;
        }
        st->handled += count;
    }
}

static void save_and_exec(cprkit_ctx *ctx, int ram_fd, int irq_fd,
                          struct app_state *st, char **argv,
                          const char *binary, char *extra_arg)
{
    char *new_argv[] = {argv[0], extra_arg, NULL};

    if (cprkit_fd_save(ctx, "ram", 0, ram_fd) < 0 ||
        cprkit_fd_save(ctx, "irq", 0, irq_fd) < 0)
        fail(ctx, "save");
    if (cprkit_section_put(ctx, "app", st, sizeof(*st)) < 0)
        fail(ctx, "section");
    cprkit_exec(ctx, binary, new_argv, NULL);
}

int main(int argc, char **argv)
{
    struct app_state st = {0};
    cprkit_ctx *ctx;
    struct ram *ram;
    int ram_fd, irq_fd, r;
    bool veto_mode = argc > 1 && strcmp(argv[1], "--veto") == 0;
    char self_path[PATH_MAX];
    ssize_t n;

    setvbuf(stdout, NULL, _IOLBF, 0);
    /* The "new version" is this very binary, by its real path. */
    n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
    if (n < 0)
        fail(NULL, "readlink /proc/self/exe");
    self_path[n] = '\0';
    if (cprkit_new(&ctx) < 0)
        fail(NULL, "cprkit_new");
    r = cprkit_load_incoming(ctx);
    if (r < 0)
        fail(ctx, "loading the previous version's state");

    if (r == 0) {
        /* First start: create "RAM" and the "interrupt", start the device. */
        st.updates_total = st.updates_left =
            argc > 2 && strcmp(argv[1], "--updates") == 0 ? atoi(argv[2]) : 5;
        ram_fd = memfd_create("demo-ram", MFD_CLOEXEC);
        irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (ram_fd < 0 || irq_fd < 0 || ftruncate(ram_fd, RAM_SIZE) < 0)
            fail(NULL, "resources");
        ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd, 0);
        if (ram == MAP_FAILED)
            fail(NULL, "mmap");
        st.device_pid = fork();
        if (st.device_pid == 0)
            device_loop(ram, irq_fd);
        printf("generation 0 (pid %d): device started, raising an interrupt "
               "every %d us\n",
               getpid(), DEVICE_PERIOD_NS / 1000);
        serve(irq_fd, &st, 200000000, NULL, NULL);
    } else {
        const void *data;
        size_t size;
        uint64_t first_ns = 0, first_count = 0;
        uint64_t exec_ns = cprkit_timestamp(ctx, "exec");

        /* New image: everything comes back by name, nothing is reopened. */
        ram_fd = cprkit_fd_find(ctx, "ram", 0, CPRKIT_FD_MEMFD);
        irq_fd = cprkit_fd_find(ctx, "irq", 0, CPRKIT_FD_EVENTFD);
        if (ram_fd < 0 || irq_fd < 0 ||
            cprkit_section_get(ctx, "app", &data, &size) < 0 ||
            size != sizeof(st))
            fail(ctx, "reclaiming state");
        memcpy(&st, data, sizeof(st));
        ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd, 0);
        if (ram == MAP_FAILED)
            fail(NULL, "mmap");

        if (cprkit_is_rollback(ctx)) {
            printf("  rolled back to the previous binary (pid %d): %s\n",
                   getpid(), cprkit_rollback_reason(ctx));
        } else if (veto_mode) {
            /* This "new version" fails its health check before commit. */
            printf("  new version (pid %d) restored, then vetoes itself: "
                   "health check failed\n",
                   getpid());
            cprkit_rollback(ctx, "health check failed in the new version");
            fail(ctx, "rollback");
        }
        serve(irq_fd, &st, 1000000, &first_ns, &first_count);
        if (cprkit_commit(ctx) < 0)
            fail(ctx, "commit");
        if (!cprkit_is_rollback(ctx))
            printf("update %d (pid %d, generation %" PRIu64 "): blackout "
                   "%.3f ms (state written, execve, restore, first interrupt "
                   "handled), %" PRIu64
                   " interrupt(s) raised meanwhile were waiting in the "
                   "eventfd\n",
                   st.updates_total - st.updates_left, getpid(),
                   cprkit_generation(ctx), (first_ns - exec_ns) / 1e6,
                   first_count);
        serve(irq_fd, &st, 100000000, NULL, NULL);
    }

    if (st.updates_left > 0) {
        st.updates_left--;
        save_and_exec(ctx, ram_fd, irq_fd, &st, argv, self_path, NULL);
        fail(ctx, "exec");
    }
    if (!st.vetoed) {
        /* An update to a binary that is not there: refused up front. */
        char *bad_argv[] = {"missing", NULL};

        r = cprkit_exec(ctx, "/nonexistent/live-counter-v2", bad_argv, NULL);
        printf("update to a missing binary refused (%s); still serving, "
               "pid %d\n",
               cprkit_last_error(ctx), getpid());
        serve(irq_fd, &st, 50000000, NULL, NULL);
        /* An update whose new version vetoes itself: rolled back. */
        st.vetoed = 1;
        save_and_exec(ctx, ram_fd, irq_fd, &st, argv, self_path, "--veto");
        fail(ctx, "exec");
    }

    /* Stop the device and account for every interrupt it raised. */
    ram->stopped = 1;
    waitpid(st.device_pid, NULL, 0);
    serve(irq_fd, &st, 20000000, NULL, NULL);
    printf("device stopped: raised %" PRIu64 " interrupts, handled %" PRIu64
           " across %d updates and 1 rollback: %s\n",
           (uint64_t)ram->raised, st.handled, st.updates_total,
           ram->raised == st.handled ? "none lost" : "LOST INTERRUPTS");
    cprkit_free(ctx);
    return ram->raised == st.handled ? 0 : 1;
}
