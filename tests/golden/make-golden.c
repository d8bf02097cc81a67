/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writes the golden state blob of the current format major version to
 * stdout. It was run once per format version and its output committed as
 * tests/data/state-v<N>.golden; tests decode the committed bytes, so later
 * code must keep reading them. Do not regenerate an existing golden file:
 * add a new one for a new major version.
 *
 * Every field has a fixed value (no clock, no pid) so the output is
 * reproducible and covers every entry kind of the schema.
 */
#include <stdio.h>

#include "cprkit-internal.h"

static Cprkit__FdRef *fdref(Cprkit__FdRef *r, const char *name, int id)
{
    cprkit__fd_ref__init(r);
    r->name = (char *)name;
    r->has_id = true;
    r->id = id;
    return r;
}

int main(void)
{
    static const struct {
        const char *name;
        int id, fd;
        Cprkit__FdType type;
        uint32_t mode;
    } fds[] = {
        {"ram", 0, 10, CPRKIT__FD_TYPE__FD_TYPE_MEMFD, 0100000},
        {"irq", 0, 11, CPRKIT__FD_TYPE__FD_TYPE_EVENTFD, 0},
        {"vfio-container", 0, 12, CPRKIT__FD_TYPE__FD_TYPE_VFIO_CONTAINER, 020000},
        {"vfio-group", 7, 13, CPRKIT__FD_TYPE__FD_TYPE_VFIO_GROUP, 020000},
        {"vfio-device", 0, 14, CPRKIT__FD_TYPE__FD_TYPE_VFIO_DEVICE, 0},
        {"control", 0, 15, CPRKIT__FD_TYPE__FD_TYPE_SOCKET, 0140000},
        {"log", 1, 16, CPRKIT__FD_TYPE__FD_TYPE_PIPE, 010000},
        {"config", 0, 17, CPRKIT__FD_TYPE__FD_TYPE_REGULAR_FILE, 0100000},
        {"null", 0, 18, CPRKIT__FD_TYPE__FD_TYPE_CHAR_DEVICE, 020000},
        {"root", 0, 19, CPRKIT__FD_TYPE__FD_TYPE_DIRECTORY, 040000},
        {"perf", -3, 20, CPRKIT__FD_TYPE__FD_TYPE_OTHER, 0},
    };
    Cprkit__FdEntry entries[ELEMENTSOF(fds)];
    Cprkit__FdIdentity identities[ELEMENTSOF(fds)];
    Cprkit__FdEntry *entry_ptrs[ELEMENTSOF(fds)];
    static const uint8_t binary[] = {0x00, 0xff, 0x10, 0x00, 0x7f};
    Cprkit__AppSection sections[3], *section_ptrs[3];
    Cprkit__Timestamp ts[2], *ts_ptrs[2];
    Cprkit__VfioContainer container, *container_ptr = &container;
    Cprkit__VfioGroup group, *group_ptr = &group;
    Cprkit__VfioDevice device, *device_ptr = &device;
    Cprkit__DmaMapping dma, *dma_ptr = &dma;
    Cprkit__IrqVector vec, *vec_ptr = &vec;
    Cprkit__IrqIndex irq, *irq_ptr = &irq;
    Cprkit__RamBlock ram, *ram_ptr = &ram;
    Cprkit__FdRef refs[9];
    Cprkit__State state;
    char *argv[] = {"/usr/bin/example-vmm", "--name", "golden", "",
                    "arg with spaces", NULL};
    struct command_line rescue = {.path = "/usr/bin/example-vmm", .argv = argv};
    cprkit_ctx *ctx;
    uint8_t *buf;
    size_t size;

    cprkit__state__init(&state);
    state.has_generation = true;
    state.generation = 3;
    for (size_t i = 0; i < ELEMENTSOF(fds); i++) {
        cprkit__fd_identity__init(&identities[i]);
        identities[i].has_type = identities[i].has_st_dev =
            identities[i].has_st_ino = identities[i].has_st_rdev =
                identities[i].has_st_mode_type = true;
        identities[i].type = fds[i].type;
        identities[i].st_dev = 0x803 + i;
        identities[i].st_ino = 1000 + i;
        identities[i].st_rdev = fds[i].mode == 020000 ? 0xa00 + i : 0;
        identities[i].st_mode_type = fds[i].mode;
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

    for (int i = 0; i < 3; i++) {
        cprkit__app_section__init(&sections[i]);
        section_ptrs[i] = &sections[i];
        sections[i].has_data = true;
    }
    sections[0].name = "device-model";
    sections[0].data.data = (uint8_t *)"edu: factorial=120";
    sections[0].data.len = 18;
    sections[1].name = "binary";
    sections[1].data.data = (uint8_t *)binary;
    sections[1].data.len = sizeof(binary);
    sections[2].name = "empty";
    sections[2].data.len = 0;
    state.n_sections = 3;
    state.sections = section_ptrs;

    for (int i = 0; i < 2; i++) {
        cprkit__timestamp__init(&ts[i]);
        ts[i].has_monotonic_ns = true;
        ts_ptrs[i] = &ts[i];
    }
    ts[0].phase = "update-start";
    ts[0].monotonic_ns = 5000000000ull;
    ts[1].phase = "exec";
    ts[1].monotonic_ns = 5000250000ull;
    state.n_timestamps = 2;
    state.timestamps = ts_ptrs;

    state.has_created_realtime_ns = true;
    state.created_realtime_ns = 1795000000000000000ull;
    state.has_writer_pid = true;
    state.writer_pid = 4242;
    state.writer_version = "0.1.0";

    cprkit__vfio_container__init(&container);
    container.fd = fdref(&refs[0], "vfio-container", 0);
    container.has_iommu_type = true;
    container.iommu_type = 3; /* VFIO_TYPE1v2_IOMMU */
    state.n_vfio_containers = 1;
    state.vfio_containers = &container_ptr;

    cprkit__vfio_group__init(&group);
    group.fd = fdref(&refs[1], "vfio-group", 7);
    group.has_group_number = true;
    group.group_number = 7;
    group.container = fdref(&refs[2], "vfio-container", 0);
    state.n_vfio_groups = 1;
    state.vfio_groups = &group_ptr;

    cprkit__vfio_device__init(&device);
    device.fd = fdref(&refs[3], "vfio-device", 0);
    device.bdf = "0000:00:03.0";
    device.has_group_number = true;
    device.group_number = 7;
    state.n_vfio_devices = 1;
    state.vfio_devices = &device_ptr;

    cprkit__dma_mapping__init(&dma);
    dma.container = fdref(&refs[4], "vfio-container", 0);
    dma.has_iova = dma.has_size = dma.has_prot = dma.has_backing_offset =
        dma.has_vaddr_suspended = true;
    dma.iova = 0x100000;
    dma.size = 0x200000;
    dma.prot = 3;
    dma.backing = fdref(&refs[5], "ram", 0);
    dma.backing_offset = 0x1000;
    dma.vaddr_suspended = true;
    state.n_dma_mappings = 1;
    state.dma_mappings = &dma_ptr;

    cprkit__irq_vector__init(&vec);
    vec.has_vector = vec.has_msi_data = vec.has_msi_address = true;
    vec.vector = 0;
    vec.trigger = fdref(&refs[6], "irq", 0);
    vec.msi_data = 0x4021;
    vec.msi_address = 0xfee00000;
    cprkit__irq_index__init(&irq);
    irq.device = fdref(&refs[7], "vfio-device", 0);
    irq.has_kind = irq.has_count = irq.has_masked = true;
    irq.kind = CPRKIT__IRQ_KIND__IRQ_KIND_MSI;
    irq.count = 1;
    irq.n_vectors = 1;
    irq.vectors = &vec_ptr;
    irq.masked = false;
    state.n_irqs = 1;
    state.irqs = &irq_ptr;

    cprkit__ram_block__init(&ram);
    ram.name = "guest-ram";
    ram.fd = fdref(&refs[8], "ram", 0);
    ram.has_size = true;
    ram.size = 0x400000;
    state.n_ram_blocks = 1;
    state.ram_blocks = &ram_ptr;

    if (cprkit_new(&ctx) < 0)
        return 1;
    if (blob_encode(ctx, &state, &rescue, &buf, &size) < 0) {
        fprintf(stderr, "encode: %s\n", cprkit_last_error(ctx));
        return 1;
    }
    fwrite(buf, 1, size, stdout);
    free(buf);
    cprkit_free(ctx);
    return 0;
}
