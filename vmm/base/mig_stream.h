/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The migration and snapshot stream: one format for a live migration over TCP
 * and for a snapshot file. Everything in it is hostile to its reader: every
 * length is bounded, every section checksummed, and a reader that meets a
 * stream it cannot take says why and stops before anything of it is used.
 *
 * Layout (all integers little-endian unless said otherwise):
 *
 *   stream header   "VMMSTATE" (8 bytes), u32 version (MIG_VERSION),
 *                   u32 flags (MIG_F_*), u8[16] arch name (NUL-padded, e.g. "x86_64"),
 *                   u32 crc32c of the previous 32 bytes; this header keeps its
 *                   layout in every version, so a reader checks its magic and crc
 *                   before it looks at the version
 *   section*        u32 magic MIG_SECTION_MAGIC, u16 kind (enum mig_kind),
 *                   u16 flags (MIG_SECTION_CHUNKED), u32 instance, u32 version of the
 *                   section's own payload format, u64 length (0 when chunked),
 *                   u32 crc32c of those 24 bytes,
 *                   then the body:
 *                     plain:   length bytes, then u32 crc32c of them
 *                     chunked: frames of a **be32** length and that many bytes (1..MIG_CHUNK_MAX),
 *                              ending with a 0-length frame (QEMU's vhost device-state
 *                              transfer framing, include/hw/virtio/vhost.h), then u32 crc32c
 *                              of every chunk's bytes in order
 *   end             a section header of kind MIG_KIND_END, length 0, not chunked,
 *                   and no body (nothing follows it, not even a crc)
 *
 * A plain section's length is at most MIG_SECTION_MAX except for RAM sections,
 * which a reader consumes in pieces (mig_section_read) straight into guest RAM.
 *
 * I/O: over a blocking or non-blocking fd (socket, pipe or file), buffered,
 * each wait for the peer bounded by timeout_ms (poll); EINTR retried. A writer
 * never raises SIGPIPE (MSG_NOSIGNAL on a socket; on a pipe SIGPIPE is blocked
 * in the writing thread around each write and a SIGPIPE it raised is consumed).
 * On a blocking pipe each write is at most PIPE_BUF bytes after poll() said it
 * fits, so a full pipe is a timeout, never a hang; on a socket every call is
 * MSG_DONTWAIT. A regular file is read and written without poll().
 * Errors are sticky: after the first failure every call returns it (misuse by
 * the caller included: -EINVAL), and mig_stream_why() says what it was.
 *
 * Errors: -EPROTO (not a stream: bad magic, bad section magic, unknown kind or
 * section flags, an arch name without its NUL), -EPROTONOSUPPORT (a version or
 * stream flags this build does not read), -EBADMSG (checksum, a length out of
 * bounds, a section read past its end or finished early, truncated stream),
 * -ETIMEDOUT (the peer was silent for timeout_ms), -EPIPE/-ECONNRESET (the peer
 * went away), -EINVAL (the caller broke a rule below), -EFBIG (a writer's plain
 * non-RAM section longer than MIG_SECTION_MAX), other -errno from the fd.
 */
#ifndef VMM_BASE_MIG_STREAM_H
#define VMM_BASE_MIG_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MIG_MAGIC		"VMMSTATE"
#define MIG_VERSION		3	/* written; 2 added MIG_KIND_SYNC, 3 MIG_KIND_VERIFY */
#define MIG_VERSION_MIN		1	/* the oldest read (a version-1 snapshot loads) */
#define MIG_SECTION_MAGIC	0x54434553u	/* "SECT" */
#define MIG_SECTION_MAX		(16u << 20)	/* a plain non-RAM section's largest length */
#define MIG_CHUNK_MAX		(1u << 20)	/* a chunk's largest length */
#define MIG_ARCH_LEN		16

/* Stream header flags. */
#define MIG_F_LIVE		(1u << 0)	/* a live migration (else a snapshot) */

/* Section flags. */
#define MIG_SECTION_CHUNKED	(1u << 0)

