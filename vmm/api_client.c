// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/api.h"
#include "vmm/api_client.h"
#include "vmm/base/util.h"

/* Waits for fd to be ready for events until deadline; 0 or -ETIMEDOUT / -errno. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		long long left = (long long)deadline - (long long)monotonic_ms();
		int n;

		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int connect_unix(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	memcpy(addr.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int api_client_parse_reply(const char *raw, size_t len, unsigned int *status, size_t *body_off)
{
	const char *end;
	unsigned int code = 0;

	/* "HTTP/1.x NNN reason\r\n" ... "\r\n\r\n" body */
	if (len < 12 || memcmp(raw, "HTTP/1.", 7) || (raw[7] != '0' && raw[7] != '1') ||
	    raw[8] != ' ')
		return -EBADMSG;
	for (int i = 9; i < 12; i++) {
		if (raw[i] < '0' || raw[i] > '9')
			return -EBADMSG;
		code = code * 10 + (unsigned int)(raw[i] - '0');
	}
	if (code < 100 || (len > 12 && raw[12] != ' ' && raw[12] != '\r'))
		return -EBADMSG;
	end = memmem(raw, len, "\r\n\r\n", 4);
	if (!end)
		return -EBADMSG;
	*status = code;
	*body_off = (size_t)(end - raw) + 4;
	return 0;
}

int api_client_request(const char *sock, const char *method, const char *path,
		       unsigned int timeout_ms, unsigned int *status, char **body)
{
	return api_client_request_body(sock, method, path, NULL, timeout_ms, status, body);
}

