/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Which state formats a binary reads once exec'd, found without running
 * it: a blocker of every update (cprkit_check_update) and the answer of
 * `cpr-exec check --to`. Exec'ing a script, /bin/true or a program built
 * without cprkit would lose the process with its devices, so the update
 * must be refused while nothing has changed.
 *
 * Every blob reader embeds "CPRKIT-FORMAT-READS=<major>;" (cpr/blob.c).
 * The markers are looked for where the dynamic loader would find the
 * reader: the LD_PRELOAD objects (the preload shim), every libcprkit* in
 * the binary's DT_NEEDED tree — resolved as ld.so does (DT_RPATH,
 * LD_LIBRARY_PATH, DT_RUNPATH, /etc/ld.so.cache, the default directories)
 * by reading ELF headers only, never by running ld.so or ldd — and last the
 * binary itself (cprkit linked statically).
 */
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cprkit-internal.h"

/* Debian's multiarch directory of this architecture, searched by ld.so
 * after its cache. */
#if defined(__x86_64__)
#define CPRKIT_MULTIARCH "x86_64-linux-gnu"
#elif defined(__aarch64__)
#define CPRKIT_MULTIARCH "aarch64-linux-gnu"
#elif defined(__i386__)
#define CPRKIT_MULTIARCH "i386-linux-gnu"
#else
#define CPRKIT_MULTIARCH "."
#endif

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define PROBE_NATIVE_DATA ELFDATA2LSB
#else
#define PROBE_NATIVE_DATA ELFDATA2MSB
#endif

/* Bounds against hostile or broken files: a program loads far fewer
 * objects, and its headers and dynamic strings are far smaller. */
#define PROBE_MAX_OBJECTS 1024
#define PROBE_MAX_PHDRS 256
#define PROBE_MAX_DYNAMIC (1u << 20)
#define PROBE_MAX_STRTAB (4u << 20)
#define PROBE_LD_CACHE_MAX (64u << 20)

/* The ELF header, program headers and dynamic section of one object. */
struct elf_object {
    char *path;
    bool is_dynamic; /* has PT_INTERP: ld.so loads it (and LD_PRELOAD) */
    GPtrArray *needed;
    char *rpath;
    char *runpath;
};

static void elf_object_free(struct elf_object *o)
{
    if (!o)
        return;
    g_free(o->path);
    if (o->needed)
        g_ptr_array_unref(o->needed);
    g_free(o->rpath);
    g_free(o->runpath);
    g_free(o);
}
typedef struct elf_object elf_object;
G_DEFINE_AUTOPTR_CLEANUP_FUNC(elf_object, elf_object_free)

static bool pread_all(int fd, void *buf, size_t size, uint64_t off)
{
    ssize_t n = pread(fd, buf, size, (off_t)off);

    return n >= 0 && (size_t)n == size;
}

/* The machine this process runs as, from its own ELF header. */
static uint16_t native_machine(void)
{
    ElfW(Ehdr) eh;
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    bool ok;

    if (fd < 0)
        return EM_NONE;
    ok = pread_all(fd, &eh, sizeof(eh), 0);
    close(fd);
    return ok ? eh.e_machine : EM_NONE;
}

/* The file offset of a virtual address, through the PT_LOAD segments. */
static bool vaddr_to_offset(const ElfW(Phdr) * ph, unsigned n, uint64_t vaddr,
                            uint64_t *ret)
{
    for (unsigned i = 0; i < n; i++) {
        if (ph[i].p_type != PT_LOAD || vaddr < ph[i].p_vaddr ||
            vaddr - ph[i].p_vaddr >= ph[i].p_filesz)
            continue;
        *ret = ph[i].p_offset + (vaddr - ph[i].p_vaddr);
        return true;
    }
    return false;
}

static char *strtab_at(const char *strtab, uint64_t size, uint64_t off)
{
    if (off >= size || !memchr(strtab + off, '\0', size - off))
        return NULL;
    return g_strdup(strtab + off);
}

