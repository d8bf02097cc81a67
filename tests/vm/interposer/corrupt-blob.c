/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * corrupt-blob.so: LD_PRELOAD interposer for the new binary of an update
 * that flips one bit of the state blob as it is read, to show that a
 * corrupt blob is detected (checksum) and rolled back.
 *
 * The constructor runs before main(), so before cprkit_load_incoming()
 * unsets CPRKIT_STATE_FD: it notes the blob fd then. It also removes
 * LD_PRELOAD from the environment, so the rollback exec (which passes this
 * process's environment on) hands the old binary an intact read of the
 * same sealed blob. The flipped bit is the blob's last byte, in the
 * payload: the rescue block with the rollback command line stays readable.
 */
/* Define pread and pread64 as the separate symbols they are in libc. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static int blob_fd = -1;

__attribute__((constructor)) static void corrupt_blob_init(void)
{
    const char *s = getenv("CPRKIT_STATE_FD");

    if (s)
        blob_fd = atoi(s);
    unsetenv("LD_PRELOAD");
}

static void flip(int fd, void *buf, ssize_t n, off_t offset)
{
    struct stat st;
    off_t last;

    if (fd != blob_fd || blob_fd < 0 || n <= 0 || fstat(fd, &st) < 0)
        return;
    last = st.st_size - 1;
    if (last >= offset && last < offset + n)
        ((uint8_t *)buf)[last - offset] ^= 0x10;
}

typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);

ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
    static pread_fn real;
    ssize_t n;

    if (!real)
        real = (pread_fn)dlsym(RTLD_NEXT, "pread");
    n = real(fd, buf, count, offset);
    flip(fd, buf, n, offset);
    return n;
}

/* With _FILE_OFFSET_BITS=64 (meson's default) callers bind to pread64. */
ssize_t pread64(int fd, void *buf, size_t count, off64_t offset)
{
    static pread_fn real;
    ssize_t n;

    if (!real)
        real = (pread_fn)dlsym(RTLD_NEXT, "pread64");
    n = real(fd, buf, count, offset);
    flip(fd, buf, n, offset);
    return n;
}