int api_client_request_body(const char *sock, const char *method, const char *path,
			    const char *json, unsigned int timeout_ms, unsigned int *status,
			    char **body)
{
	uint64_t deadline = monotonic_ms() + timeout_ms;
	char req[4608], *buf = NULL;
	size_t len = 0, cap = 0, off = 0, reqlen;
	size_t body_off;
	int fd, ret, n;

	*body = NULL;
	n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: "
		     "application/json\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
		     method, path, json ? "Content-Type: application/json\r\n" : "",
		     json ? strlen(json) : 0, json ? json : "");
	if (n < 0 || (size_t)n >= sizeof(req))
		return -EINVAL;
	reqlen = (size_t)n;
	fd = connect_unix(sock);
	if (fd < 0)
		return fd;
	while (off < reqlen) {
		ssize_t w = send(fd, req + off, reqlen - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			ret = -errno;
			goto out;
		}
		off += (size_t)w;
	}
	for (;;) {
		ssize_t r;

		if (len + 4096 + 1 > cap) {
			char *nb;

			if (cap >= API_CLIENT_MAX_REPLY) {
				ret = -EFBIG;
				goto out;
			}
			cap = cap ? cap * 2 : 8192;
			nb = realloc(buf, cap);
			if (!nb) {
				ret = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		ret = wait_fd(fd, POLLIN, deadline);
		if (ret)
			goto out;
		r = recv(fd, buf + len, cap - len - 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	ret = api_client_parse_reply(buf ? buf : "", len, status, &body_off);
	if (ret)
		goto out;
	memmove(buf, buf + body_off, len - body_off);
	buf[len - body_off] = '\0';
	*body = buf;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return ret;
}

/* The "error" of an error reply's JSON body, or the body itself. */
static void print_error(FILE *err, const char *command, unsigned int status, const char *body)
{
	json_t *obj = json_loads(body, 0, NULL);
	const char *msg = obj ? json_string_value(json_object_get(obj, "error")) : NULL;

	fprintf(err, "vmm %s: the VMM answered %u: %s\n", command, status,
		msg ? msg : (*body ? body : "(no reason given)"));
	json_decref(obj);
}

/* `vmm status`'s line from vm.info's reply; API_CLIENT_UNREACHABLE if it is not one. */
static int print_status(FILE *out, FILE *err, const char *body)
{
	json_t *obj = json_loads(body, 0, NULL);
	const char *state = NULL, *kind = NULL;
	json_int_t cpus = 0, mem = 0, boot = 0;
	json_t *devices = NULL, *uptime = NULL;
	int ret = API_CLIENT_OK;

	if (!obj || json_unpack(obj, "{s:s,s:I,s:o,s:{s:I,s:{s:I,s:s},s:o}}", "state", &state,
				"boot", &boot, "uptime_s", &uptime, "config", "cpus", &cpus,
				"memory", "size", &mem, "kind", &kind, "devices", &devices) ||
	    !json_is_array(devices)) {
		fprintf(err, "vmm status: the reply is not vm.info's: %.200s\n", body);
		ret = API_CLIENT_UNREACHABLE;
	} else {
		fprintf(out, "%s: %lld vCPU%s, %lld MiB %s memory, %zu device%s", state,
			(long long)cpus, cpus == 1 ? "" : "s", (long long)(mem >> 20), kind,
			json_array_size(devices), json_array_size(devices) == 1 ? "" : "s");
		if (json_is_number(uptime))
			fprintf(out, ", up %.1f s", json_number_value(uptime));
		fprintf(out, " (boot %lld)\n", (long long)boot);
	}
	json_decref(obj);
	return ret;
}

/* After a shutdown's reply: waits until that vmm is gone (its socket unlinked or dead). */
static bool wait_gone(const char *sock, unsigned int timeout_ms)
{
	uint64_t deadline = monotonic_ms() + timeout_ms;

	while (monotonic_ms() < deadline) {
		struct stat st;
		int fd;

		if (lstat(sock, &st) && errno == ENOENT)
			return true;
		fd = connect_unix(sock);
		if (fd < 0)
			return true;
		close(fd);
		usleep(50 * 1000);
	}
	return false;
}

int api_client_run(const char *command, const char *sock, FILE *out, FILE *err)
{
	static const struct {
		const char *command, *method, *endpoint, *done;
	} ops[] = {
		{ "pause", "PUT", "vm.pause", "paused" },
		{ "resume", "PUT", "vm.resume", "resumed" },
		{ "status", "GET", "vm.info", NULL },
		{ "shutdown", "PUT", "vm.shutdown", "shut down" },
	};
	char path[64], *body = NULL;
	unsigned int status = 0;
	int ret = -1;
	size_t i;

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]) && strcmp(ops[i].command, command); i++)
		;
	if (i == sizeof(ops) / sizeof(ops[0])) {
		fprintf(err, "vmm: unknown command '%s'\n", command);
		return API_CLIENT_USAGE;
	}
	snprintf(path, sizeof(path), API_PREFIX "%s", ops[i].endpoint);
	ret = api_client_request(sock, ops[i].method, path, API_CLIENT_TIMEOUT_MS, &status, &body);
	if (ret) {
		fprintf(err, "vmm %s: cannot reach the VMM at %s: %s%s\n", command, sock,
			ret == -EBADMSG ? "the reply is not HTTP" : strerror(-ret),
			ret == -ENOENT || ret == -ECONNREFUSED ?
			" — is `vmm run --api-socket` running with that path?" : "");
		return API_CLIENT_UNREACHABLE;
	}
	if (status == 409) {
		print_error(err, command, status, body);
		ret = API_CLIENT_STATE;
	} else if (status < 200 || status >= 300) {
		print_error(err, command, status, body);
		ret = API_CLIENT_REFUSED;
	} else if (!ops[i].done) {
		ret = print_status(out, err, body);
	} else {
		ret = API_CLIENT_OK;
		if (!strcmp(command, "shutdown") && !wait_gone(sock, API_CLIENT_TIMEOUT_MS)) {
			fprintf(err, "vmm shutdown: the VMM accepted but still serves %s after %u s\n",
				sock, API_CLIENT_TIMEOUT_MS / 1000);
			ret = API_CLIENT_REFUSED;
		} else {
			fprintf(out, "%s\n", ops[i].done);
		}
	}
	free(body);
	return ret;
}

/* ---- vmm migrate, vmm snapshot ---- */

static int ctl_request(const char *command, const char *sock, const char *method,
		       const char *endpoint, const char *json, unsigned int *status, char **body,
		       FILE *err)
{
	char path[64];
	int ret;

	snprintf(path, sizeof(path), API_PREFIX "%s", endpoint);
	ret = api_client_request_body(sock, method, path, json, API_CLIENT_TIMEOUT_MS, status,
				      body);
	if (ret) {
		fprintf(err, "vmm %s: cannot reach the VMM at %s: %s%s\n", command, sock,
			ret == -EBADMSG ? "the reply is not HTTP" : strerror(-ret),
			ret == -ENOENT || ret == -ECONNREFUSED ?
			" — is `vmm run --api-socket` running with that path?" : "");
		return API_CLIENT_UNREACHABLE;
	}
	if (*status < 200 || *status >= 300) {
		print_error(err, command, *status, *body);
		return *status == 409 ? API_CLIENT_STATE : API_CLIENT_REFUSED;
	}
	return API_CLIENT_OK;
}