/* Reads what the loader needs of the object at fd. -ENOEXEC with *error
 * set (what is wrong with it, to follow its name) when it is not an ELF object
 * of this machine and class. */
static int elf_object_read(int fd, const char *path, struct elf_object **ret,
                           char **error)
{
    g_autoptr(elf_object) o = g_new0(struct elf_object, 1);
    g_autofree ElfW(Phdr) *ph = NULL;
    g_autofree ElfW(Dyn) *dyn = NULL;
    g_autofree char *strtab = NULL;
    uint64_t dyn_off = 0, dyn_size = 0, strtab_vaddr = 0, strsz = 0;
    uint64_t strtab_off, rpath = UINT64_MAX, runpath = UINT64_MAX;
    size_t n_dyn;
    ElfW(Ehdr) eh;

    o->path = g_strdup(path);
    o->needed = g_ptr_array_new_with_free_func(g_free);
    if (!pread_all(fd, &eh, sizeof(eh), 0) ||
        memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
        *error = g_strdup("is not an ELF executable");
        return -ENOEXEC;
    }
    if (eh.e_ident[EI_CLASS] !=
            (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32) ||
        eh.e_ident[EI_DATA] != PROBE_NATIVE_DATA ||
        eh.e_machine != native_machine()) {
        *error = g_strdup("is an ELF file for another machine or word size "
                          "than this process");
        return -ENOEXEC;
    }
    if (eh.e_phentsize != sizeof(ElfW(Phdr)) || eh.e_phnum == 0 ||
        eh.e_phnum > PROBE_MAX_PHDRS) {
        *error = g_strdup("has malformed ELF program headers");
        return -ENOEXEC;
    }
    ph = g_new(ElfW(Phdr), eh.e_phnum);
    if (!pread_all(fd, ph, sizeof(*ph) * eh.e_phnum, eh.e_phoff)) {
        *error = g_strdup("has truncated ELF program headers");
        return -ENOEXEC;
    }
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        if (ph[i].p_type == PT_INTERP)
            o->is_dynamic = true;
        if (ph[i].p_type == PT_DYNAMIC) {
            dyn_off = ph[i].p_offset;
            dyn_size = ph[i].p_filesz;
        }
    }
    if (!dyn_size) {
        *ret = g_steal_pointer(&o);
        return 0;
    }
    if (dyn_size > PROBE_MAX_DYNAMIC) {
        *error = g_strdup("has malformed dynamic section");
        return -ENOEXEC;
    }
    n_dyn = dyn_size / sizeof(ElfW(Dyn));
    dyn = g_new0(ElfW(Dyn), n_dyn + 1);
    if (!pread_all(fd, dyn, n_dyn * sizeof(ElfW(Dyn)), dyn_off)) {
        *error = g_strdup("has truncated dynamic section");
        return -ENOEXEC;
    }
    for (size_t i = 0; i < n_dyn && dyn[i].d_tag != DT_NULL; i++) {
        if (dyn[i].d_tag == DT_STRTAB)
            strtab_vaddr = dyn[i].d_un.d_ptr;
        else if (dyn[i].d_tag == DT_STRSZ)
            strsz = dyn[i].d_un.d_val;
    }
    if (!strsz || strsz > PROBE_MAX_STRTAB ||
        !vaddr_to_offset(ph, eh.e_phnum, strtab_vaddr, &strtab_off)) {
        *error = g_strdup("has malformed dynamic string table");
        return -ENOEXEC;
    }
    strtab = g_malloc(strsz);
    if (!pread_all(fd, strtab, strsz, strtab_off)) {
        *error = g_strdup("has truncated dynamic string table");
        return -ENOEXEC;
    }
    for (size_t i = 0; i < n_dyn && dyn[i].d_tag != DT_NULL; i++) {
        char *s;

        switch (dyn[i].d_tag) {
        case DT_NEEDED:
            s = strtab_at(strtab, strsz, dyn[i].d_un.d_val);
            if (s)
                g_ptr_array_add(o->needed, s);
            break;
        case DT_RPATH:
            rpath = dyn[i].d_un.d_val;
            break;
        case DT_RUNPATH:
            runpath = dyn[i].d_un.d_val;
            break;
        }
    }
    if (rpath != UINT64_MAX)
        o->rpath = strtab_at(strtab, strsz, rpath);
    if (runpath != UINT64_MAX)
        o->runpath = strtab_at(strtab, strsz, runpath);
    *ret = g_steal_pointer(&o);
    return 0;
}

