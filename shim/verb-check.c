/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cpr-exec check [--socket S] [--to BINARY]
 *
 * Pre-flight for an update. Without a process: what the kernel says
 * (VFIO type1, UNMAP_ALL; UPDATE_VADDR is only answered for a container
 * with a group attached, so it is reported as unknown), this user's memlock
 * limit and seccomp mode. With --socket: the process's own blockers
 * (cprkit_check_update(): containers' UPDATE_VADDR, mappings, memlock
 * against its pinned memory, seccomp and execve), its limits and seccomp
 * mode. With --to: whether BINARY reads the state format the process
 * writes (cpr/binary-probe.c: ELF headers and the objects ld.so would
 * load, read, never run). With a process, the process's own verdict counts
 * (it probes in its environment); without, this one's.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "control-internal.h"
#include "cprkit-internal.h"
#include "cpr-exec.h"

static void add_kernel(JsonBuilder *b)
{
    int fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);

    json_builder_set_member_name(b, "kernel");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "vfio");
    json_builder_add_boolean_value(b, fd >= 0);
    if (fd < 0) {
        g_autofree char *msg =
            g_strdup_printf("/dev/vfio/vfio: %s", g_strerror(errno));
        json_builder_set_member_name(b, "error");
        json_builder_add_string_value(b, msg);
    } else {
        json_builder_set_member_name(b, "api_version");
        json_builder_add_int_value(b, ioctl(fd, VFIO_GET_API_VERSION));
        json_builder_set_member_name(b, "type1v2");
        json_builder_add_boolean_value(
            b, ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) > 0);
        json_builder_set_member_name(b, "unmap_all");
        json_builder_add_boolean_value(
            b, ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL) > 0);
        /* type1 answers UPDATE_VADDR only for a container with an IOMMU
         * set, which needs a group: unknown here. */
        json_builder_set_member_name(b, "update_vaddr");
        json_builder_add_null_value(b);
        json_builder_set_member_name(b, "update_vaddr_note");
        json_builder_add_string_value(
            b, "known only for a container with a group attached "
               "(VFIO_SET_IOMMU); check a running process with --socket");
        close(fd);
    }
    json_builder_end_object(b);
}

/* "Seccomp:" and "NoNewPrivs:" of /proc/PID/status. */
static void add_seccomp(JsonBuilder *b, int pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/status", pid);
    g_autofree char *text = NULL;
    gint64 mode = -1, nnp = -1;

    if (g_file_get_contents(path, &text, NULL, NULL)) {
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

        for (char **l = lines; *l; l++) {
            if (g_str_has_prefix(*l, "Seccomp:"))
                mode = g_ascii_strtoll(*l + 8, NULL, 10);
            else if (g_str_has_prefix(*l, "NoNewPrivs:"))
                nnp = g_ascii_strtoll(*l + 11, NULL, 10);
        }
    }
    json_builder_set_member_name(b, "seccomp");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "pid");
    json_builder_add_int_value(b, pid);
    json_builder_set_member_name(b, "mode");
    json_builder_add_string_value(b, mode == 0   ? "disabled"
                                     : mode == 1 ? "strict"
                                     : mode == 2 ? "filter"
                                                 : "unknown");
    json_builder_set_member_name(b, "no_new_privs");
    json_builder_add_boolean_value(b, nnp == 1);
    json_builder_set_member_name(b, "note");
    json_builder_add_string_value(
        b, mode == 2 ? "a filter is installed; whether it allows execve is "
                       "probed by the process itself (--socket)"
           : mode == 1 ? "strict mode: execve is impossible, no update"
                       : "no filter");
    json_builder_end_object(b);
}

static gint64 limit_value(rlim_t v)
{
    return v == RLIM_INFINITY ? -1 : (gint64)v;
}

