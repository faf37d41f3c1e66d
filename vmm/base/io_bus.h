/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Address-trap registry: port I/O or MMIO ranges with their handlers. One bus
 * per address space lives inside the VM object (no globals). Ranges are
 * registered before the vCPUs start and never overlap; lookups are lock-free.
 */
#ifndef VMM_IO_BUS_H
#define VMM_IO_BUS_H

#include <stdbool.h>
#include <stdint.h>

/* Called for an access at `offset` bytes into the range; data holds len bytes (1, 2, 4 or 8). */
typedef void io_handler_fn(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

struct io_range {
	uint64_t base, size;
	io_handler_fn *handler;
	void *opaque;
	const char *name;
};

struct io_bus {
	struct io_range *ranges;	/* sorted by base */
	unsigned int nranges, capacity;
};

/* Adds [base, base+size); 0, -EEXIST if it overlaps a registered range, -EINVAL, -ENOMEM. */
int io_bus_register(struct io_bus *bus, uint64_t base, uint64_t size, io_handler_fn *handler,
		    void *opaque, const char *name);

/* Returns the range containing [addr, addr+len), or NULL. */
const struct io_range *io_bus_find(const struct io_bus *bus, uint64_t addr, uint32_t len);

/*
 * Dispatches one access. Unclaimed reads return all ones, unclaimed writes are
 * dropped; returns false for them so the caller can count or report.
 */
bool io_bus_access(const struct io_bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);

/* Frees the registry. */
void io_bus_destroy(struct io_bus *bus);

#endif
