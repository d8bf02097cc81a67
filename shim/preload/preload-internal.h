/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * State and functions shared by the files of libcprkit-preload.so (see
 * preload.c for what the shim does). Not installed.
 *
 * Locking: every interposed VFIO call and every control request runs with
 * preload_lock held, so tables, records and the incoming state change
 * under it only. preload_in_lib is per thread: set around every library
 * call, whose own open/ioctl/close/execve come back through the wrappers
 * and must pass straight to libc.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>
#include <sys/types.h>

#include <cprkit/cprkit-control.h>
#include <cprkit/cprkit-vfio.h>

#include "preload-util.h"

#define EXPORT __attribute__((visibility("default")))
#define PRELOAD_MAX_FDS 64
/* Vectors in one VFIO_DEVICE_SET_IRQS call the shim takes. */
#define PRELOAD_MAX_VECTORS 256

/* interpose.c: libc's functions behind the wrappers, and the guards. */
extern int (*preload_real_openat)(int, const char *, int, ...);
extern int (*preload_real_ioctl)(int, unsigned long, ...);
extern int (*preload_real_close)(int);
extern int (*preload_real_execve)(const char *, char *const[], char *const[]);
void preload_resolve(void);
int preload_errno_ret(int r);

extern pthread_mutex_t preload_lock;
extern __thread int preload_in_lib;
extern bool preload_active;
extern pid_t preload_owner;

/* preload.c: start-up, logging, refusals, the fds only the shim holds. */
extern cprkit_ctx *preload_ctx;
extern cprkit_control *preload_control;
extern char preload_tainted[256];
void preload_log(int prio, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void preload_taint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void preload_private_add(int fd);
bool preload_private_has(int fd);

/* records.c: what this process has, written into the section before
 * every exec, and the previous binary's record read at start. */
void preload_record_add(const struct preload_item *it);
void preload_record_remove(const struct preload_item *it);
void preload_record_remove_irqs(const char *bdf, uint64_t index);
int preload_records_save(void);
void preload_records_save_if_changed(void);
int preload_records_load(struct preload_item *ret_items, size_t max,
                         size_t *ret_n, char *ret_why, size_t why_size);

/* exec-fds.c: the program's fds across an update the shim starts. */
struct preload_exec_fds {
    int *fds; /* made close-on-exec here, to clear again if exec fails */
    size_t n, size;
};
void preload_exec_fds_init(void);
void preload_exec_fds_close_on_exec(struct preload_exec_fds *changed);
void preload_exec_fds_restore(struct preload_exec_fds *changed);

/* incoming.c: the new binary re-creating what was preserved. */
extern bool preload_incoming;
int preload_incoming_start(void);
const struct preload_item *preload_incoming_find_group(int number);
void preload_claim(const struct preload_item *it);
void preload_maybe_commit(void);
void preload_check_deadline(void);
void preload_rollback(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* vfio-translate.c: the program's VFIO fds and what they are. */
struct preload_container {
    int fd, id;
};
struct preload_group {
    int prog_fd, lib_fd, number, container_id;
    /* The program attached it (VFIO_GROUP_SET_CONTAINER) in this binary;
     * false for a group reclaimed on the incoming side until it does. */
    bool attached_here;
};
struct preload_device {
    int fd;
    char bdf[32];
};
struct preload_container *preload_container_by_fd(int fd);
struct preload_device *preload_device_by_fd(int fd);
int preload_vfio_open(const char *path, int flags, int (*opener)(void *),
                      void *opener_data);
int preload_vfio_ioctl(int fd, unsigned long req, void *arg);

/* dma-memfd.c: VFIO_IOMMU_MAP_DMA / UNMAP_DMA. */
struct vfio_iommu_type1_dma_map;
struct vfio_iommu_type1_dma_unmap;
int preload_map_dma(struct preload_container *c,
                    struct vfio_iommu_type1_dma_map *m);
int preload_unmap_dma(struct preload_container *c,
                      struct vfio_iommu_type1_dma_unmap *u);

/* irq-eventfd.c: VFIO_DEVICE_SET_IRQS. */
struct vfio_irq_set;
int preload_set_irqs(struct preload_device *d, struct vfio_irq_set *s);

/* control-thread.c: the control socket and the update itself. */
/* userdata of preload_upgrade() when the control socket asked for the
 * update (NULL: the program's own execve). */
#define PRELOAD_UPGRADE_FROM_CONTROL ((void *)1)
int preload_upgrade(void *userdata, cprkit_ctx *c, const char *binary,
                    char *const argv[]);
int preload_control_thread_start(void);

/* exec-path.c: execvpe's PATH search, done here because glibc's execvpe
 * calls its internal execve, which the shim cannot see. Returns -1 with
 * errno set, like execvpe. */
int preload_execvpe_search(const char *file, char *const argv[],
                           char *const envp[]);