/* What a section holds; the instance number says which one (vCPU index, device index). */
enum mig_kind {
	MIG_KIND_CONFIG = 1,	/* the VM's configuration: the destination checks it matches */
	MIG_KIND_RAM = 2,	/* guest pages (the migration core's page-run format) */
	MIG_KIND_VCPU = 3,	/* one vCPU's arch state (arch_vcpu_save) */
	MIG_KIND_VM_ARCH = 4,	/* the VM's arch state (arch_vm_save: irqchip, PIT, clock) */
	MIG_KIND_SERIAL = 5,	/* the 16550's registers */
	MIG_KIND_DEVICE = 6,	/* one virtio-mmio device: transport, queues, model (virtio_mmio_save) */
	MIG_KIND_BACKEND = 7,	/* one device back-end's internal state, chunked (vhost-user DEVICE_STATE) */
	MIG_KIND_SYNC = 8,	/* length 0: a live destination answers MIG_SYNC_MAGIC once read */
	MIG_KIND_VERIFY = 9,	/* chunked: every RAM page's CRC-32C after the last copy */
	MIG_KIND_END = 0xffff,	/* the last section; length 0 */
};

/* One section as its header says. */
struct mig_section {
	uint16_t kind;		/* enum mig_kind */
	uint16_t flags;		/* MIG_SECTION_CHUNKED */
	uint32_t instance;
	uint32_t version;	/* the payload format's own version */
	uint64_t len;		/* plain: body length; chunked: 0 */
};

#define MIG_BUF_SIZE	(256u << 10)

struct mig_stream {
	int fd;			/* not owned */
	bool writing;
	bool is_socket;
	int timeout_ms;		/* a bound on each wait for the peer; <0: none */
	int err;		/* sticky */
	uint64_t bytes;		/* bytes written to / read from fd so far */
	uint8_t *buf;		/* MIG_BUF_SIZE */
	size_t fill, pos;	/* reader: buf[pos, fill) is unread; writer: buf[0, fill) unsent */
	/* The open section. */
	bool in_section;
	struct mig_section cur;
	uint64_t done;		/* body bytes written/read so far (chunked: chunk bytes) */
	uint32_t crc;		/* running crc32c of the body */
	char arch[MIG_ARCH_LEN];	/* reader: the header's arch */
	uint32_t flags;		/* reader: the header's flags */
	/* Private. */
	int phase;		/* before the header, between sections, after END */
	bool is_fifo;		/* a pipe: SIGPIPE blocked around writes */
	bool poll_first;	/* poll() before each read/write (a blocking pipe, a tty) */
	size_t max_write;	/* the largest single write (PIPE_BUF on a blocking pipe) */
	char why[128];		/* the first error in words */
};

/* The CRC-32C (Castagnoli) of buf, continuing from crc (start with 0). */
uint32_t mig_crc32c(uint32_t crc, const void *buf, size_t len);

/*
 * mig_crc32c() of src while copying its len bytes to dst, reading each byte
 * once (so the checksum is of the bytes stored even if src changes meanwhile).
 */
uint32_t mig_crc32c_copy(uint32_t crc, void *dst, const void *src, size_t len);

/* The same by tables (what mig_crc32c() uses on a CPU without a CRC-32C instruction). */
uint32_t mig_crc32c_soft(uint32_t crc, const void *buf, size_t len);
uint32_t mig_crc32c_copy_soft(uint32_t crc, void *dst, const void *src, size_t len);

/* Prepares s over fd for writing or reading; 0 or -ENOMEM. fd stays the caller's. */
int mig_stream_init(struct mig_stream *s, int fd, bool writing, int timeout_ms);

/* Frees the buffer (a writer should mig_flush() first); safe twice. */
void mig_stream_fini(struct mig_stream *s);

/*
 * What the first error was, in words, for the caller's log_error() (e.g.
 * "device section 1: the body's checksum does not match at byte 81232"); "" if none.
 */
const char *mig_stream_why(const struct mig_stream *s);

/* ---- writing ---- */

