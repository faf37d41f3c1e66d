/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * `vmm pause|resume|status|shutdown --api-socket PATH`: thin clients of the
 * control API (vmm/api.h, docs/api.md). One HTTP/1.1 request per connection
 * ("Connection: close"), its reply read to the end of the stream; the status
 * line and the end of the headers are all this reads of HTTP, the body is
 * parsed by jansson. A small client of our own rather than libcurl: the vmm
 * binary, which runs guests, does not link a general URL library and the TLS
 * stacks behind it for one local request shape whose server is ours.
 */
#ifndef VMM_API_CLIENT_H
#define VMM_API_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Exit statuses of the subcommands (`vmm pause --help`, README.md, docs/api.md). */
enum api_client_exit {
	API_CLIENT_OK = 0,
	API_CLIENT_REFUSED = 1,		/* the VMM answered with an error */
	API_CLIENT_USAGE = 2,
	API_CLIENT_UNREACHABLE = 6,	/* no socket, nobody serving it, or not an API reply */
	API_CLIENT_STATE = 7,		/* 409: the VM is not in a state for it */
};

#define API_CLIENT_MAX_REPLY	(1024 * 1024)
#define API_CLIENT_TIMEOUT_MS	30000	/* a pause may take CONTROL_PAUSE_TIMEOUT_MS */

/*
 * Sends `method path` (no body) to the API on the unix socket sock and reads
 * the reply: 0 with *status and *body (malloc'd, NUL-terminated, "" when
 * none), or -errno: the connect's error (-ENOENT, -ECONNREFUSED ...),
 * -ETIMEDOUT, -EBADMSG (not an HTTP reply), -EFBIG (reply too big).
 */
int api_client_request(const char *sock, const char *method, const char *path,
		       unsigned int timeout_ms, unsigned int *status, char **body);

/* The same with a JSON body (json: NUL-terminated, at most 4 KiB; NULL: none). */
int api_client_request_body(const char *sock, const char *method, const char *path,
			    const char *json, unsigned int timeout_ms, unsigned int *status,
			    char **body);

/*
 * Splits a raw HTTP reply (len bytes) into its status code and the start of
 * its body; 0 or -EBADMSG. Pure; for the unit tests too.
 */
int api_client_parse_reply(const char *raw, size_t len, unsigned int *status, size_t *body_off);

/*
 * Runs one subcommand ("pause", "resume", "status", "shutdown") against sock,
 * printing its line on out and errors on err; returns an api_client_exit.
 */
int api_client_run(const char *command, const char *sock, FILE *out, FILE *err);

/*
 * `vmm migrate`: starts a migration (PUT vm.migrate) and prints its progress
 * (GET vm.migration) until it completes (API_CLIENT_OK, a summary line) or fails
 * (API_CLIENT_REFUSED: the guest runs on at the source); finish/cancel send
 * vm.migrate-finish / vm.migrate-cancel instead.
 */
struct api_migrate_args;
int api_client_migrate(const char *sock, const struct api_migrate_args *a, bool finish,
		       bool cancel, FILE *out, FILE *err);

/* `vmm snapshot`: PUT vm.snapshot {"to": to}; prints where and how much. */
int api_client_snapshot(const char *sock, const char *to, FILE *out, FILE *err);

#endif