/* ld.so.cache in glibc's "new" format (glibc 2.32+ writes only this):
 * a 48-byte header, then entries of {flags, key, value, osversion, hwcap}
 * whose key and value are offsets of NUL-terminated strings in the file. */
struct ld_cache {
    uint8_t *data;
    size_t size;
};

static void ld_cache_load(struct ld_cache *c)
{
    static const char magic[] = "glibc-ld.so.cache1.1";
    gsize size = 0;
    gchar *data = NULL;
    struct stat st;

    if (stat("/etc/ld.so.cache", &st) < 0 || st.st_size > PROBE_LD_CACHE_MAX ||
        !g_file_get_contents("/etc/ld.so.cache", &data, &size, NULL))
        return;
    if (size < 48 || memcmp(data, magic, strlen(magic)) != 0) {
        g_free(data);
        return;
    }
    c->data = (uint8_t *)data;
    c->size = size;
}

static const char *ld_cache_string(const struct ld_cache *c, uint32_t off)
{
    if (off >= c->size || !memchr(c->data + off, '\0', c->size - off))
        return NULL;
    return (const char *)c->data + off;
}

/* Calls try() on each path the cache has for name, until it says yes. */
static bool ld_cache_lookup(const struct ld_cache *c, const char *name,
                            bool (*try)(void *, const char *), void *userdata)
{
    uint32_t nlibs;

    if (!c->data)
        return false;
    memcpy(&nlibs, c->data + 20, sizeof(nlibs));
    for (uint64_t i = 0; i < nlibs && 48 + (i + 1) * 24 <= c->size; i++) {
        const uint8_t *e = c->data + 48 + i * 24;
        uint32_t key, value;
        const char *k, *v;

        memcpy(&key, e + 4, sizeof(key));
        memcpy(&value, e + 8, sizeof(value));
        k = ld_cache_string(c, key);
        v = ld_cache_string(c, value);
        if (k && v && strcmp(k, name) == 0 && try(userdata, v))
            return true;
    }
    return false;
}

struct probe_walk {
    struct ld_cache cache;
    GPtrArray *objects;     /* struct elf_object *, in load order */
    GHashTable *seen_names; /* DT_NEEDED names already resolved */
    const char *exe_rpath;  /* the executable's DT_RPATH */
    /* One candidate being tried: */
    struct elf_object *found;
};

/* A candidate path: used if it is an ELF object of our machine, as the
 * loader skips a library of the wrong class and goes on searching. */
static bool probe_try(void *userdata, const char *path)
{
    struct probe_walk *w = userdata;
    g_autofree char *error = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int r;

    if (fd < 0)
        return false;
    r = elf_object_read(fd, path, &w->found, &error);
    close(fd);
    return r >= 0;
}

static char *replace_all(const char *s, const char *from, const char *to)
{
    g_auto(GStrv) parts = g_strsplit(s, from, -1);

    return g_strjoinv(to, parts);
}

/* Tries each directory of a colon-separated search path; $ORIGIN is the
 * directory of the object that has the path. */