/* The stream header (once, first; arch shorter than MIG_ARCH_LEN); 0 or -errno. */
int mig_write_header(struct mig_stream *s, uint32_t flags, const char *arch);

/*
 * Opens a plain section of exactly len bytes; 0 or -errno (-EINVAL: a section is open,
 * no header yet, or kind is END or unknown; -EFBIG: a non-RAM section over MIG_SECTION_MAX).
 */
int mig_section_begin(struct mig_stream *s, uint16_t kind, uint32_t instance, uint32_t version,
		      uint64_t len);

/* Appends body bytes to the open plain section; -EINVAL past its length. */
int mig_section_write(struct mig_stream *s, const void *buf, size_t len);

/*
 * As mig_section_write, for bytes that may change while they are written (guest RAM
 * during pre-copy): they are copied into the stream's buffer first, and the checksum is
 * of that copy, so what is sent and its checksum always agree.
 */
int mig_section_write_live(struct mig_stream *s, const void *buf, size_t len);

/*
 * Closes the open section with its crc: plain (all len bytes written, else -EINVAL) or
 * chunked (as mig_chunked_end).
 */
int mig_section_end(struct mig_stream *s);

/* begin + write + end for a section held in memory. */
int mig_write_section(struct mig_stream *s, uint16_t kind, uint32_t instance, uint32_t version,
		      const void *buf, size_t len);

/* Opens a chunked section. */
int mig_chunked_begin(struct mig_stream *s, uint16_t kind, uint32_t instance, uint32_t version);

/*
 * Appends len bytes to the open chunked section as one chunk, or as several of at most
 * MIG_CHUNK_MAX bytes when longer; 0 bytes is a no-op.
 */
int mig_chunk_write(struct mig_stream *s, const void *buf, size_t len);

/* Closes the chunked section: the 0-length frame and the crc. */
int mig_chunked_end(struct mig_stream *s);

/* The END section and a flush; no section may follow. */
int mig_write_end(struct mig_stream *s);

/* Sends what is buffered; 0 or -errno. */
int mig_flush(struct mig_stream *s);

/* ---- reading ---- */

/* Reads and checks the stream header (s->arch, s->flags filled); 0 or -errno. */
int mig_read_header(struct mig_stream *s);

/*
 * Reads the next section's header into *sec (the previous section must have been
 * finished); checks its magic, crc, kind, flags and, for plain non-RAM sections, length
 * <= MIG_SECTION_MAX. 0 or -errno. The section is then open, except END, which
 * has no body: the stream is over, and a further call is -EINVAL.
 */
int mig_section_next(struct mig_stream *s, struct mig_section *sec);

/* Reads len bytes of the open plain section's body; -EBADMSG past its end. */
int mig_section_read(struct mig_stream *s, void *buf, size_t len);

/*
 * Reads the whole body of the open plain section into a new buffer (*out, freed by the
 * caller; its length is sec.len, at most MIG_SECTION_MAX) and finishes it. 0 or -errno
 * (*out NULL): -EBADMSG for a RAM section over MIG_SECTION_MAX, -EINVAL after a partial
 * read or on a chunked section. The buffer grows as bytes arrive, so a length the peer
 * claims costs memory only once it sent the bytes.
 */
int mig_section_read_all(struct mig_stream *s, void **out);

/*
 * Reads the next chunk of the open chunked section into buf (cap bytes): returns its
 * length, or 0 at the 0-length frame (the section's crc is then checked and the section
 * finished). A chunk longer than cap or MIG_CHUNK_MAX is -EBADMSG; -EINVAL if no chunked
 * section is open.
 */
ssize_t mig_chunk_read(struct mig_stream *s, void *buf, size_t cap);

/*
 * Closes the open plain section: every byte read and the crc matches, else -EBADMSG
 * (also for a chunked section before its 0-length frame).
 */
int mig_section_finish(struct mig_stream *s);

/* Skips the rest of the open section (plain or chunked), checking its crc. */
int mig_section_skip(struct mig_stream *s);

#endif
