/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cpr-exec — run, upgrade, inspect and check programs that live-update with
 * cprkit. Talks to a program's control endpoint (cprkit_control_listen())
 * over a UNIX socket with JSON lines; see docs/operations.md and
 * cpr-exec(1).
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "cpr-exec.h"
#include "cprkit-internal.h"

bool arg_verbose;

/* stderr goes to the journal when JOURNAL_STREAM names it (systemd sets
 * it for services): then "<N>" prefixes carry the priority. */
static bool stderr_is_journal(void)
{
    static int cached = -1;
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long dev, ino;
    struct stat st;

    if (cached >= 0)
        return cached;
    cached = e && sscanf(e, "%lu:%lu", &dev, &ino) == 2 &&
             fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev &&
             st.st_ino == ino;
    return cached;
}

/* The highest priority printed: LOG_DEBUG with --verbose, else the
 * operator's CPRKIT_LOG (as for libcprkit), else LOG_INFO. Warnings and
 * errors are always printed: they are this command's answer. */
static int log_max_priority(void)
{
    static int from_env = -2;

    if (arg_verbose)
        return LOG_DEBUG;
    if (from_env == -2)
        from_env = log_priority_parse(getenv(CPRKIT_LOG_ENV));
    return from_env >= 0 ? MAX(from_env, LOG_WARNING) : LOG_INFO;
}

void log_msg(int priority, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    if (priority > log_max_priority())
        return;
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (stderr_is_journal())
        fprintf(stderr, "<%d>%s\n", priority, msg);
    else
        fprintf(stderr, "cpr-exec: %s%s\n",
                priority <= LOG_ERR       ? "error: "
                : priority == LOG_WARNING ? "warning: "
                                          : "",
                msg);
}

bool parse_verb_options(const char *verb, const char *param,
                        const char *summary, GOptionEntry *entries, int *argc,
                        char ***argv)
{
    g_autofree char *prgname = g_strdup_printf("cpr-exec %s", verb);
    g_autoptr(GOptionContext) oc = g_option_context_new(param);
    g_autoptr(GError) error = NULL;

    g_set_prgname(prgname);
    g_option_context_set_summary(oc, summary);
    g_option_context_set_description(
        oc, "Exit status: 0 committed / done, 1 failed (nothing changed), "
            "2 usage,\n3 rolled back (old version serving), 4 timeout, "
            "5 cannot reach the process.\nSee cpr-exec(1) and "
            "docs/operations.md.");
    g_option_context_add_main_entries(oc, entries, NULL);
    if (!g_option_context_parse(oc, argc, argv, &error)) {
        log_msg(LOG_ERR, "%s: %s (try 'cpr-exec %s --help')", verb,
                error->message, verb);
        return false;
    }
    return true;
}

const char *socket_path_or_env(const char *arg)
{
    const char *p = arg ? arg : getenv("CPRKIT_CONTROL_SOCKET");

    return p && *p ? p : NULL;
}

/* ---- connection ---------------------------------------------------------- */

int conn_open(const char *path, struct control_conn *ret)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int r = -errno;

        close(fd);
        return r;
    }
    ret->fd = fd;
    ret->buf = g_string_new(NULL);
    return 0;
}

void conn_close(struct control_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->buf)
        g_string_free(c->buf, true);
    c->buf = NULL;
}

int conn_send(struct control_conn *c, JsonNode *request)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree char *text = NULL;
    g_autofree char *line = NULL;
    size_t off = 0, len;

    json_generator_set_root(gen, request);
    text = json_generator_to_data(gen, NULL);
    line = g_strconcat(text, "\n", NULL);
    len = strlen(line);
    while (off < len) {
        ssize_t n = send(c->fd, line + off, len - off, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        /* EPIPE/ECONNRESET: the server may have refused us (uid check,
         * busy) and closed, with its reason already in our receive
         * buffer: the caller reads that instead of giving up. */
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            return 0;
        if (n < 0)
            return -errno;
        off += (size_t)n;
    }
    return 0;
}

