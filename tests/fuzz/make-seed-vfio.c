/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writes fuzz seeds for the VFIO records added in 0.5 (issue 15) to
 * stdout, in fuzz-blob's payload mode (a 0x00 byte, then a packed State):
 *
 *   make-seed-vfio irqs    no device record, so the loader reaches the IRQ
 *                          records: MSI-X with a gap (vectors 0 and 2 of
 *                          3), ERR, REQ, and an INTx line the application
 *                          masked;
 *   make-seed-vfio device  a device record that was a bus master.
 *
 * Run once; the output is committed in tests/fuzz/corpus/.
 */
#include <stdio.h>
#include <string.h>

#include "cprkit-internal.h"

static Cprkit__FdRef *fdref(Cprkit__FdRef *r, const char *name, int id)
{
    cprkit__fd_ref__init(r);
    r->name = (char *)name;
    r->has_id = true;
    r->id = id;
    return r;
}

static Cprkit__IrqIndex *irq_index(Cprkit__IrqIndex *irq, Cprkit__FdRef *dev,
                                   Cprkit__IrqKind kind, uint32_t count)
{
    cprkit__irq_index__init(irq);
    irq->device = fdref(dev, "vfio-device", 0);
    irq->has_kind = irq->has_count = true;
    irq->kind = kind;
    irq->count = count;
    return irq;
}

static Cprkit__IrqVector *irq_vector(Cprkit__IrqVector *v, Cprkit__FdRef *ref,
                                     int eventfd_id, uint32_t vector)
{
    cprkit__irq_vector__init(v);
    v->has_vector = true;
    v->vector = vector;
    v->trigger = fdref(ref, "irq", eventfd_id);
    return v;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int id, fd;
        Cprkit__FdType type;
    } fds[] = {
        {"vfio-device", 0, 10, CPRKIT__FD_TYPE__FD_TYPE_VFIO_DEVICE},
        {"irq", 0, 11, CPRKIT__FD_TYPE__FD_TYPE_EVENTFD},
        {"irq", 1, 12, CPRKIT__FD_TYPE__FD_TYPE_EVENTFD},
        {"irq", 2, 13, CPRKIT__FD_TYPE__FD_TYPE_EVENTFD},
        {"irq", 3, 14, CPRKIT__FD_TYPE__FD_TYPE_EVENTFD},
        {"irq", 4, 15, CPRKIT__FD_TYPE__FD_TYPE_EVENTFD},
        {"irq", 5, 16, CPRKIT__FD_TYPE__FD_TYPE_EVENTFD},
    };
    Cprkit__FdEntry entries[ELEMENTSOF(fds)], *entry_ptrs[ELEMENTSOF(fds)];
    Cprkit__FdIdentity identities[ELEMENTSOF(fds)];
    Cprkit__IrqIndex irqs[4], *irq_ptrs[4];
    Cprkit__IrqVector vecs[5], *msix_vecs[2], *one_vec[3];
    Cprkit__FdRef refs[10];
    Cprkit__VfioDevice device, *device_ptr = &device;
    Cprkit__State state;
    uint8_t *buf;
    size_t size;

    if (argc != 2 || (strcmp(argv[1], "irqs") && strcmp(argv[1], "device"))) {
        fprintf(stderr, "usage: make-seed-vfio irqs|device\n");
        return 2;
    }
    cprkit__state__init(&state);
    state.has_generation = true;
    state.generation = 1;
    for (size_t i = 0; i < ELEMENTSOF(fds); i++) {
        cprkit__fd_identity__init(&identities[i]);
        identities[i].has_type = true;
        identities[i].type = fds[i].type;
        cprkit__fd_entry__init(&entries[i]);
        entries[i].name = (char *)fds[i].name;
        entries[i].has_id = entries[i].has_fd = true;
        entries[i].id = fds[i].id;
        entries[i].fd = fds[i].fd;
        entries[i].identity = &identities[i];
        entry_ptrs[i] = &entries[i];
    }
    state.n_fds = ELEMENTSOF(fds);
    state.fds = entry_ptrs;

    if (!strcmp(argv[1], "device")) {
        cprkit__vfio_device__init(&device);
        device.fd = fdref(&refs[0], "vfio-device", 0);
        device.bdf = "0000:01:00.0";
        device.has_group_number = device.has_bus_master = true;
        device.group_number = 5;
        device.bus_master = true;
        state.n_vfio_devices = 1;
        state.vfio_devices = &device_ptr;
    } else {
        /* MSI-X: 3 vectors, 1 without an eventfd. */
        irq_ptrs[0] = irq_index(&irqs[0], &refs[0],
                                CPRKIT__IRQ_KIND__IRQ_KIND_MSIX, 3);
        msix_vecs[0] = irq_vector(&vecs[0], &refs[1], 0, 0);
        msix_vecs[1] = irq_vector(&vecs[1], &refs[2], 1, 2);
        irqs[0].n_vectors = 2;
        irqs[0].vectors = msix_vecs;
        irq_ptrs[1] = irq_index(&irqs[1], &refs[3],
                                CPRKIT__IRQ_KIND__IRQ_KIND_ERR, 1);
        one_vec[0] = irq_vector(&vecs[2], &refs[4], 2, 0);
        irqs[1].n_vectors = 1;
        irqs[1].vectors = &one_vec[0];
        irq_ptrs[2] = irq_index(&irqs[2], &refs[5],
                                CPRKIT__IRQ_KIND__IRQ_KIND_REQ, 1);
        one_vec[1] = irq_vector(&vecs[3], &refs[6], 3, 0);
        irqs[2].n_vectors = 1;
        irqs[2].vectors = &one_vec[1];
        /* INTx masked by the application, with its unmask eventfd. */
        irq_ptrs[3] = irq_index(&irqs[3], &refs[7],
                                CPRKIT__IRQ_KIND__IRQ_KIND_INTX, 1);
        one_vec[2] = irq_vector(&vecs[4], &refs[8], 4, 0);
        irqs[3].n_vectors = 1;
        irqs[3].vectors = &one_vec[2];
        irqs[3].intx_unmask = fdref(&refs[9], "irq", 5);
        irqs[3].has_masked = true;
        irqs[3].masked = true;
        state.n_irqs = 4;
        state.irqs = irq_ptrs;
    }

    size = cprkit__state__get_packed_size(&state);
    buf = calloc(1, size + 1);
    if (!buf)
        return 1;
    cprkit__state__pack(&state, buf + 1); /* buf[0] = 0: payload mode */
    fwrite(buf, 1, size + 1, stdout);
    free(buf);
    return 0;
}