static bool probe_search_path(struct probe_walk *w, const char *list,
                              const char *origin_of, const char *name)
{
    g_auto(GStrv) dirs = NULL;

    if (!list || !*list)
        return false;
    dirs = g_strsplit_set(list, ":;", -1);
    for (char **d = dirs; *d; d++) {
        g_autofree char *origin = NULL;
        g_autofree char *dir = NULL;
        g_autofree char *path = NULL;

        if (!**d)
            continue;
        if (strstr(*d, "$ORIGIN") || strstr(*d, "${ORIGIN}")) {
            g_autofree char *real = realpath(origin_of, NULL);
            g_autofree char *braced = NULL;

            if (!real)
                continue;
            origin = g_path_get_dirname(real);
            braced = replace_all(*d, "${ORIGIN}", origin);
            dir = replace_all(braced, "$ORIGIN", origin);
        } else {
            dir = g_strdup(*d);
        }
        /* $LIB, $PLATFORM: not expanded; such entries are skipped. */
        if (strchr(dir, '$'))
            continue;
        path = g_canonicalize_filename(name, dir);
        if (probe_try(w, path))
            return true;
    }
    return false;
}

/* ld.so's search order for a DT_NEEDED name of object `by`. */
static struct elf_object *probe_resolve(struct probe_walk *w,
                                        const struct elf_object *by,
                                        const char *name)
{
    static const char *const default_dirs =
        "/lib/" CPRKIT_MULTIARCH ":/usr/lib/" CPRKIT_MULTIARCH
        ":/lib64:/usr/lib64:/lib:/usr/lib";

    w->found = NULL;
    if (strchr(name, '/')) {
        probe_try(w, name);
        return w->found;
    }
    if (!by->runpath && (probe_search_path(w, by->rpath, by->path, name) ||
                         probe_search_path(w, w->exe_rpath, by->path, name)))
        return w->found;
    if (probe_search_path(w, getenv("LD_LIBRARY_PATH"), by->path, name) ||
        probe_search_path(w, by->runpath, by->path, name) ||
        ld_cache_lookup(&w->cache, name, probe_try, w) ||
        probe_search_path(w, default_dirs, by->path, name))
        return w->found;
    return NULL;
}

/* The DT_NEEDED tree, breadth first as the loader loads it. Names not
 * found are skipped: the loader would fail on them, which the exec's own
 * error path reports; here only the formats matter. */
static void probe_needed_tree(struct probe_walk *w)
{
    for (guint i = 0; i < w->objects->len; i++) {
        struct elf_object *o = g_ptr_array_index(w->objects, i);

        for (guint j = 0; j < o->needed->len; j++) {
            const char *name = g_ptr_array_index(o->needed, j);
            struct elf_object *dep;

            if (w->objects->len >= PROBE_MAX_OBJECTS)
                return;
            if (!g_hash_table_add(w->seen_names, g_strdup(name)))
                continue;
            dep = probe_resolve(w, o, name);
            if (dep)
                g_ptr_array_add(w->objects, dep);
        }
    }
}

/* Every "CPRKIT-FORMAT-READS=<n>;" in a file. */
static void scan_markers(const char *path, GArray *formats)
{
    const size_t prefix_len = strlen(CPRKIT_FORMAT_MARKER_PREFIX);
    struct stat st;
    const char *data, *p, *end;
    void *map;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
        close(fd);
        return;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return;
    data = map;
    end = data + st.st_size;
    p = data;
    while ((p = memmem(p, (size_t)(end - p), CPRKIT_FORMAT_MARKER_PREFIX,
                       prefix_len))) {
        const char *q = p + prefix_len;
        int64_t v = 0;

        while (q < end && q - p < 32 && g_ascii_isdigit(*q))
            v = v * 10 + (*q++ - '0');
        if (q < end && *q == ';' && q > p + prefix_len)
            g_array_append_val(formats, v);
        p = q;
    }
    munmap(map, (size_t)st.st_size);
}

static bool is_libcprkit(const char *path)
{
    g_autofree char *base = g_path_get_basename(path);

    return g_str_has_prefix(base, "libcprkit");
}

void binary_probe_clear(struct binary_probe *p)
{
    g_clear_pointer(&p->reader, g_free);
    g_clear_pointer(&p->formats, g_array_unref);
    p->is_script = false;
}