int conn_read(struct control_conn *c, int64_t deadline, JsonNode **ret)
{
    for (;;) {
        char *nl = memchr(c->buf->str, '\n', c->buf->len);

        if (nl) {
            g_autoptr(JsonParser) parser = json_parser_new();
            size_t len = (size_t)(nl - c->buf->str);
            g_autofree char *line = g_strndup(c->buf->str, len);
            JsonNode *root;

            g_string_erase(c->buf, 0, (gssize)len + 1);
            log_msg(LOG_DEBUG, "<- %s", line);
            if (!json_parser_load_from_data(parser, line, (gssize)len, NULL))
                return -EBADMSG;
            root = json_parser_get_root(parser);
            if (!root || !JSON_NODE_HOLDS_OBJECT(root))
                return -EBADMSG;
            *ret = json_node_copy(root);
            return 0;
        }

        int64_t now = g_get_monotonic_time();
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        char chunk[65536];
        ssize_t n;
        int r;

        if (now >= deadline)
            return -ETIMEDOUT;
        r = poll(&p, 1, (int)MIN((deadline - now + 999) / 1000, 1000 * 60));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            continue;
        n = recv(c->fd, chunk, sizeof(chunk), 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return -ECONNRESET;
        g_string_append_len(c->buf, chunk, n);
    }
}

int conn_call(const char *path, JsonObject *request, int timeout_s,
              JsonNode **ret, const char **ret_error)
{
    struct control_conn c = {.fd = -1};
    g_autoptr(JsonNode) req = json_node_new(JSON_NODE_OBJECT);
    int64_t deadline = g_get_monotonic_time() + (int64_t)timeout_s * G_USEC_PER_SEC;
    int r;

    json_node_set_object(req, request);
    r = conn_open(path, &c);
    if (r < 0) {
        *ret_error = "cannot connect to the control socket";
        return r;
    }
    r = conn_send(&c, req);
    while (r >= 0) {
        JsonNode *reply = NULL;

        r = conn_read(&c, deadline, &reply);
        if (r < 0)
            break;
        /* Progress events have no "ok"; the final reply has. */
        if (json_object_has_member(json_node_get_object(reply), "ok")) {
            *ret = reply;
            conn_close(&c);
            return 0;
        }
        json_node_unref(reply);
    }
    conn_close(&c);
    *ret_error = r == -ETIMEDOUT    ? "no reply in time"
                 : r == -EBADMSG    ? "the reply is not a JSON object"
                 : r == -ECONNRESET ? "the process closed the connection"
                                    : "cannot talk to the process";
    return r;
}

/* The member of o if it is a value of that type (a reply is not trusted
 * to have the types the protocol says), else NULL. */
static JsonNode *json_member_of_type(JsonObject *o, const char *member,
                                     GType type)
{
    JsonNode *n = o ? json_object_get_member(o, member) : NULL;

    return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == type
               ? n
               : NULL;
}

const char *json_get_string(JsonObject *o, const char *member)
{
    JsonNode *n = json_member_of_type(o, member, G_TYPE_STRING);

    return n ? json_node_get_string(n) : NULL;
}

gint64 json_get_int(JsonObject *o, const char *member, gint64 fallback)
{
    JsonNode *n = json_member_of_type(o, member, G_TYPE_INT64);

    return n ? json_node_get_int(n) : fallback;
}

gboolean json_get_bool(JsonObject *o, const char *member, gboolean fallback)
{
    JsonNode *n = json_member_of_type(o, member, G_TYPE_BOOLEAN);

    return n ? json_node_get_boolean(n) : fallback;
}

JsonObject *json_get_object(JsonObject *o, const char *member)
{
    JsonNode *n = o ? json_object_get_member(o, member) : NULL;

    return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

JsonArray *json_get_array(JsonObject *o, const char *member)
{
    JsonNode *n = o ? json_object_get_member(o, member) : NULL;

    return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

JsonObject *json_array_object(JsonArray *a, guint i)
{
    JsonNode *n = a && i < json_array_get_length(a)
                      ? json_array_get_element(a, i)
                      : NULL;

    return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

const char *reply_error_class(JsonObject *o)
{
    return json_get_string(json_get_object(o, "error"), "class");
}

const char *reply_error_desc(JsonObject *o)
{
    return json_get_string(json_get_object(o, "error"), "desc");
}

void set_reply_error(JsonObject *o, const char *error_class, const char *desc)
{
    JsonObject *e = json_object_new();

    json_object_set_string_member(e, "class", error_class);
    json_object_set_string_member(e, "desc", desc);
    json_object_set_object_member(o, "error", e);
}

JsonNode *local_result(const char *result, const char *error)
{
    JsonNode *root = json_node_new(JSON_NODE_OBJECT);
    JsonObject *o = json_object_new();

    json_object_set_boolean_member(o, "ok", false);
    json_object_set_string_member(o, "result", result);
    set_reply_error(o,
                    !strcmp(result, "timeout")           ? "Timeout"
                    : !strcmp(result, "connection-lost") ? "ConnectionLost"
                                                         : "BadReply",
                    error);
    json_node_take_object(root, o);
    return root;
}

int report_failure(bool json, int code, const char *result, const char *fmt,
                   ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    log_msg(LOG_ERR, "%s", msg);
    if (json) {
        g_autoptr(JsonNode) root = local_result(result, msg);

        json_object_set_int_member(json_node_get_object(root), "exit_code",
                                   code);
        print_json(root, false);
    }
    return code;
}

int call_failed(bool json, const char *verb, const char *socket, int r,
                const char *error)
{
    return report_failure(json, r == -ETIMEDOUT ? EXIT_TIMEOUT : EXIT_COMM,
                          r == -ETIMEDOUT ? "timeout" : "connection-lost",
                          "%s: %s: %s (%s)", verb, socket, error,
                          strerror(-r));
}

void print_json(JsonNode *node, bool pretty)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree char *text = NULL;

    json_generator_set_pretty(gen, pretty);
    json_generator_set_root(gen, node);
    text = json_generator_to_data(gen, NULL);
    printf("%s\n", text);
    fflush(stdout);
}

/* ---- main ------------------------------------------------------------------ */

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} verbs[] = {
    {"run", verb_run, "run a program with a control socket"},
    {"upgrade", verb_upgrade, "live-update a running program to a new binary"},
    {"status", verb_status, "version, generation, preserved fds, last update"},
    {"inspect", verb_inspect, "decode a state blob (file or running process) "
                              "to JSON"},
    {"check", verb_check, "pre-flight checks for an update"},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: cpr-exec VERB [OPTIONS]\n\n"
               "Live update of programs that link libcprkit.\n\nVerbs:\n");
    for (size_t i = 0; i < G_N_ELEMENTS(verbs); i++)
        fprintf(f, "  %-8s  %s\n", verbs[i].name, verbs[i].help);
    fprintf(f, "\n'cpr-exec VERB --help' for the options of a verb.\n"
               "Exit status: 0 committed / done, 1 failed (nothing changed), "
               "2 usage,\n3 rolled back (old version serving), 4 timeout, "
               "5 cannot reach the process.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("cpr-exec %s\n", PROJECT_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(verbs); i++)
        if (strcmp(argv[1], verbs[i].name) == 0)
            return verbs[i].fn(argc - 1, argv + 1);
    log_msg(LOG_ERR, "unknown verb '%s'", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
