// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/base/io_bus.h"

int io_bus_register(struct io_bus *bus, uint64_t base, uint64_t size, io_handler_fn *handler,
		    void *opaque, const char *name)
{
	uint64_t end;
	unsigned int pos;

	if (!size || !handler || __builtin_add_overflow(base, size - 1, &end))
		return -EINVAL;
	for (unsigned int i = 0; i < bus->nranges; i++) {
		const struct io_range *r = &bus->ranges[i];

		if (base <= r->base + (r->size - 1) && r->base <= end)
			return -EEXIST;
	}
	if (bus->nranges == bus->capacity) {
		unsigned int cap = bus->capacity ? bus->capacity * 2 : 8;
		struct io_range *n = realloc(bus->ranges, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		bus->ranges = n;
		bus->capacity = cap;
	}
	for (pos = 0; pos < bus->nranges && bus->ranges[pos].base < base; pos++)
		;
	memmove(&bus->ranges[pos + 1], &bus->ranges[pos], (bus->nranges - pos) * sizeof(*bus->ranges));
	bus->ranges[pos] = (struct io_range){ base, size, handler, opaque, name };
	bus->nranges++;
	return 0;
}

const struct io_range *io_bus_find(const struct io_bus *bus, uint64_t addr, uint32_t len)
{
	unsigned int lo = 0, hi = bus->nranges;

	if (!len)
		return NULL;
	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;
		const struct io_range *r = &bus->ranges[mid];

		if (addr < r->base) {
			hi = mid;
		} else if (addr - r->base >= r->size) {
			lo = mid + 1;
		} else {
			/* The whole access must be inside the range. */
			return len - 1 <= r->size - 1 - (addr - r->base) ? r : NULL;
		}
	}
	return NULL;
}

bool io_bus_access(const struct io_bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
	const struct io_range *r = io_bus_find(bus, addr, len);

	if (!r) {
		if (!is_write)
			memset(data, 0xff, len);
		return false;
	}
	r->handler(r->opaque, addr - r->base, data, len, is_write);
	return true;
}

void io_bus_destroy(struct io_bus *bus)
{
	free(bus->ranges);
	memset(bus, 0, sizeof(*bus));
}