int binary_probe(const char *path, struct binary_probe *ret, char **error)
{
    struct probe_walk w = {0};
    struct elf_object *exe = NULL;
    const char *preload = getenv("LD_PRELOAD");
    char head[2] = {0};
    int fd, r;

    *ret = (struct binary_probe){
        .formats = g_array_new(false, false, sizeof(int64_t))};
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        *error = g_strdup_printf("cannot be read to see which state format "
                                 "it reads: %s",
                                 g_strerror(-r));
        return r;
    }
    if (pread_all(fd, head, sizeof(head), 0) && head[0] == '#' &&
        head[1] == '!') {
        close(fd);
        ret->is_script = true;
        *error = g_strdup("is a script: cprkit cannot tell whether the "
                          "program it runs reads the state; name that "
                          "program instead");
        return -ENOEXEC;
    }
    r = elf_object_read(fd, path, &exe, error);
    close(fd);
    if (r < 0)
        return r;

    w.objects = g_ptr_array_new_with_free_func((GDestroyNotify)elf_object_free);
    w.seen_names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_ptr_array_add(w.objects, exe);
    if (exe->is_dynamic) {
        /* LD_PRELOAD objects come first, as ld.so loads them: this is
         * how the preload shim reaches a program that does not link
         * cprkit. */
        g_auto(GStrv) names = g_strsplit_set(preload ? preload : "", " :", -1);

        ld_cache_load(&w.cache);
        w.exe_rpath = exe->runpath ? NULL : exe->rpath;
        for (char **n = names; *n; n++) {
            struct elf_object *o;

            if (!**n || !g_hash_table_add(w.seen_names, g_strdup(*n)))
                continue;
            o = probe_resolve(&w, exe, *n);
            if (!o)
                continue;
            g_ptr_array_add(w.objects, o);
            scan_markers(o->path, ret->formats);
            if (ret->formats->len) {
                ret->reader = g_strdup(o->path);
                break;
            }
        }
        if (!ret->reader)
            probe_needed_tree(&w);
        for (guint i = 1; !ret->reader && i < w.objects->len; i++) {
            const char *lib =
                ((struct elf_object *)g_ptr_array_index(w.objects, i))->path;

            if (!is_libcprkit(lib))
                continue;
            scan_markers(lib, ret->formats);
            if (ret->formats->len)
                ret->reader = g_strdup(lib);
        }
    }
    /* Statically linked, or cprkit built into the program. */
    if (!ret->reader) {
        scan_markers(path, ret->formats);
        if (ret->formats->len)
            ret->reader = g_strdup(path);
    }
    g_free(w.cache.data);
    g_hash_table_unref(w.seen_names);
    g_ptr_array_unref(w.objects);
    return 0;
}

int binary_probe_check(const char *path, struct binary_probe *ret, char **error)
{
    g_autofree char *why = NULL;
    g_autoptr(GString) formats = g_string_new(NULL);
    bool reads = false;
    int r;

    r = binary_probe(path, ret, &why);
    if (r < 0) {
        *error = g_strdup_printf("new binary '%s' %s", path, why);
        return r;
    }
    for (guint i = 0; i < ret->formats->len; i++) {
        int64_t major = g_array_index(ret->formats, int64_t, i);

        reads |= major == CPRKIT_BUILD_FORMAT_MAJOR;
        g_string_append_printf(formats, "%s%" PRId64, i ? ", " : "", major);
    }
    if (!ret->reader) {
        *error = g_strdup_printf("new binary '%s' does not use libcprkit (not "
                                 "linked, not preloaded, not built in): it "
                                 "could not load the state, and this process "
                                 "would be lost with its devices",
                                 path);
        return -ENOEXEC;
    }
    if (!reads) {
        *error = g_strdup_printf("new binary '%s' (cprkit in %s) reads state "
                                 "format %s, not %d, which this process "
                                 "writes",
                                 path, ret->reader, formats->str,
                                 CPRKIT_BUILD_FORMAT_MAJOR);
        return -EPROTONOSUPPORT;
    }
    return 0;
}
