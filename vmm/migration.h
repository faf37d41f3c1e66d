/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Live migration and snapshots: a VM's state into a stream (vmm/base/mig_stream.h)
 * and back. One engine for both: a live migration sends RAM while the guest runs
 * (pre-copy with KVM's and every vhost back-end's dirty logs), then pauses it
 * and sends what changed and the rest of the state; a snapshot pauses first and
 * sends it all once. docs/migration.md has the stream's sections and the steps.
 *
 * Order of the sections: CONFIG (the destination checks that its VM has the same
 * shape: vCPUs, RAM, devices in the same slots), RAM (many), then, with the VM
 * paused, RAM (the last dirty pages), VCPU (each), SERIAL, DEVICE (each virtio
 * device) with its BACKEND state when it has one (vhost-user DEVICE_STATE,
 * chunked), VM_ARCH last (irqchip, PIT, kvmclock: set after the vCPUs, as KVM
 * needs), END.
 *
 * Failure rules: the source resumes its guest after any failure (nothing lost:
 * the guest only paused); a destination refuses a stream it cannot take before
 * its guest ever runs, and exits non-zero.
 */
#ifndef VMM_MIGRATION_H
#define VMM_MIGRATION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct sbuf;
struct guest_mem;

/* The CONFIG section's payload version; RAM's; the acknowledgement a destination sends. */
#define MIG_CONFIG_VERSION	1
#define MIG_RAM_VERSION		1
#define MIG_ACK_MAGIC		"VMMACK01"
/* The destination's answer to a SYNC section (8 bytes, like the acknowledgement). */
#define MIG_SYNC_MAGIC		"VMMSYNC1"

struct mig_params {
	/* Stop-and-copy once the rest fits in this (default 300); 0: only when asked
	 * (mig_progress.finish), the switch-over an orchestrator times itself. */
	uint64_t max_downtime_ms;
	uint64_t bandwidth;		/* bytes per second at most; 0: as fast as the link goes */
	unsigned int max_iterations;	/* pre-copy passes before saying it does not converge */
	/* Passes go on while each still halves the dirty set, down to this many pages, even
	 * once the rest fits max_downtime_ms: the pause is only as long as it must be. */
	uint64_t small_dirty_pages;
	int timeout_ms;			/* a silent peer for this long fails the migration */
	/* After the last copy, a checksum of every page: the destination refuses a guest
	 * whose RAM differs from the source's (the source's guest then runs on). */
	bool verify;
};

enum mig_phase {
	MIG_NONE = 0,
	MIG_SETUP,		/* connecting, checking devices */
	MIG_PRECOPY,		/* RAM while the guest runs */
	MIG_STOPCOPY,		/* the guest is paused: the rest */
	MIG_DONE,		/* the destination has the guest */
	MIG_FAILED,		/* the source guest runs on (error says why) */
};

/* What a migration has done so far; written by its thread, read by anyone (atomics). */
struct mig_progress {
	_Atomic int phase;			/* enum mig_phase */
	_Atomic unsigned int iteration;		/* pre-copy passes started */
	_Atomic uint64_t bytes;			/* stream bytes sent */
	_Atomic uint64_t pages;			/* guest pages sent (zero runs included) */
	_Atomic uint64_t dirty_pages;		/* pages dirty at the end of the last pass */
	_Atomic uint64_t dirty_rate;		/* pages per second dirtied in the last pass */
	_Atomic uint64_t bandwidth;		/* bytes per second measured in the last pass */
	_Atomic uint64_t expected_downtime_ms;
	_Atomic uint64_t total_ms;		/* from start to the destination's ack */
	_Atomic uint64_t downtime_ms;		/* guest paused on the source until the ack */
	/* downtime_ms's parts: holding the vCPUs and stopping the queues, the last dirty
	 * pages, the devices' and back-ends' state, the destination's load and start. */
	_Atomic uint64_t stop_ms, last_ram_ms, state_ms, destination_ms;
	_Atomic bool not_converging;		/* max_iterations passed; keeps going until finish */
	_Atomic bool finish;			/* asked: stop-and-copy now, whatever the downtime */
	_Atomic bool cancel;			/* asked: give up, the guest runs on */
	char error[256];			/* when FAILED: what went wrong and what to do */
};

