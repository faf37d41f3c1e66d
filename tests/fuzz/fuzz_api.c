// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target for the control API's request handling (vmm/api.c:
 * api_handle, the route table, the JSON body checks) and for the reply
 * parsing of the subcommands' client (vmm/api_client.c:
 * api_client_parse_reply). The VM behind the API is a fake whose answers the
 * input chooses.
 *
 * Input:
 *   byte 0     method: index into METHODS (the last entry: the method is the
 *              text up to the first space of what follows)
 *   byte 1     what the fake VM answers: low 4 bits index into OP_RESULTS; bit 4
 *              set: the VMM offers no migration or snapshot ops (501)
 *   then       the path, up to the first '\n' (or the end)
 *   then       the body, the rest (may hold NUL bytes)
 * The whole input is also given to api_client_parse_reply() as a raw reply.
 *
 * Besides "never crashes, never leaks" (ASan, LeakSanitizer), the target
 * checks what api_handle() promises and traps otherwise: a status among the
 * documented ones; a body, when there is one, that is a JSON object ending
 * in a newline; every 4xx/5xx with exactly {"error": string}; 405 with an
 * Allow header; a state change (pause, resume) only on a 2xx to vm.pause or
 * vm.resume; shutdown only asked (never done) and only by a 204 to
 * vm.shutdown.
 */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/api.h"
#include "vmm/api_client.h"

static const char *const METHODS[] = { "GET", "PUT", "HEAD", "POST", "DELETE", "PATCH", "", NULL };
#define NMETHODS (sizeof(METHODS) / sizeof(METHODS[0]))

static const int OP_RESULTS[16] = {
	0, -EALREADY, -ESHUTDOWN, -EAGAIN, -ETIMEDOUT, -EIO, -ENOMEM, 0,
	-EBUSY, -EINVAL, -EOPNOTSUPP, -ECONNREFUSED, -ENOENT, -EEXIST, -EHOSTUNREACH, 0,
};

static int op_result, pauses, resumes, shutdowns;

static int fake_info(void *opaque, json_t *out)
{
	if (op_result)
		return op_result;
	return json_object_set_new(out, "state", json_string("running")) ? -ENOMEM : 0;
}

static int fake_pause(void *opaque)
{
	pauses++;
	return op_result;
}

static int fake_resume(void *opaque)
{
	resumes++;
	return op_result;
}

static int fake_shutdown(void *opaque)
{
	shutdowns++;
	return 0;
}

static int fake_migrate(void *opaque, const struct api_migrate_args *a, char *why,
			size_t whylen)
{
	if (op_result == -EINVAL)
		snprintf(why, whylen, "%s: give tcp:HOST:PORT", a->to);
	return op_result;
}

static int fake_migration(void *opaque, json_t *out)
{
	if (op_result)
		return op_result;
	return json_object_set_new(out, "state", json_string("precopy")) ? -ENOMEM : 0;
}

static int fake_migrate_ctl(void *opaque)
{
	return op_result;
}

static int fake_snapshot(void *opaque, const char *path, json_t *out, char *why, size_t whylen)
{
	if (op_result)
		return op_result;
	return json_object_set_new(out, "bytes", json_integer(4096)) ? -ENOMEM : 0;
}

static int fake_receive(void *opaque, const char *from, char *why, size_t whylen)
{
	return op_result;
}

static const struct api_ops ops = {
	.info = fake_info, .pause = fake_pause, .resume = fake_resume, .shutdown = fake_shutdown,
	.migrate = fake_migrate, .migration = fake_migration, .migrate_finish = fake_migrate_ctl,
	.migrate_cancel = fake_migrate_ctl, .snapshot = fake_snapshot, .receive = fake_receive,
};

/* A VMM without migration (every migration and snapshot request: 501). */
static const struct api_ops ops_basic = {
	.info = fake_info, .pause = fake_pause, .resume = fake_resume, .shutdown = fake_shutdown,
};

static void check_reply(const char *method, const char *path, const struct api_reply *r)
{
	static const unsigned int statuses[] = { 200, 202, 204, 400, 404, 405, 409, 413, 500,
						 501, 502, 503 };
	bool known = false, ok2xx = r->status >= 200 && r->status < 300;

	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		known |= r->status == statuses[i];
	if (!known)
		__builtin_trap();
	if (r->body) {
		size_t n = strlen(r->body);
		json_t *obj;

		if (n == 0 || r->body[n - 1] != '\n')
			__builtin_trap();
		obj = json_loads(r->body, 0, NULL);
		if (!obj || !json_is_object(obj))
			__builtin_trap();
		if (r->status >= 400 && (json_object_size(obj) != 1 ||
					 !json_is_string(json_object_get(obj, "error"))))
			__builtin_trap();
		json_decref(obj);
	} else if (r->status != 204 && r->status != 500) {
		__builtin_trap();
	}
	if ((r->status == 405) != (r->allow != NULL))
		__builtin_trap();
	if (r->shutdown_after && (r->status != 204 || strcmp(path, "/api/v1/vm.shutdown")))
		__builtin_trap();
	if ((pauses && strcmp(path, "/api/v1/vm.pause")) ||
	    (resumes && strcmp(path, "/api/v1/vm.resume")) || pauses + resumes > 1)
		__builtin_trap();
	if (ok2xx && (pauses || resumes) && op_result)
		__builtin_trap();
	if (shutdowns)
		__builtin_trap();
	(void)method;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct api_target t = { .ops = &ops, .opaque = NULL, .version = "fuzz" };
	char method[32], *path;
	const char *rest, *nl, *body;
	size_t rest_len, path_len, body_len;
	struct api_reply r;
	unsigned int status;
	size_t off;

	if (api_client_parse_reply((const char *)data, size, &status, &off) == 0 &&
	    (status < 100 || status > 999 || off > size))
		__builtin_trap();
	if (size < 2)
		return 0;
	rest = (const char *)data + 2;
	rest_len = size - 2;
	if (data[0] % NMETHODS == NMETHODS - 1) {
		const char *sp = memchr(rest, ' ', rest_len);
		size_t n = sp ? (size_t)(sp - rest) : 0;

		if (n >= sizeof(method))
			n = sizeof(method) - 1;
		memcpy(method, rest, n);
		method[n] = '\0';
		if (sp) {
			rest_len -= (size_t)(sp + 1 - rest);
			rest = sp + 1;
		}
	} else {
		strcpy(method, METHODS[data[0] % NMETHODS]);
	}
	op_result = OP_RESULTS[data[1] % 16];
	if (data[1] & 16)
		t.ops = &ops_basic;
	pauses = resumes = shutdowns = 0;

	nl = memchr(rest, '\n', rest_len);
	path_len = nl ? (size_t)(nl - rest) : rest_len;
	path = strndup(rest, path_len);	/* up to a NUL, as the HTTP server gives it */
	if (!path)
		return 0;
	body = nl ? nl + 1 : NULL;
	body_len = nl ? rest_len - path_len - 1 : 0;

	api_handle(&t, method, path, body, body_len, &r);
	check_reply(method, path, &r);
	api_reply_free(&r);
	free(path);
	return 0;
}
