// SPDX-License-Identifier: GPL-2.0-only
/* Live migration and snapshots (migration.h). */

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vmm/arch.h"
#include "vmm/base/dirty.h"
#include "vmm/base/log.h"
#include "vmm/base/mig_stream.h"
#include "vmm/base/sbuf.h"
#include "vmm/base/util.h"
#include "vmm/migration.h"
#include "vmm/serial.h"
#include "vmm/vm.h"

#define PAGE		DIRTY_PAGE_SIZE
#define RUN_MAX		256u		/* pages per RAM section: 1 MiB of data at most */
#define ACK_TIMEOUT_MS	60000		/* the destination loads devices and back-ends in this */

/* A RAM section: u64 gpa, u32 pages, u32 flags, then the pages unless RAM_ZERO. */
#define RAM_ZERO	1u
#define RAM_HDR		16u

void mig_params_default(struct mig_params *p)
{
	*p = (struct mig_params){
		.max_downtime_ms = 300,
		.bandwidth = 0,
		.max_iterations = 30,
		.small_dirty_pages = 256,
		.timeout_ms = 30000,
	};
}

bool mig_precopy_done(const struct mig_params *p, unsigned int pass, uint64_t remaining,
		      uint64_t previous, uint64_t expected_ms)
{
	if (!p->max_downtime_ms || expected_ms > p->max_downtime_ms)
		return false;
	/*
	 * The rest fits the downtime: one more pass while the last one still halved the
	 * dirty set (a pass over a small set is short, so little is dirtied meanwhile) —
	 * the pause then copies only what the guest dirties in a short last pass.
	 */
	return remaining <= p->small_dirty_pages || remaining > previous / 2 ||
	       pass >= p->max_iterations;
}

