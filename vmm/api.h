/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The control API: HTTP/1.1 with JSON bodies on a unix socket, shaped like
 * Cloud Hypervisor's and Firecracker's (`curl --unix-socket PATH
 * http://localhost/api/v1/vm.info`). Every request and reply is in
 * docs/api.md.
 *
 * Two halves:
 *   - api_handle(): one request (method, path, body) to one reply (status,
 *     JSON body), through a table of routes; pure, so unit tests and the fuzz
 *     target drive it without a socket or KVM. What it does to the VM goes
 *     through struct api_ops (vmm/control.c implements them over struct vm).
 *   - struct api_server: libmicrohttpd on a listening unix socket, served by
 *     one thread of its own, `vmm-api`, which calls api_handle() and so the
 *     ops. Bodies are capped (API_MAX_BODY), connections too (API_MAX_CONNS),
 *     and an idle one is closed after API_IDLE_TIMEOUT_S; nothing a client
 *     sends stops the VM except PUT vm.shutdown.
 *
 * JSON is jansson's (parsing with duplicate keys refused); HTTP is
 * libmicrohttpd's. Neither is parsed by hand here.
 */
#ifndef VMM_API_H
#define VMM_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define API_PREFIX		"/api/v1/"
#define API_MAX_BODY		(64 * 1024)	/* bytes of request body accepted */
#define API_MAX_CONNS		64		/* clients at once; more are closed at accept */
#define API_IDLE_TIMEOUT_S	10		/* a client silent this long is disconnected */

/*
 * What the API does to the VM. Each returns 0 or -errno:
 *   -EALREADY  the VM is already in the state asked for (paused, running) → 409
 *   -ESHUTDOWN the VM is stopping → 409
 *   -EAGAIN    no VM right now (starting, rebooting) → 503
 *   -ETIMEDOUT the VM did not get there in time and runs on as before → 503
 *   other      → 500
 * Called on the API's thread, one at a time.
 */
/* PUT vm.migrate's body. */
struct api_migrate_args {
	const char *to;			/* tcp:HOST:PORT */
	uint64_t max_downtime_ms;	/* default 300 */
	uint64_t bandwidth;		/* bytes per second; 0: no cap */
	bool verify;			/* the destination checks every page against the source's */
};

struct api_ops {
	/* Fills the object `out` with vm.info's members (state, config, uptime ...). */
	int (*info)(void *opaque, json_t *out);
	int (*pause)(void *opaque);
	int (*resume)(void *opaque);
	/* Stops the guest; vmm then exits 0. Called once the reply is sent. */
	int (*shutdown)(void *opaque);

	/*
	 * Migration and snapshots (NULL: not offered → 501). `why` gets a one-line
	 * reason on failure. migrate: connects to `to` (tcp:HOST:PORT) and starts a
	 * live migration in the background (progress: migration); 0, -EBUSY (one
	 * runs) → 409, -EINVAL (bad to) → 400, -EOPNOTSUPP (a device cannot move) →
	 * 409, a connect error (-ECONNREFUSED ...) → 502.
	 */
	int (*migrate)(void *opaque, const struct api_migrate_args *a, char *why, size_t whylen);
	/* The current or last migration's progress into out; -ENOENT: none yet → 404. */
	int (*migration)(void *opaque, json_t *out);
	/* Stop-and-copy now whatever the downtime / give up; -ENOENT: none runs → 409. */
	int (*migrate_finish)(void *opaque);
	int (*migrate_cancel)(void *opaque);
	/* Writes a snapshot to path (a new file); out gets {bytes, ms}. -EEXIST → 409. */
	int (*snapshot)(void *opaque, const char *path, json_t *out, char *why, size_t whylen);
	/*
	 * `vmm run --incoming defer`: listens at from (tcp:HOST:PORT) for the migration;
	 * 0 once listening → 202; -EALREADY (not waiting, or already set up) → 409;
	 * -EINVAL (bad address) → 400; another -errno (cannot listen) → 500.
	 */
	int (*receive)(void *opaque, const char *from, char *why, size_t whylen);
	/*
	 * `vmm run --incoming defer`: the guest comes from the snapshot file at path
	 * instead; 0 once it checked as a snapshot → 202; -EALREADY (not waiting, or
	 * already set up) → 409; -EINVAL (no such file, not a snapshot) → 400.
	 */
	int (*restore)(void *opaque, const char *path, char *why, size_t whylen);
};

/* Who api_handle() serves. */
struct api_target {
	const struct api_ops *ops;
	void *opaque;
	const char *version;	/* vmm's version, for vmm.ping */
};

struct api_reply {
	unsigned int status;	/* HTTP status code */
	char *body;		/* JSON text ending in a newline, malloc'd; NULL: no body (204) */
	const char *allow;	/* 405: the methods the path takes (the Allow header) */
	bool shutdown_after;	/* ops->shutdown() once the reply is out (api_server does it) */
};

/*
 * Handles one request: method ("GET", "PUT" ...), path (without the query
 * string), body of len bytes (not NUL-terminated; may be NULL when len is 0).
 * Fills *r; never fails (an allocation failure is a 500 without a body).
 * Free r with api_reply_free().
 */
void api_handle(const struct api_target *t, const char *method, const char *path,
		const char *body, size_t len, struct api_reply *r);

/* Frees a reply's body; safe twice. */
void api_reply_free(struct api_reply *r);

/* The reply api_handle() gives a body too big to read (413), for the server. */
void api_reply_too_big(struct api_reply *r, unsigned long long len);

/*
 * Creates the listening unix socket at path (mode 0600): a stale socket
 * there (nobody accepting) is replaced; 0 with *fd, or -ENOTSOCK (path is
 * something else), -EADDRINUSE (another process serves it), -ENAMETOOLONG,
 * or another -errno, after log_error() with what to do.
 */
int api_listen(const char *path, int *fd);

struct api_server;

/*
 * Listens on path (api_listen) and starts the `vmm-api` thread serving t
 * (copied; t->opaque and t->version must outlive the server). 0 or -errno as
 * api_listen(), or -ENOMEM / -EIO after log_error().
 */
int api_server_start(struct api_server **out, const char *path, const struct api_target *t);

/* Stops the thread, closes every connection and the socket, and unlinks it; NULL is fine. */
void api_server_stop(struct api_server *s);

#endif