/*
 * The CRC-32C of every page of guest RAM (little-endian), in gpa order, a batch at a time
 * (what a VERIFY section carries): fills crc[] with up to MIG_VERIFY_BATCH of them from
 * page *next on (an index over all regions' pages) and advances *next; returns how many
 * (0 at the end). A hole (never-written RAM) counts as a zero page without being read, so
 * it matches a zero page that was written. Only while nothing writes guest RAM.
 */
#define MIG_VERIFY_BATCH	1024u	/* CRCs per chunk: 4 KiB */
unsigned int mig_ram_crc_batch(const struct guest_mem *m, uint64_t *next, uint32_t *crc);

/* Defaults for p: 300 ms downtime, no bandwidth cap, 30 passes, 256 pages, 30 s timeout. */
void mig_params_default(struct mig_params *p);

/*
 * Whether pre-copy ends after pass number pass, which left remaining dirty pages
 * (previous: what the pass before left; UINT64_MAX after the first) and whose
 * rest would take expected_ms paused: the rest must fit p->max_downtime_ms, and
 * the set must have stopped halving, be small (p->small_dirty_pages) or the
 * passes be at p->max_iterations. Never with p->max_downtime_ms 0.
 */
bool mig_precopy_done(const struct mig_params *p, unsigned int pass, uint64_t remaining,
		      uint64_t previous, uint64_t expected_ms);

/*
 * Whether every device of vm can be migrated (their back-ends' migratable());
 * 0, or -EOPNOTSUPP with the reason in why.
 */
int migration_check(struct vm *vm, char *why, size_t whylen);

/*
 * Sends the running VM over fd (a connected socket) as a live migration and waits
 * for the destination's acknowledgement. 0: the destination runs the guest (the
 * caller stops this VM: VM_MIGRATED). Else -errno with prog->error filled and the
 * guest running again here. From any thread but a vCPU's, not concurrently with
 * vm_pause/vm_resume.
 */
int migration_send(struct vm *vm, int fd, const struct mig_params *p, struct mig_progress *prog);

/*
 * Writes a snapshot of vm into fd (a file): pauses the guest if it runs, writes
 * everything, and resumes it if it was running (leave_paused: keep it paused).
 * 0 or -errno with prog->error filled.
 */
int migration_snapshot(struct vm *vm, int fd, bool leave_paused, struct mig_progress *prog);

/*
 * The CONFIG section's run arguments (the `vmm run` options that built the VM),
 * for a restore: reads the stream's header and CONFIG section from fd (a file,
 * left positioned at the next section) and returns them in *argv: "vmm" then
 * the options, argc entries, NULL-terminated, freed with migration_config_free()
 * once the configuration parsed from them is no longer used. 0 or -errno after
 * log_error().
 */
int migration_read_config(int fd, int *argc, char ***argv);

/* Frees migration_read_config()'s argv; NULL is fine. */
void migration_config_free(char **argv);

/*
 * Loads a stream from fd into vm, created (vm_create) but not started, whose
 * configuration must have the same shape. live: fd is a migration socket (an
 * acknowledgement is sent back at the end); else a snapshot file whose header
 * and CONFIG section were already read (migration_read_config). On success the
 * VM is ready for vm_start_loaded(). -errno after log_error() with what was
 * wrong with the stream (the VM must then be destroyed, never started).
 */
int migration_load(struct vm *vm, int fd, bool live, bool header_read);

/* Sends the acknowledgement on a live migration's socket (after a successful load). */
int migration_ack(int fd);

#endif