static void prog_fail(struct mig_progress *prog, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void prog_fail(struct mig_progress *prog, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(prog->error, sizeof(prog->error), fmt, ap);
	va_end(ap);
	log_error("migration: %s", prog->error);
}

/* What a stream error means, for messages. */
static const char *stream_error(int err)
{
	switch (err) {
	case -EPROTO:		return "the peer does not speak vmm's migration stream";
	case -EPROTONOSUPPORT:	return "the stream's version is not one this vmm reads";
	case -EBADMSG:		return "the stream is corrupted or truncated";
	case -ETIMEDOUT:	return "the peer went silent";
	case -EPIPE:
	case -ECONNRESET:	return "the peer closed the connection";
	default:		return strerror(-err);
	}
}

int migration_check(struct vm *vm, char *why, size_t whylen)
{
	for (unsigned int i = 0; i < vm->nvdevs; i++) {
		struct virtio_backend *be = vm->vdevs[i]->backend;
		char reason[200] = "";
		int ret;

		if (!be || !be->ops->migratable)
			continue;
		ret = be->ops->migratable(be, reason, sizeof(reason));
		if (ret) {
			snprintf(why, whylen, "%s cannot be migrated: %s", vm->vdev_names[i],
				 reason[0] ? reason : strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* ---- CONFIG: the VM's shape, and the run arguments for a restore ---- */

static void config_put(struct vm *vm, struct sbuf *b)
{
	const struct vmm_config *cfg = vm->cfg;

	sbuf_put_u32(b, vm->ncpus);
	sbuf_put_u64(b, cfg->memory);
	sbuf_put_u32(b, vm->mem.nregions);
	for (unsigned int i = 0; i < vm->mem.nregions; i++) {
		sbuf_put_u64(b, vm->mem.regions[i].gpa);
		sbuf_put_u64(b, vm->mem.regions[i].size);
	}
	sbuf_put_u32(b, vm->nvdevs);
	for (unsigned int i = 0; i < vm->nvdevs; i++) {
		const struct virtio_mmio_dev *d = vm->vdevs[i];

		sbuf_put_u32(b, d->ops->device_id);
		sbuf_put_u32(b, d->ops->nqueues);
		sbuf_put_u64(b, d->base);
		sbuf_put_u32(b, d->gsi);
		sbuf_put_u32(b, d->config_size);
		sbuf_put_str(b, vm->vdev_names[i]);
	}
	sbuf_put_u32(b, (uint32_t)cfg->run_argc);
	for (int i = 0; i < cfg->run_argc; i++)
		sbuf_put_str(b, cfg->run_argv[i]);
}

/* Checks a CONFIG payload against vm; 0 or -EINVAL after saying what differs. */
static int config_check(struct vm *vm, struct sbuf *b)
{
	uint32_t ncpus = sbuf_get_u32(b), nreg, ndev;
	uint64_t memory = sbuf_get_u64(b);
	char name[64];

	if (sbuf_error(b))
		goto bad;
	if (ncpus != vm->ncpus || memory != vm->cfg->memory) {
		log_error("migration: the incoming VM has %u vCPUs and %llu MiB; this one has %u and "
			  "%llu MiB — start the destination with the source's --cpus and --memory",
			  ncpus, (unsigned long long)(memory >> 20), vm->ncpus,
			  (unsigned long long)(vm->cfg->memory >> 20));
		return -EINVAL;
	}
	nreg = sbuf_get_u32(b);
	if (nreg != vm->mem.nregions)
		goto layout;
	for (unsigned int i = 0; i < nreg; i++)
		if (sbuf_get_u64(b) != vm->mem.regions[i].gpa ||
		    sbuf_get_u64(b) != vm->mem.regions[i].size)
			goto layout;
	ndev = sbuf_get_u32(b);
	if (sbuf_error(b))
		goto bad;
	if (ndev != vm->nvdevs) {
		log_error("migration: the incoming VM has %u virtio devices; this one has %u — give "
			  "the destination the same device options as the source", ndev, vm->nvdevs);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < ndev; i++) {
		const struct virtio_mmio_dev *d = vm->vdevs[i];
		uint32_t id = sbuf_get_u32(b), nq = sbuf_get_u32(b);
		uint64_t base = sbuf_get_u64(b);
		uint32_t gsi = sbuf_get_u32(b), csize = sbuf_get_u32(b);

		if (!sbuf_get_str(b, name, sizeof(name)))
			goto bad;
		if (id != d->ops->device_id || nq != d->ops->nqueues || base != d->base ||
		    gsi != d->gsi || csize != d->config_size) {
			log_error("migration: device %u is %s on the source but %s here (or its queues "
				  "or config differ) — give the destination the same device options, "
				  "in the same order", i, name, vm->vdev_names[i]);
			return -EINVAL;
		}
	}
	return 0;
layout:
	log_error("migration: the incoming VM's RAM layout differs from this one's — same --memory "
		  "on both sides");
	return -EINVAL;
bad:
	log_error("migration: the stream's configuration section is malformed");
	return -EBADMSG;
}

/* ---- RAM ---- */

struct ram_tx {
	struct vm *vm;
	struct mig_stream *s;
	struct mig_progress *prog;
	const struct mig_params *p;
	uint64_t *send;		/* pages to send, by guest page number */
	size_t words;		/* of send */
	uint64_t *kvm_bits;	/* one KVM memslot's log */
	struct dirty_log log;
	bool logging;		/* KVM and back-ends are logging */
	unsigned int backends_logging;
	uint64_t bytes_mark, t_mark;	/* bandwidth cap accounting */
	/*
	 * Guest RAM in [data_start, data_end) is known to be backed (a memfd's data, or
	 * any other kind of RAM). Only "data" is remembered: a hole is asked about right before
	 * it is sent as zero, after its block's pages were re-protected (ram_clear_block), so
	 * a write that fills it after the question is in the dirty log.
	 */
	uint64_t data_start, data_end;
	/*
	 * Whether the pages being sent may include never-written ones: only in the pass over
	 * all of RAM. A page from a dirty log was written, so later passes never ask (for
	 * scattered dirty pages, a page-map read per page would cost more than the page).
	 */
	bool all_pages;
};

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < PAGE / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

/* Sleeps as needed to keep under the bandwidth cap. */
static void ram_throttle(struct ram_tx *t)
{
	uint64_t sent, elapsed, due;

	if (!t->p->bandwidth)
		return;
	sent = t->s->bytes - t->bytes_mark;
	elapsed = monotonic_ms() - t->t_mark;
	due = sent * 1000 / t->p->bandwidth;
	if (due > elapsed)
		usleep((useconds_t)MIN(due - elapsed, 1000) * 1000);
	if (elapsed > 1000) {
		t->bytes_mark = t->s->bytes;
		t->t_mark = monotonic_ms();
	}
}

/* Sends pages [pfn, pfn + n) of one region as zero and data runs; 0 or -errno. */
static int ram_send_run(struct ram_tx *t, uint64_t pfn, uint64_t n)
{
	while (n) {
		uint64_t gpa = pfn * PAGE, len;
		const uint8_t *hva = guest_mem_ptr(&t->vm->mem, gpa, PAGE);
		bool zero;
		uint32_t k = 1;
		int ret;

		if (!hva)
			return -EFAULT;
		if (t->all_pages && (gpa < t->data_start || gpa >= t->data_end)) {
			/*
			 * Never-written RAM is sent as zero without being read: a read would
			 * allocate a memfd's page here (shmem has no shared zero page), and the
			 * first pass would fill all of the guest's RAM on the source.
			 */
			uint64_t ext;

			if (guest_mem_extent(&t->vm->mem, gpa, &ext)) {
				k = (uint32_t)MIN(MIN(ext / PAGE, n), (uint64_t)RUN_MAX);
				zero = true;
				goto send;
			}
			t->data_start = gpa;
			t->data_end = gpa + ext;
		}
		zero = page_is_zero(hva);
		while (k < n && k < RUN_MAX &&
		       (!t->all_pages || gpa + (uint64_t)k * PAGE < t->data_end)) {
			const uint8_t *next = guest_mem_ptr(&t->vm->mem, gpa + (uint64_t)k * PAGE, PAGE);

			if (next != hva + (uint64_t)k * PAGE || page_is_zero(next) != zero)
				break;
			k++;
		}
send:
		len = zero ? 0 : (uint64_t)k * PAGE;
		ret = mig_section_begin(t->s, MIG_KIND_RAM, 0, MIG_RAM_VERSION, RAM_HDR + len);
		if (!ret) {
			uint8_t hdr[RAM_HDR];
			uint32_t flags = zero ? RAM_ZERO : 0;

			memcpy(hdr, &gpa, 8);
			memcpy(hdr + 8, &k, 4);
			memcpy(hdr + 12, &flags, 4);
			ret = mig_section_write(t->s, hdr, sizeof(hdr));
		}
		/*
		 * The guest may write these pages meanwhile (pre-copy): the stream copies them
		 * before it checksums them. A page written after the copy is dirty again and
		 * goes in the next pass.
		 */
		if (!ret && len)
			ret = mig_section_write_live(t->s, hva, len);
		if (!ret)
			ret = mig_section_end(t->s);
		if (ret)
			return ret;
		atomic_fetch_add(&t->prog->pages, k);
		atomic_store(&t->prog->bytes, t->s->bytes);
		ram_throttle(t);
		pfn += k;
		n -= k;
	}
	return 0;
}

/* Words of t->send re-protected in KVM's log by one ioctl (4096 pages, 16 MiB). */
#define CLEAR_WORDS	64

/*
 * Re-protects in KVM's log (vm_dirty_log_clear) the pages set in t->send from word w
 * on, up to CLEAR_WORDS words within w's RAM region, before any of them is copied: a
 * write after this is logged again. The regions start on 64-page boundaries (ram_init
 * checked). Returns how many words it covered (at least 1), or -errno.
 */
static int ram_clear_block(struct ram_tx *t, size_t w)
{
	uint64_t pfn = (uint64_t)w * 64;

	for (unsigned int i = 0; i < t->vm->mem.nregions; i++) {
		const struct guest_region *r = &t->vm->mem.regions[i];
		uint64_t first = r->gpa / PAGE, end = first + r->size / PAGE;
		unsigned int n;
		int ret;

		if (pfn < first || pfn >= end)
			continue;
		n = (unsigned int)MIN(MIN((uint64_t)CLEAR_WORDS, (end - pfn + 63) / 64),
				      (uint64_t)(t->words - w));
		ret = t->vm->dirty_manual && t->logging ?
		      vm_dirty_log_clear(t->vm, i, pfn - first, &t->send[w], n) : 0;
		return ret ? ret : (int)n;
	}
	return 1;
}

/* Sends every page set in t->send (clearing it); 0 or -errno. */
static int ram_send_marked(struct ram_tx *t)
{
	size_t block_end = 0;

	for (size_t w = 0; w < t->words; w++) {
		if (w >= block_end && t->send[w]) {
			/* The next block's pages, re-protected at once before any is copied. */
			int n = ram_clear_block(t, w);

			if (n < 0) {
				prog_fail(t->prog, "KVM cannot re-protect the guest's pages for the "
					  "dirty log: %s", strerror(-n));
				return n;
			}
			block_end = w + (size_t)n;
		}
		while (t->send[w]) {
			unsigned int b = (unsigned int)__builtin_ctzll(t->send[w]);
			unsigned int e = b;
			int ret;

			while (e < 64 && (t->send[w] >> e & 1))
				e++;
			t->send[w] &= ~((e == 64 ? ~0ULL : (1ULL << e) - 1) & ~((1ULL << b) - 1));
			ret = ram_send_run(t, (uint64_t)w * 64 + b, e - b);
			if (ret)
				return ret;
			if (atomic_load(&t->prog->cancel))
				return -ECANCELED;
		}
	}
	return 0;
}

/* Marks every page of guest RAM for sending (the pass in which holes are looked for). */
static void ram_mark_all(struct ram_tx *t)
{
	t->all_pages = true;
	for (unsigned int i = 0; i < t->vm->mem.nregions; i++) {
		const struct guest_region *r = &t->vm->mem.regions[i];

		for (uint64_t p = r->gpa / PAGE; p < (r->gpa + r->size) / PAGE; p++)
			t->send[p / 64] |= 1ULL << (p % 64);
	}
}

/* Adds KVM's and the shared log's dirty pages to t->send; returns how many are set. */
static int ram_collect(struct ram_tx *t, uint64_t *count)
{
	uint64_t n = 0;

	for (unsigned int i = 0; i < t->vm->mem.nregions; i++) {
		const struct guest_region *r = &t->vm->mem.regions[i];
		uint64_t first = r->gpa / PAGE, pages = r->size / PAGE;
		int ret = vm_dirty_log_get(t->vm, i, t->kvm_bits);

		if (ret)
			return ret;
		for (uint64_t p = 0; p < pages; p++)
			if (t->kvm_bits[p / 64] >> (p % 64) & 1)
				t->send[(first + p) / 64] |= 1ULL << ((first + p) % 64);
	}
	dirty_log_collect(&t->log, 0, t->send, t->words);
	for (size_t w = 0; w < t->words; w++)
		n += (uint64_t)__builtin_popcountll(t->send[w]);
	*count = n;
	return 0;
}

static void ram_log_stop(struct ram_tx *t)
{
	if (!t->logging)
		return;
	for (unsigned int i = 0; i < t->vm->nvdevs && t->backends_logging; i++) {
		struct virtio_backend *be = t->vm->vdevs[i]->backend;

		if (be && be->ops->log_start && be->ops->log_stop)
			be->ops->log_stop(be);
	}
	guest_mem_set_dirty_log(&t->vm->mem, NULL);
	vm_dirty_log_enable(t->vm, false);
	t->logging = false;
}

static int ram_log_start(struct ram_tx *t)
{
	int ret = vm_dirty_log_enable(t->vm, true);

	if (ret) {
		prog_fail(t->prog, "KVM cannot log the guest's dirty pages: %s", strerror(-ret));
		return ret;
	}
	t->logging = true;
	guest_mem_set_dirty_log(&t->vm->mem, &t->log);
	for (unsigned int i = 0; i < t->vm->nvdevs; i++) {
		struct virtio_backend *be = t->vm->vdevs[i]->backend;

		if (!be || !be->ops->log_start)
			continue;
		ret = be->ops->log_start(be, &t->log);
		if (ret) {
			prog_fail(t->prog, "%s: its back-end cannot log the pages it writes (%s) — "
				  "it cannot be migrated live", t->vm->vdev_names[i], strerror(-ret));
			t->backends_logging = i + 1;
			ram_log_stop(t);
			return ret;
		}
		t->backends_logging = i + 1;
	}
	t->backends_logging = t->vm->nvdevs;
	return 0;
}

static void ram_fini(struct ram_tx *t)
{
	ram_log_stop(t);
	dirty_log_destroy(&t->log);
	free(t->send);
	free(t->kvm_bits);
}

static int ram_init(struct ram_tx *t, struct vm *vm, struct mig_stream *s,
		    struct mig_progress *prog, const struct mig_params *p)
{
	const struct guest_region *last = &vm->mem.regions[vm->mem.nregions - 1];
	uint64_t end = last->gpa + last->size, maxslot = 0;
	int ret;

	*t = (struct ram_tx){ .vm = vm, .s = s, .prog = prog, .p = p, .log.fd = -1 };
	t->words = (size_t)((end / PAGE + 63) / 64);
	for (unsigned int i = 0; i < vm->mem.nregions; i++) {
		maxslot = MAX(maxslot, vm->mem.regions[i].size / PAGE);
		/* KVM clears its log in 64-page blocks from a memslot's start. */
		if (vm->dirty_manual && vm->mem.regions[i].gpa / PAGE % 64)
			return -EINVAL;
	}
	t->send = calloc(t->words, 8);
	t->kvm_bits = calloc((size_t)((maxslot + 63) / 64), 8);
	if (!t->send || !t->kvm_bits) {
		ram_fini(t);
		return -ENOMEM;
	}
	ret = dirty_log_init(&t->log, end);
	if (ret)
		ram_fini(t);
	t->t_mark = monotonic_ms();
	return ret;
}

/* ---- Verification: every page's CRC-32C after the last copy (mig_params.verify) ---- */

unsigned int mig_ram_crc_batch(const struct guest_mem *m, uint64_t *next, uint32_t *crc)
{
	static const uint8_t zero[PAGE];
	uint32_t zero_crc = mig_crc32c(0, zero, PAGE);
	uint64_t idx = 0;
	unsigned int n = 0;

	for (unsigned int i = 0; i < m->nregions && n < MIG_VERIFY_BATCH; i++) {
		const struct guest_region *r = &m->regions[i];
		uint64_t pages = r->size / PAGE, p;

		if (*next >= idx + pages) {
			idx += pages;
			continue;
		}
		for (p = *next - idx; p < pages && n < MIG_VERIFY_BATCH;) {
			uint64_t ext, k;
			bool hole = guest_mem_extent(m, r->gpa + p * PAGE, &ext);

			k = MIN(MIN(MAX(ext / PAGE, 1), pages - p), (uint64_t)(MIG_VERIFY_BATCH - n));
			for (uint64_t j = 0; j < k; j++)
				crc[n++] = htole32(hole ? zero_crc :
						   mig_crc32c(0, r->hva + (p + j) * PAGE, PAGE));
			p += k;
			*next += k;
		}
		idx += pages;
	}
	return n;
}

/* The gpa of page idx in ram_crc_batch's order. */
static uint64_t page_index_gpa(const struct guest_mem *m, uint64_t idx)
{
	for (unsigned int i = 0; i < m->nregions; i++) {
		uint64_t pages = m->regions[i].size / PAGE;

		if (idx < pages)
			return m->regions[i].gpa + idx * PAGE;
		idx -= pages;
	}
	return 0;
}

/* The source's VERIFY section: the paused guest's pages as the destination should have them. */
static int verify_send(struct vm *vm, struct mig_stream *s)
{
	uint32_t crc[MIG_VERIFY_BATCH];
	uint64_t next = 0;
	unsigned int n;
	int ret = mig_chunked_begin(s, MIG_KIND_VERIFY, 0, 1);

	while (!ret && (n = mig_ram_crc_batch(&vm->mem, &next, crc)))
		ret = mig_chunk_write(s, crc, (size_t)n * 4);
	return ret ? ret : mig_chunked_end(s);
}

/*
 * The destination's side: compares the loaded RAM with the source's CRCs. A difference
 * refuses the stream (-EBADMSG, the guest is not started) and says where.
 */
static int verify_check(struct vm *vm, struct mig_stream *s)
{
	uint32_t theirs[MIG_VERIFY_BATCH], ours[MIG_VERIFY_BATCH];
	uint64_t next = 0, total = vm->mem.size / PAGE, bad = 0, first[4], t0 = monotonic_ms();
	char where[128] = "";
	ssize_t got;

	while ((got = mig_chunk_read(s, theirs, sizeof(theirs))) > 0) {
		uint64_t base = next;
		unsigned int n;

		if (got % 4)
			return -EBADMSG;
		n = mig_ram_crc_batch(&vm->mem, &next, ours);
		if (n != (size_t)got / 4) {
			log_error("migration: verification: the source has %s pages of RAM than here",
				  n < (size_t)got / 4 ? "more" : "fewer");
			return -EBADMSG;
		}
		for (unsigned int i = 0; i < n; i++)
			if (ours[i] != theirs[i] && bad++ < 4)
				first[bad - 1] = base + i;
	}
	if (got < 0)
		return (int)got;
	if (next != total) {
		log_error("migration: verification: the source checked %llu of the %llu pages here",
			  (unsigned long long)next, (unsigned long long)total);
		return -EBADMSG;
	}
	if (bad) {
		size_t len = 0;

		for (uint64_t i = 0; i < MIN(bad, 4ULL); i++) {
			uint64_t gpa = page_index_gpa(&vm->mem, first[i]);

			len += (size_t)snprintf(where + len, sizeof(where) - len, "%s0x%llx",
						i ? ", " : "", (unsigned long long)gpa);
		}
		log_error("migration: verification: %llu of %llu pages of guest RAM here differ "
			  "from the source's (at %s%s): the guest is not started here, and runs on "
			  "at the source. Pages were lost on the way: report it with both vmm logs",
			  (unsigned long long)bad, (unsigned long long)total, where,
			  bad > 4 ? ", ..." : "");
		return -EBADMSG;
	}
	log_info("migration: verified: every one of the %llu pages of guest RAM matches the "
		 "source's (%llu ms)", (unsigned long long)total,
		 (unsigned long long)(monotonic_ms() - t0));
	return 0;
}

/* ---- The paused VM's state ---- */

static int sink_chunk(void *opaque, const void *buf, size_t len)
{
	return mig_chunk_write(opaque, buf, len);
}

static int put_sbuf_section(struct mig_stream *s, uint16_t kind, uint32_t instance,
			    uint32_t version, struct sbuf *b)
{
	int ret = sbuf_error(b);

	if (!ret)
		ret = mig_write_section(s, kind, instance, version, b->data, b->len);
	sbuf_free(b);
	return ret;
}

/* Everything but RAM, the VM paused: vCPUs, serial, devices and back-ends, VM arch state. */
static int state_send(struct vm *vm, struct mig_stream *s, struct mig_progress *prog)
{
	size_t vlen = arch_vcpu_state_size(vm->arch), alen = arch_vm_state_size(vm->arch);
	uint8_t *buf = malloc(MAX(vlen, alen));
	struct sbuf b;
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (unsigned int i = 0; !ret && i < vm->ncpus; i++) {
		ssize_t n = arch_vcpu_save(vm->arch, vm->vcpus[i].fd, buf, vlen);

		if (n < 0) {
			prog_fail(prog, "cannot read vCPU %u's state: %s", i, strerror((int)-n));
			ret = (int)n;
		} else {
			ret = mig_write_section(s, MIG_KIND_VCPU, i, 1, buf, (size_t)n);
		}
	}
	if (!ret) {
		sbuf_init_writer(&b);
		serial_save(&vm->console.serial, &b);
		ret = put_sbuf_section(s, MIG_KIND_SERIAL, 0, 1, &b);
	}
	for (unsigned int i = 0; !ret && i < vm->nvdevs; i++) {
		struct virtio_mmio_dev *d = vm->vdevs[i];
		struct virtio_backend *be = d->backend;

		sbuf_init_writer(&b);
		pthread_mutex_lock(&d->lock);
		ret = virtio_mmio_save(d, &b);
		pthread_mutex_unlock(&d->lock);
		if (ret) {
			sbuf_free(&b);
			prog_fail(prog, "%s: cannot save its state: %s", vm->vdev_names[i],
				  strerror(-ret));
			break;
		}
		ret = put_sbuf_section(s, MIG_KIND_DEVICE, i, 1, &b);
		if (!ret && be && be->ops->has_state && be->ops->has_state(be)) {
			struct virtio_state_sink sink = { .chunk = sink_chunk, .opaque = s,
							  .max = 64u << 10 };

			ret = mig_chunked_begin(s, MIG_KIND_BACKEND, i, 1);
			if (!ret)
				ret = be->ops->save_state(be, &sink);
			if (!ret)
				ret = mig_chunked_end(s);
			if (ret)
				prog_fail(prog, "%s: cannot move its back-end's state: %s",
					  vm->vdev_names[i], strerror(-ret));
		}
	}
	if (!ret) {
		ssize_t n = arch_vm_save(vm->arch, buf, alen);

		if (n < 0) {
			ret = (int)n;
			prog_fail(prog, "cannot read the VM's interrupt controllers and clock: %s",
				  strerror(-ret));
		} else {
			ret = mig_write_section(s, MIG_KIND_VM_ARCH, 0, 1, buf, (size_t)n);
		}
	}
	free(buf);
	return ret;
}

static int header_and_config(struct vm *vm, struct mig_stream *s, bool live)
{
	struct sbuf b;
	int ret = mig_write_header(s, live ? MIG_F_LIVE : 0, arch_name());

	if (ret)
		return ret;
	sbuf_init_writer(&b);
	config_put(vm, &b);
	return put_sbuf_section(s, MIG_KIND_CONFIG, 0, MIG_CONFIG_VERSION, &b);
}

/* Reads the 8-byte word the destination answers with (magic) within timeout_ms; 0 or -errno. */
static int wait_word(int fd, const char *magic, int timeout_ms)
{
	char word[8];
	size_t got = 0;

	while (got < sizeof(word)) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r = poll(&pfd, 1, timeout_ms);
		ssize_t n;

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -ETIMEDOUT;
		n = read(fd, word + got, sizeof(word) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		got += (size_t)n;
	}
	return memcmp(word, magic, sizeof(word)) ? -EPROTO : 0;
}

/* Sends an 8-byte word (magic) back to the source; 0 or -errno. */
static int send_word(int fd, const char *magic)
{
	const char *p = magic;
	size_t left = 8;

	while (left) {
		ssize_t n = send(fd, p, left, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -errno;
		p += n;
		left -= (size_t)n;
	}
	return 0;
}

int migration_ack(int fd)
{
	return send_word(fd, MIG_ACK_MAGIC);
}

/*
 * Before the pause: a SYNC section, and the destination's answer once it has read
 * (and loaded) everything before it. Socket buffers and a slower reader can hold
 * megabytes of pre-copy RAM still to load at the destination; without this the guest
 * would stay paused while they drain (100-150 ms of an idle guest's pause, nested).
 */
static int sync_destination(struct mig_stream *s, int fd, int timeout_ms)
{
	int ret = mig_write_section(s, MIG_KIND_SYNC, 0, 1, NULL, 0);

	if (!ret)
		ret = mig_flush(s);
	return ret ? ret : wait_word(fd, MIG_SYNC_MAGIC, timeout_ms);
}

int migration_send(struct vm *vm, int fd, const struct mig_params *p, struct mig_progress *prog)
{
	uint64_t t0 = monotonic_ms(), tpause = 0, tstep, remaining = 0, previous = UINT64_MAX;
	bool paused = false, released = false;
	struct mig_stream s;
	struct ram_tx t;
	int ret;

	atomic_store(&prog->phase, MIG_SETUP);
	ret = migration_check(vm, prog->error, sizeof(prog->error));
	if (ret) {
		log_error("migration: %s", prog->error);
		goto out_phase;
	}
	ret = mig_stream_init(&s, fd, true, p->timeout_ms);
	if (ret)
		goto out_phase;
	ret = ram_init(&t, vm, &s, prog, p);
	if (ret) {
		prog_fail(prog, "cannot set up the dirty-page log: %s", strerror(-ret));
		goto out_stream;
	}
	ret = header_and_config(vm, &s, true);
	if (!ret)
		ret = ram_log_start(&t);
	if (ret)
		goto out;
	atomic_store(&prog->phase, MIG_PRECOPY);
	if (!p->max_downtime_ms)
		log_info("migration: max downtime 0: the guest pauses for the last copy only when "
			 "asked (`vmm migrate --finish`, PUT /api/v1/vm.migrate-finish)");
	ram_mark_all(&t);
	for (unsigned int it = 1;; it++) {
		uint64_t ts = monotonic_ms(), b0 = s.bytes, dt, bw;

		atomic_store(&prog->iteration, it);
		ret = ram_send_marked(&t);
		t.all_pages = false;
		if (!ret)
			ret = mig_flush(&s);
		if (!ret)
			ret = ram_collect(&t, &remaining);
		if (ret)
			goto out;
		dt = MAX(monotonic_ms() - ts, 1);
		bw = (s.bytes - b0) * 1000 / dt;
		if (bw)
			atomic_store(&prog->bandwidth, bw);
		bw = atomic_load(&prog->bandwidth);
		atomic_store(&prog->dirty_pages, remaining);
		atomic_store(&prog->dirty_rate, remaining * 1000 / dt);
		atomic_store(&prog->expected_downtime_ms, bw ? remaining * PAGE * 1000 / bw : 0);
		if (it <= p->max_iterations)
			log_info("migration: pass %u sent %llu MiB in %llu ms; %llu pages dirty since",
				 it, (unsigned long long)((s.bytes - b0) >> 20),
				 (unsigned long long)dt, (unsigned long long)remaining);
		if (atomic_load(&prog->cancel)) {
			ret = -ECANCELED;
			goto out;
		}
		if (atomic_load(&prog->finish))
			break;
		if (mig_precopy_done(p, it, remaining, previous,
				     atomic_load(&prog->expected_downtime_ms)))
			break;
		previous = remaining;
		if (it >= p->max_iterations && p->max_downtime_ms &&
		    !atomic_load(&prog->not_converging)) {
			atomic_store(&prog->not_converging, true);
			log_warn("migration: not converging after %u passes: the guest dirties %llu "
				 "pages/s and %llu MiB/s get through; the rest would take ~%llu ms "
				 "paused. It keeps trying; `vmm migrate --finish` (PUT "
				 "/api/v1/vm.migrate-finish) finishes now with that downtime",
				 it, (unsigned long long)atomic_load(&prog->dirty_rate),
				 (unsigned long long)(bw >> 20),
				 (unsigned long long)atomic_load(&prog->expected_downtime_ms));
		}
	}
	ret = sync_destination(&s, fd, p->timeout_ms);
	if (ret) {
		prog_fail(prog, "the destination did not confirm it had loaded the pre-copy (%s)",
			  ret == -EPROTO ? "it sent something else" : stream_error(ret));
		goto out;
	}
	/* Stop and copy. */
	atomic_store(&prog->phase, MIG_STOPCOPY);
	tpause = monotonic_ms();
	ret = vm_pause(vm, 10000);
	if (ret) {
		prog_fail(prog, "cannot pause the guest for the last copy: %s", strerror(-ret));
		goto out;
	}
	paused = true;
	tstep = monotonic_ms();
	atomic_store(&prog->stop_ms, tstep - tpause);
	ret = ram_collect(&t, &remaining);
	if (!ret)
		ret = ram_send_marked(&t);
	if (!ret && p->verify)
		ret = verify_send(vm, &s);
	atomic_store(&prog->last_ram_ms, monotonic_ms() - tstep);
	tstep = monotonic_ms();
	if (!ret)
		ret = state_send(vm, &s, prog);
	/* The destination takes the disks once it has read END: let them go before it. */
	if (!ret) {
		released = true;
		ret = vm_switchover(vm, false);
		if (ret)
			prog_fail(prog, "cannot release the devices for the destination: %s",
				  strerror(-ret));
	}
	if (!ret)
		ret = mig_write_end(&s);
	if (ret)
		goto out;
	atomic_store(&prog->state_ms, monotonic_ms() - tstep);
	tstep = monotonic_ms();
	ret = wait_word(fd, MIG_ACK_MAGIC, ACK_TIMEOUT_MS);
	if (ret) {
		prog_fail(prog, "the destination did not confirm it runs the guest (%s) — the guest "
			  "runs on here", ret == -EPROTO ? "it sent something else" : stream_error(ret));
		goto out;
	}
	atomic_store(&prog->destination_ms, monotonic_ms() - tstep);
	atomic_store(&prog->downtime_ms, monotonic_ms() - tpause);
	atomic_store(&prog->total_ms, monotonic_ms() - t0);
	atomic_store(&prog->bytes, s.bytes);
	ram_fini(&t);
	mig_stream_fini(&s);
	atomic_store(&prog->phase, MIG_DONE);
	log_info("migration: done in %llu ms, guest paused %llu ms (stopping %llu, last %llu "
		 "pages %llu, state %llu, destination's load and start %llu), %llu MiB sent in "
		 "%u passes", (unsigned long long)atomic_load(&prog->total_ms),
		 (unsigned long long)atomic_load(&prog->downtime_ms),
		 (unsigned long long)atomic_load(&prog->stop_ms), (unsigned long long)remaining,
		 (unsigned long long)atomic_load(&prog->last_ram_ms),
		 (unsigned long long)atomic_load(&prog->state_ms),
		 (unsigned long long)atomic_load(&prog->destination_ms),
		 (unsigned long long)(s.bytes >> 20), atomic_load(&prog->iteration));
	return 0;
out:
	if (ret && !prog->error[0])
		prog_fail(prog, "%s (%s)%s%s", ret == -ECANCELED ? "cancelled" : stream_error(ret),
			  strerror(-ret), mig_stream_why(&s)[0] ? ": " : "", mig_stream_why(&s));
	ram_fini(&t);
	if (released && vm_switchover(vm, true)) {
		/*
		 * The destination holds a disk now: it runs the guest although its word never came.
		 * Two copies must never write one disk: this one stays paused for good.
		 */
		log_error("migration: the destination took the disks but its confirmation never "
			  "came: the guest runs there; this copy stays paused — stop it");
		snprintf(prog->error, sizeof(prog->error), "the destination took over the devices "
			 "without confirming: the guest runs there, this copy stays paused");
		paused = false;
	}
	if (paused)
		vm_resume(vm);
out_stream:
	mig_stream_fini(&s);
out_phase:
	atomic_store(&prog->phase, MIG_FAILED);
	return ret ? ret : -EIO;
}

int migration_snapshot(struct vm *vm, int fd, bool leave_paused, struct mig_progress *prog)
{
	bool was_paused = vm_is_paused(vm);
	struct mig_stream s;
	struct ram_tx t;
	uint64_t t0 = monotonic_ms();
	int ret;

	atomic_store(&prog->phase, MIG_SETUP);
	ret = migration_check(vm, prog->error, sizeof(prog->error));
	if (ret) {
		log_error("snapshot: %s", prog->error);
		goto out_phase;
	}
	if (!was_paused) {
		ret = vm_pause(vm, 10000);
		if (ret) {
			prog_fail(prog, "cannot pause the guest: %s", strerror(-ret));
			goto out_phase;
		}
	}
	ret = mig_stream_init(&s, fd, true, 30000);
	if (ret)
		goto out_resume;
	ret = ram_init(&t, vm, &s, prog, &(struct mig_params){ 0 });
	if (!ret) {
		atomic_store(&prog->phase, MIG_STOPCOPY);
		ret = header_and_config(vm, &s, false);
		ram_mark_all(&t);
		if (!ret)
			ret = ram_send_marked(&t);
		if (!ret)
			ret = state_send(vm, &s, prog);
		if (!ret)
			ret = mig_write_end(&s);
		ram_fini(&t);
	}
	if (ret && !prog->error[0])
		prog_fail(prog, "cannot write the snapshot: %s%s%s", stream_error(ret),
			  mig_stream_why(&s)[0] ? ": " : "", mig_stream_why(&s));
	atomic_store(&prog->bytes, s.bytes);
	mig_stream_fini(&s);
out_resume:
	if (!was_paused && !leave_paused)
		vm_resume(vm);
	atomic_store(&prog->total_ms, monotonic_ms() - t0);
out_phase:
	atomic_store(&prog->phase, ret ? MIG_FAILED : MIG_DONE);
	return ret;
}

/* ---- Loading ---- */

static int ram_load(struct vm *vm, struct mig_stream *s, const struct mig_section *sec)
{
	uint8_t hdr[RAM_HDR];
	uint64_t gpa;
	uint32_t n, flags;
	uint8_t *hva;
	int ret;

	if (sec->version != MIG_RAM_VERSION || sec->len < RAM_HDR)
		return -EBADMSG;
	ret = mig_section_read(s, hdr, sizeof(hdr));
	if (ret)
		return ret;
	memcpy(&gpa, hdr, 8);
	memcpy(&n, hdr + 8, 4);
	memcpy(&flags, hdr + 12, 4);
	if (gpa % PAGE || !n || n > RUN_MAX || flags & ~RAM_ZERO ||
	    sec->len != RAM_HDR + ((flags & RAM_ZERO) ? 0 : (uint64_t)n * PAGE))
		return -EBADMSG;
	hva = guest_mem_ptr(&vm->mem, gpa, (uint64_t)n * PAGE);
	if (!hva)
		return -EBADMSG;
	if (flags & RAM_ZERO) {
		/* Holes (never-written RAM) are zero already: reading a memfd's would allocate it. */
		for (uint32_t i = 0; i < n;) {
			uint64_t ext, m;
			bool hole = guest_mem_extent(&vm->mem, gpa + (uint64_t)i * PAGE, &ext);

			m = MIN(MAX(ext / PAGE, 1), (uint64_t)(n - i));
			for (uint64_t j = i; !hole && j < i + m; j++)
				if (!page_is_zero(hva + j * PAGE))
					memset(hva + j * PAGE, 0, PAGE);
			i += (uint32_t)m;
		}
	} else {
		ret = mig_section_read(s, hva, (size_t)n * PAGE);
		if (ret)
			return ret;
	}
	return mig_section_finish(s);
}

static ssize_t source_chunk(void *opaque, void *buf, size_t cap)
{
	return mig_chunk_read(opaque, buf, cap);
}

/* One section's payload read whole into an sbuf reader; *mem to free. */
static int read_sbuf(struct mig_stream *s, struct sbuf *b, void **mem)
{
	int ret = mig_section_read_all(s, mem);

	if (!ret)
		sbuf_init_reader(b, *mem, (size_t)s->cur.len);
	return ret;
}

int migration_load(struct vm *vm, int fd, bool live, bool header_read)
{
	struct mig_stream s;
	struct mig_section sec;
	bool config = header_read, vm_arch = false;
	/* Which vCPUs and devices the stream loaded (each must come exactly once). */
	bool vcpu_seen[VMM_MAX_CPUS] = { false }, dev_seen[VM_MAX_VIRTIO_DEVICES] = { false };
	unsigned int vcpus = 0, devices = 0;
	/* Where the paused state's load goes: from the first vCPU section to END. */
	uint64_t t_state = 0, t_backends = 0;
	int ret;

	ret = mig_stream_init(&s, fd, false, live ? 60000 : 30000);
	if (ret)
		return ret;
	if (!header_read) {
		ret = mig_read_header(&s);
		if (!ret && strcmp(s.arch, arch_name())) {
			log_error("migration: the stream is of a %s VM; this vmm runs %s VMs",
				  s.arch, arch_name());
			ret = -EINVAL;
			goto out;
		}
	} else {
		/* migration_read_config() left the file after CONFIG. */
	}
	while (!ret) {
		struct sbuf b;
		void *mem = NULL;

		ret = mig_section_next(&s, &sec);
		if (ret)
			break;
		if (!config && sec.kind != MIG_KIND_CONFIG) {
			log_error("migration: the stream does not start with the VM's configuration");
			ret = -EPROTO;
			break;
		}
		switch (sec.kind) {
		case MIG_KIND_CONFIG:
			ret = read_sbuf(&s, &b, &mem);
			if (!ret)
				ret = config_check(vm, &b);
			config = true;
			break;
		case MIG_KIND_RAM:
			ret = ram_load(vm, &s, &sec);
			break;
		case MIG_KIND_VCPU:
			if (!t_state)
				t_state = monotonic_ms();
			ret = sec.instance < vm->ncpus && !vcpu_seen[sec.instance] ?
			      read_sbuf(&s, &b, &mem) : -EBADMSG;
			if (!ret)
				ret = arch_vcpu_restore(vm->arch, vm->vcpus[sec.instance].fd, mem,
							(size_t)sec.len);
			if (ret)
				log_error("migration: vCPU %u's state does not load here: %s",
					  sec.instance, strerror(-ret));
			else
				vcpu_seen[sec.instance] = true;
			vcpus++;
			break;
		case MIG_KIND_SERIAL:
			ret = read_sbuf(&s, &b, &mem);
			if (!ret)
				ret = serial_load(&vm->console.serial, &b);
			break;
		case MIG_KIND_DEVICE:
			ret = sec.instance < vm->nvdevs && !dev_seen[sec.instance] ?
			      read_sbuf(&s, &b, &mem) : -EBADMSG;
			if (!ret) {
				struct virtio_mmio_dev *d = vm->vdevs[sec.instance];

				pthread_mutex_lock(&d->lock);
				ret = virtio_mmio_load(d, &b);
				pthread_mutex_unlock(&d->lock);
				if (ret)
					log_error("migration: %s's state does not load here: %s",
						  vm->vdev_names[sec.instance], strerror(-ret));
				dev_seen[sec.instance] = true;
				devices++;
			}
			break;
		case MIG_KIND_BACKEND: {
			struct virtio_backend *be = sec.instance < vm->nvdevs ?
						    vm->vdevs[sec.instance]->backend : NULL;
			struct virtio_state_source src = { .chunk = source_chunk, .opaque = &s };

			if (!be || !be->ops->load_state) {
				log_error("migration: the stream has back-end state for device %u, "
					  "whose back-end here cannot take it", sec.instance);
				ret = -EINVAL;
			} else {
				uint64_t t0 = monotonic_ms();

				ret = be->ops->load_state(be, &src);
				t_backends += monotonic_ms() - t0;
				if (ret)
					log_error("migration: %s's back-end refused its state: %s",
						  vm->vdev_names[sec.instance], strerror(-ret));
			}
			break;
		}
		case MIG_KIND_VM_ARCH:
			ret = read_sbuf(&s, &b, &mem);
			if (!ret)
				ret = arch_vm_restore(vm->arch, mem, (size_t)sec.len);
			vm_arch = true;
			break;
		case MIG_KIND_VERIFY:
			ret = live ? verify_check(vm, &s) : -EBADMSG;
			break;
		case MIG_KIND_SYNC:
			/* Everything before it is loaded: say so (a snapshot has none). */
			ret = mig_section_skip(&s);
			if (!ret && live)
				ret = send_word(fd, MIG_SYNC_MAGIC);
			break;
		case MIG_KIND_END:
			free(mem);
			if (t_state)
				log_info("migration: the paused state loaded in %llu ms (back-ends' state "
					 "%llu ms)", (unsigned long long)(monotonic_ms() - t_state),
					 (unsigned long long)t_backends);
			goto end;
		default:
			ret = mig_section_skip(&s);
			break;
		}
		free(mem);
	}
	goto out;
end:
	if (vcpus != vm->ncpus || devices != vm->nvdevs || !vm_arch) {
		log_error("migration: the stream ended without the whole VM (%u of %u vCPUs, %u of "
			  "%u devices%s)", vcpus, vm->ncpus, devices, vm->nvdevs,
			  vm_arch ? "" : ", no interrupt controllers");
		ret = -EBADMSG;
	}
out:
	if (ret && ret != -EINVAL)
		log_error("migration: cannot load the %s: %s%s%s", live ? "incoming stream" : "snapshot",
			  stream_error(ret), mig_stream_why(&s)[0] ? ": " : "", mig_stream_why(&s));
	mig_stream_fini(&s);
	return ret;
}

void migration_config_free(char **argv)
{
	for (char **a = argv; a && *a; a++)
		free(*a);
	free(argv);
}

int migration_read_config(int fd, int *argc, char ***argv)
{
	struct mig_stream s;
	struct mig_section sec;
	struct sbuf b;
	void *mem = NULL;
	char **v = NULL;
	uint32_t n = 0;
	int ret = mig_stream_init(&s, fd, false, 30000);

	if (ret)
		return ret;
	ret = mig_read_header(&s);
	if (!ret)
		ret = mig_section_next(&s, &sec);
	if (!ret && sec.kind != MIG_KIND_CONFIG)
		ret = -EPROTO;
	if (!ret)
		ret = read_sbuf(&s, &b, &mem);
	if (!ret) {
		uint32_t nreg, ndev;

		sbuf_get_u32(&b);
		sbuf_get_u64(&b);
		nreg = sbuf_get_u32(&b);
		for (uint32_t i = 0; i < nreg && !sbuf_error(&b); i++) {
			sbuf_get_u64(&b);
			sbuf_get_u64(&b);
		}
		ndev = sbuf_get_u32(&b);
		for (uint32_t i = 0; i < ndev && !sbuf_error(&b); i++) {
			char name[64];

			sbuf_get_u32(&b);
			sbuf_get_u32(&b);
			sbuf_get_u64(&b);
			sbuf_get_u32(&b);
			sbuf_get_u32(&b);
			sbuf_get_str(&b, name, sizeof(name));
		}
		n = sbuf_get_u32(&b);
		if (sbuf_error(&b) || n > 512)
			ret = -EBADMSG;
		else if (!(v = calloc(n + 2, sizeof(*v))))
			ret = -ENOMEM;
		for (uint32_t i = 0; !ret && i <= n; i++) {
			char arg[4096];

			v[i] = i ? (sbuf_get_str(&b, arg, sizeof(arg)) ? strdup(arg) : NULL)
				 : strdup("vmm");
			if (!v[i])
				ret = sbuf_error(&b) ? -EBADMSG : -ENOMEM;
		}
	}
	free(mem);
	if (ret) {
		log_error("cannot read the snapshot's configuration: %s%s%s", stream_error(ret),
			  mig_stream_why(&s)[0] ? ": " : "", mig_stream_why(&s));
		migration_config_free(v);
		mig_stream_fini(&s);
		return ret;
	}
	/* The file offset must be where the next section starts: give back what was buffered. */
	if (lseek(fd, -(off_t)(s.fill - s.pos), SEEK_CUR) < 0)
		ret = -errno;
	mig_stream_fini(&s);
	*argc = (int)n + 1;
	*argv = v;
	return ret;
}