int verb_check(int argc, char **argv)
{
    g_autofree char *arg_socket = NULL;
    g_autofree char *arg_to = NULL;
    gboolean arg_json = false;
    int arg_timeout = 10;
    GOptionEntry entries[] = {
        {"socket", 'S', 0, G_OPTION_ARG_FILENAME, &arg_socket,
         "Check the running process behind this control socket", "PATH"},
        {"to", 't', 0, G_OPTION_ARG_FILENAME, &arg_to,
         "The binary an update would exec", "BINARY"},
        {"timeout", 'T', 0, G_OPTION_ARG_INT, &arg_timeout,
         "Seconds to wait (default 10)", "SECONDS"},
        {"json", 'j', 0, G_OPTION_ARG_NONE, &arg_json, "Print JSON", NULL},
        {"verbose", 'v', 0, G_OPTION_ARG_NONE, &arg_verbose, "Debug output",
         NULL},
        {NULL},
    };
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) root = NULL;
    g_autoptr(JsonNode) reply = NULL;
    g_autoptr(GPtrArray) blockers = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *binary = NULL;
    gint64 writer_major = CPRKIT_BUILD_FORMAT_MAJOR;
    struct binary_probe probe = {0};
    bool reads = false;
    int pid = getpid();
    struct rlimit rl = {0};
    int code = EXIT_OK;

    if (!parse_verb_options("check", "",
                            "Pre-flight checks for an update: kernel "
                            "support, blockers, memlock,\nseccomp, and "
                            "whether the new binary reads the current state "
                            "format.",
                            entries, &argc, &argv))
        return EXIT_USAGE;
    if (argc > 1 || arg_timeout <= 0) {
        log_msg(LOG_ERR, "check: unexpected arguments");
        return EXIT_USAGE;
    }
    if (!arg_socket && getenv("CPRKIT_CONTROL_SOCKET"))
        arg_socket = g_strdup(getenv("CPRKIT_CONTROL_SOCKET"));
    if (arg_to)
        binary = g_canonicalize_filename(arg_to, NULL);

    json_builder_begin_object(b);
    add_kernel(b);

    if (arg_socket) {
        JsonObject *req = json_object_new();
        const char *error = NULL;
        JsonObject *o;
        int r;

        json_object_set_string_member(req, "cmd", "check");
        if (binary)
            json_object_set_string_member(req, "binary", binary);
        r = conn_call(arg_socket, req, arg_timeout, &reply, &error);
        json_object_unref(req);
        if (r < 0)
            return call_failed(arg_json, "check", arg_socket, r, error);
        o = json_node_get_object(reply);
        pid = (int)json_get_int(o, "pid", pid);
        writer_major = json_get_int(o, "format_major", writer_major);
        if (!json_get_bool(o, "ok", false))
            g_ptr_array_add(blockers,
                            g_strdup(reply_error_desc(o)
                                         ? reply_error_desc(o)
                                         : "the process refused the check"));
        json_builder_set_member_name(b, "process");
        json_builder_add_value(b, json_node_copy(reply));
    } else {
        getrlimit(RLIMIT_MEMLOCK, &rl);
        json_builder_set_member_name(b, "memlock");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "soft");
        json_builder_add_int_value(b, limit_value(rl.rlim_cur));
        json_builder_set_member_name(b, "hard");
        json_builder_add_int_value(b, limit_value(rl.rlim_max));
        json_builder_end_object(b);
    }
    add_seccomp(b, pid);

    if (binary) {
        g_autofree char *error = NULL;

        /* The probe the process runs in its own blockers, run here for
         * the target's details; with a process, its verdict (in its
         * environment: LD_LIBRARY_PATH, LD_PRELOAD) is the one that
         * counts, and it is already among the blockers. */
        if (!reply && access(binary, X_OK) < 0)
            error = g_strdup_printf("new binary '%s': %s", binary,
                                    g_strerror(errno));
        else if (binary_probe_check(binary, &probe, &error) >= 0)
            g_clear_pointer(&error, g_free);
        if (error && !reply)
            g_ptr_array_add(blockers, g_steal_pointer(&error));
        for (guint i = 0; probe.formats && i < probe.formats->len; i++)
            reads |= g_array_index(probe.formats, int64_t, i) == writer_major;
        json_builder_set_member_name(b, "target");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "binary");
        json_builder_add_string_value(b, binary);
        json_builder_set_member_name(b, "cprkit");
        if (probe.reader)
            json_builder_add_string_value(b, probe.reader);
        else
            json_builder_add_null_value(b);
        json_builder_set_member_name(b, "reads_formats");
        json_builder_begin_array(b);
        for (guint i = 0; probe.formats && i < probe.formats->len; i++)
            json_builder_add_int_value(
                b, g_array_index(probe.formats, int64_t, i));
        json_builder_end_array(b);
        json_builder_set_member_name(b, "state_format");
        json_builder_add_int_value(b, writer_major);
        json_builder_set_member_name(b, "compatible");
        json_builder_add_boolean_value(b, reads);
        json_builder_end_object(b);
    }

    binary_probe_clear(&probe);
    json_builder_set_member_name(b, "blockers");
    json_builder_begin_array(b);
    for (guint i = 0; i < blockers->len; i++)
        json_builder_add_string_value(b, g_ptr_array_index(blockers, i));
    json_builder_end_array(b);
    json_builder_set_member_name(b, "ok");
    json_builder_add_boolean_value(b, blockers->len == 0);
    if (blockers->len)
        code = EXIT_FAILED;
    json_builder_set_member_name(b, "exit_code");
    json_builder_add_int_value(b, code);
    json_builder_end_object(b);
    root = json_builder_get_root(b);

    if (arg_json) {
        print_json(root, false);
    } else {
        JsonObject *o = json_node_get_object(root);
        JsonObject *k = json_get_object(o, "kernel");

        if (json_get_bool(k, "vfio", false))
            printf("kernel: VFIO API %" G_GINT64_FORMAT ", type1v2 %s, "
                   "UNMAP_ALL %s, UPDATE_VADDR unknown without a group\n",
                   json_get_int(k, "api_version", -1),
                   json_get_bool(k, "type1v2", false) ? "yes" : "no",
                   json_get_bool(k, "unmap_all", false) ? "yes" : "no");
        else
            printf("kernel: no VFIO (%s)\n", json_get_string(k, "error"));
        if (reply)
            printf("process: %s\n",
                   json_get_bool(json_node_get_object(reply), "ok", false)
                       ? "no blockers"
                       : "blocked");
        for (guint i = 0; i < blockers->len; i++)
            printf("blocker: %s\n", (char *)g_ptr_array_index(blockers, i));
        printf("%s\n", blockers->len ? "update would fail" : "ok");
    }
    return code;
}
