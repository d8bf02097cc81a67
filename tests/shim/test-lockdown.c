/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cprkit_lockdown() observed from inside, in forked children (a filter and
 * dropped capabilities cannot be undone): the denied VFIO ioctls fail with
 * EPERM — seccomp looks at the request number before any driver does, so
 * an eventfd stands in for a VFIO fd on the host — also with high bits set
 * in the request; other ioctls still reach the driver; VFIO_DEVICE_FEATURE
 * is denied only on request; execve still works and the next image keeps
 * only the capabilities asked for. The same paths on a real device:
 * tests/vm/guest/vfio-lockdown.c.
 */
#include <linux/capability.h>
#include <linux/vfio.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>

#include "control-internal.h"
#include "shim-test-util.h"

/* Capability mask "CapEff:"-style field of /proc/self/status. */
static uint64_t status_caps(const char *field)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;

    g_assert_true(g_file_get_contents("/proc/self/status", &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
    for (char **l = lines; *l; l++)
        if (g_str_has_prefix(*l, field))
            return g_ascii_strtoull(*l + strlen(field), NULL, 16);
    g_assert_not_reached();
}

/* Runs fn in a child; returns its exit status (fn's return value). */
static int in_child(int (*fn)(void))
{
    int status;
    pid_t pid = fork();

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0)
        _exit(fn());
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static int ioctl_errno(int fd, unsigned long request)
{
    if (ioctl(fd, request, 0) == 0)
        return 0;
    return errno;
}

/* Without a filter the driver answers: ENOTTY for a VFIO ioctl on an
 * eventfd. */
static int child_baseline(void)
{
    int fd = eventfd(0, EFD_CLOEXEC);

    return ioctl_errno(fd, VFIO_DEVICE_RESET) == ENOTTY ? 0 : 1;
}

static int child_seccomp(void)
{
    cprkit_ctx *ctx;
    int fd = eventfd(0, EFD_CLOEXEC);

    int r;

    if (cprkit_new(&ctx) < 0)
        return 10;
    r = cprkit_lockdown(ctx, CPRKIT_LOCKDOWN_SECCOMP, 0);
    cprkit_free(ctx);
    /* valgrind does not implement the seccomp syscall. */
    if (r == -EOPNOTSUPP || r == -ENOSYS)
        return 77;
    if (r < 0)
        return 11;
    for (size_t i = 0; i < lockdown_n_denied_ioctls; i++) {
        if (ioctl_errno(fd, lockdown_denied_ioctls[i]) != EPERM)
            return 20 + (int)i;
        /* The kernel ignores the upper 32 bits of the request; so must
         * the filter, or they would be a way around it. */
        if (ioctl_errno(fd, lockdown_denied_ioctls[i] | (1ul << 32)) != EPERM)
            return 40 + (int)i;
    }
    /* Everything else reaches the driver (and fails there). */
    if (ioctl_errno(fd, VFIO_DEVICE_GET_INFO) != ENOTTY)
        return 60;
    if (ioctl_errno(fd, VFIO_IOMMU_MAP_DMA) != ENOTTY)
        return 61;
    if (ioctl_errno(fd, VFIO_IOMMU_UNMAP_DMA) != ENOTTY)
        return 62;
    if (ioctl_errno(fd, VFIO_DEVICE_SET_IRQS) != ENOTTY)
        return 63;
    /* Only with CPRKIT_LOCKDOWN_DEVICE_FEATURE. */
    if (ioctl_errno(fd, VFIO_DEVICE_FEATURE) != ENOTTY)
        return 64;
    /* Still the filter after exec, and exec itself is allowed: the shell
     * sees Seccomp: 2 and NoNewPrivs: 1. */
    execl("/bin/sh", "sh", "-c",
          "grep -q '^Seccomp:[[:space:]]*2' /proc/self/status && "
          "grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status && exit 7",
          (char *)NULL);
    return 70;
}

/* CPRKIT_LOCKDOWN_DEVICE_FEATURE adds VFIO_DEVICE_FEATURE to the filter;
 * alone, it is the only request denied. */
static int device_feature_denied(unsigned flags)
{
    cprkit_ctx *ctx;
    int fd = eventfd(0, EFD_CLOEXEC);
    int r;

    if (cprkit_new(&ctx) < 0)
        return 10;
    r = cprkit_lockdown(ctx, flags, 0);
    cprkit_free(ctx);
    if (r == -EOPNOTSUPP || r == -ENOSYS)
        return 77;
    if (r < 0)
        return 11;
    if (ioctl_errno(fd, VFIO_DEVICE_FEATURE) != EPERM)
        return 20;
    if (ioctl_errno(fd, VFIO_DEVICE_FEATURE | (1ul << 32)) != EPERM)
        return 21;
    /* The same number as type1's dirty-page tracking: denied too. */
    if (ioctl_errno(fd, VFIO_IOMMU_DIRTY_PAGES) != EPERM)
        return 22;
    if (ioctl_errno(fd, VFIO_DEVICE_RESET) !=
        (flags & CPRKIT_LOCKDOWN_SECCOMP ? EPERM : ENOTTY))
        return 23;
    if (ioctl_errno(fd, VFIO_IOMMU_MAP_DMA) != ENOTTY)
        return 24;
    return 7;
}

static int child_device_feature_alone(void)
{
    return device_feature_denied(CPRKIT_LOCKDOWN_DEVICE_FEATURE);
}

static int child_device_feature_and_seccomp(void)
{
    return device_feature_denied(CPRKIT_LOCKDOWN_SECCOMP |
                                 CPRKIT_LOCKDOWN_DEVICE_FEATURE);
}

static int child_caps(void)
{
    const uint64_t keep = UINT64_C(1) << CAP_IPC_LOCK;
    cprkit_ctx *ctx;

    if (cprkit_new(&ctx) < 0 ||
        cprkit_lockdown(ctx, CPRKIT_LOCKDOWN_CAPS, keep) < 0)
        return 10;
    cprkit_free(ctx);
    if (status_caps("CapEff:") != keep || status_caps("CapPrm:") != keep)
        return 11;
    if (status_caps("CapBnd:") != keep)
        return 12;
    /* What an update would do: exec as root, which gets the bounding set
     * and no more. */
    execl("/bin/sh", "sh", "-c",
          "grep -q '^CapEff:[[:space:]]*0000000000004000' /proc/self/status "
          "&& exit 7",
          (char *)NULL);
    return 70;
}

static int child_bad_flags(void)
{
    cprkit_ctx *ctx;

    if (cprkit_new(&ctx) < 0)
        return 10;
    if (cprkit_lockdown(ctx, 1u << 7, 0) != -EINVAL)
        return 11;
    cprkit_free(ctx);
    return 0;
}

static void test_baseline(void)
{
    g_assert_cmpint(in_child(child_baseline), ==, 0);
}

static void test_seccomp(void)
{
    int r = in_child(child_seccomp);

    if (r == 77 && g_getenv("LD_PRELOAD") &&
        strstr(g_getenv("LD_PRELOAD"), "valgrind")) {
        g_test_skip("valgrind does not implement seccomp()");
        return;
    }
    g_assert_cmpint(r, ==, 7);
}

static void test_device_feature(void)
{
    int r = in_child(child_device_feature_alone);

    if (r == 77 && g_getenv("LD_PRELOAD") &&
        strstr(g_getenv("LD_PRELOAD"), "valgrind")) {
        g_test_skip("valgrind does not implement seccomp()");
        return;
    }
    g_assert_cmpint(r, ==, 7);
    g_assert_cmpint(in_child(child_device_feature_and_seccomp), ==, 7);
}

static void test_caps(void)
{
    if (geteuid() != 0 || status_caps("CapEff:") == 0) {
        g_test_skip("needs root with capabilities");
        return;
    }
    g_assert_cmpint(in_child(child_caps), ==, 7);
}

static void test_bad_flags(void)
{
    g_assert_cmpint(in_child(child_bad_flags), ==, 0);
}

/* A process under lockdown still live-updates: cprtest-app --lockdown
 * applies both, then an upgrade to itself commits. */
static void test_update_under_lockdown(void)
{
    struct app a;
    struct cmd_result r;
    g_autoptr(JsonParser) p = NULL;
    JsonObject *o;

    app_start(&a, (const char *const[]){"--lockdown", NULL});
    r = CPR_EXEC("upgrade", "--json", "--socket", a.socket, "--to",
                 g_getenv("CPRTEST_APP"));
    g_assert_cmpint(r.code, ==, 0);
    o = parse_object(r.out, &p);
    g_assert_cmpstr(json_object_get_string_member(o, "result"), ==,
                    "committed");
    cmd_result_clear(&r);
    r = CPR_EXEC("check", "--json", "--socket", a.socket);
    g_assert_cmpint(r.code, ==, 0);
    g_assert_nonnull(strstr(r.out, "\"mode\":\"filter\""));
    cmd_result_clear(&r);
    app_stop(&a, true);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);
    g_test_add_func("/lockdown/baseline", test_baseline);
    g_test_add_func("/lockdown/seccomp", test_seccomp);
    g_test_add_func("/lockdown/device-feature", test_device_feature);
    g_test_add_func("/lockdown/caps", test_caps);
    g_test_add_func("/lockdown/bad-flags", test_bad_flags);
    g_test_add_func("/lockdown/update-under-lockdown",
                    test_update_under_lockdown);
    return g_test_run();
}