static long long jint(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

int api_client_migrate(const char *sock, const struct api_migrate_args *a, bool finish,
		       bool cancel, FILE *out, FILE *err)
{
	const char *to = a->to;
	unsigned int status = 0;
	char *body = NULL, *json;
	long long last_it = -1, last_phase_print = -1;
	json_t *req;
	int ret;

	if (finish || cancel) {
		ret = ctl_request("migrate", sock, "PUT", finish ? "vm.migrate-finish" :
				  "vm.migrate-cancel", NULL, &status, &body, err);
		if (!ret)
			fprintf(out, "%s\n", finish ? "finishing: the guest pauses for the last copy" :
				"cancelled: the guest runs on here");
		free(body);
		return ret;
	}
	req = json_pack("{s:s,s:I,s:I,s:b}", "to", to, "max_downtime_ms",
			(json_int_t)a->max_downtime_ms, "bandwidth", (json_int_t)a->bandwidth,
			"verify", a->verify);
	json = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!json)
		return API_CLIENT_REFUSED;
	ret = ctl_request("migrate", sock, "PUT", "vm.migrate", json, &status, &body, err);
	free(json);
	free(body);
	body = NULL;
	if (ret)
		return ret;
	fprintf(out, "migrating to %s%s\n", to, a->max_downtime_ms ? "" :
		"; the guest pauses for the last copy at `vmm migrate --finish`");
	fflush(out);
	for (;;) {
		json_t *o;
		const char *state;

		usleep(200 * 1000);
		ret = ctl_request("migrate", sock, "GET", "vm.migration", NULL, &status, &body, err);
		if (ret)
			return ret == API_CLIENT_UNREACHABLE ? API_CLIENT_REFUSED : ret;
		o = json_loads(body, 0, NULL);
		free(body);
		body = NULL;
		state = o ? json_string_value(json_object_get(o, "state")) : NULL;
		if (!state) {
			json_decref(o);
			fprintf(err, "vmm migrate: the progress reply is not vm.migration's\n");
			return API_CLIENT_UNREACHABLE;
		}
		if (!strcmp(state, "completed")) {
			json_t *parts = json_object_get(o, "downtime_parts_ms");

			fprintf(out, "migrated to %s in %lld ms; the guest was paused %lld ms; %.1f MiB "
				"sent in %lld pass%s\n", to, jint(o, "total_ms"), jint(o, "downtime_ms"),
				(double)jint(o, "bytes") / (1 << 20), jint(o, "iteration"),
				jint(o, "iteration") == 1 ? "" : "es");
			if (json_is_object(parts))
				fprintf(out, "paused: %lld ms stopping, %lld ms last pages, %lld ms "
					"device state, %lld ms the destination's load and start\n",
					jint(parts, "stop"), jint(parts, "last_ram"),
					jint(parts, "state"), jint(parts, "destination"));
			json_decref(o);
			return API_CLIENT_OK;
		}
		if (!strcmp(state, "failed")) {
			fprintf(err, "vmm migrate: the migration failed: %s; the guest runs on at the "
				"source\n", json_string_value(json_object_get(o, "error")) ?: "?");
			json_decref(o);
			return API_CLIENT_REFUSED;
		}
		if (jint(o, "iteration") != last_it && !strcmp(state, "precopy")) {
			last_it = jint(o, "iteration");
			fprintf(out, "pass %lld: %.1f MiB sent, %lld pages dirty (%lld/s), %.1f MiB/s, "
				"expected downtime %lld ms%s\n", last_it,
				(double)jint(o, "bytes") / (1 << 20), jint(o, "dirty_pages"),
				jint(o, "dirty_rate_pps"), (double)jint(o, "bandwidth_bps") / (1 << 20),
				jint(o, "expected_downtime_ms"),
				json_is_true(json_object_get(o, "not_converging")) ?
				" — not converging: `vmm migrate --finish` ends it with that downtime" :
				"");
		} else if (!strcmp(state, "stopcopy") && last_phase_print != 1) {
			last_phase_print = 1;
			fprintf(out, "guest paused: sending the rest\n");
		}
		fflush(out);
		json_decref(o);
	}
}

int api_client_snapshot(const char *sock, const char *to, FILE *out, FILE *err)
{
	unsigned int status = 0;
	char *body = NULL, *json;
	json_t *req = json_pack("{s:s}", "to", to), *o;
	int ret;

	json = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!json)
		return API_CLIENT_REFUSED;
	ret = ctl_request("snapshot", sock, "PUT", "vm.snapshot", json, &status, &body, err);
	free(json);
	if (!ret) {
		o = json_loads(body, 0, NULL);
		fprintf(out, "snapshot written to %s: %.1f MiB in %lld ms\n", to,
			(double)jint(o, "bytes") / (1 << 20), jint(o, "ms"));
		json_decref(o);
	}
	free(body);
	return ret;
}
