// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/api.h"
#include "vmm/base/log.h"
#include "vmm/base/util.h"

/* ---- Replies ---- */

void api_reply_free(struct api_reply *r)
{
	free(r->body);
	r->body = NULL;
}

/* Sets r to status with obj (stolen) as its body. */
static void reply_json(struct api_reply *r, unsigned int status, json_t *obj)
{
	char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	size_t n;

	json_decref(obj);
	api_reply_free(r);
	r->status = status;
	if (!text) {
		r->status = 500;
		return;
	}
	/* A trailing newline, so curl's output ends its line. */
	n = strlen(text);
	r->body = realloc(text, n + 2);
	if (!r->body) {
		free(text);
		r->status = 500;
		return;
	}
	memcpy(r->body + n, "\n", 2);
}

/* Sets r to an error: status and {"error": message}. */
static void __attribute__((format(printf, 3, 4)))
reply_error(struct api_reply *r, unsigned int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_json(r, status, json_pack("{s:s}", "error", msg));
}

static void reply_no_content(struct api_reply *r)
{
	api_reply_free(r);
	r->status = 204;
}

void api_reply_too_big(struct api_reply *r, unsigned long long len)
{
	memset(r, 0, sizeof(*r));
	reply_error(r, 413, "the request body is %llu bytes; at most %d are accepted", len,
		    API_MAX_BODY);
}

/*
 * What a client sent, made fit to quote in an error: at most max bytes (then
 * "..."), printable ASCII only (anything else as '?'), so the reply is valid
 * UTF-8 JSON whatever came in.
 */
static const char *quote_client(char *dst, size_t dstlen, const char *src, size_t max)
{
	size_t i, n = 0;

	for (i = 0; src[i] && i < max && n + 4 < dstlen; i++)
		dst[n++] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	if (src[i] && n + 4 <= dstlen) {
		memcpy(dst + n, "...", 3);
		n += 3;
	}
	dst[n] = '\0';
	return dst;
}

/* ---- Routes ---- */

struct api_route {
	const char *name;		/* the path after API_PREFIX, e.g. "vm.pause" */
	const char *method;		/* the one method it takes */
	const char *const *fields;	/* the body members it accepts; NULL: none */
	void (*handle)(const struct api_target *t, const json_t *body, struct api_reply *r);
};

/* An operation's -errno as a reply; `already` says what -EALREADY means for it. */
static void reply_op_error(struct api_reply *r, const char *what, int err, const char *already)
{
	switch (err) {
	case -EALREADY:
		reply_error(r, 409, "%s", already);
		break;
	case -ESHUTDOWN:
		reply_error(r, 409, "cannot %s: the VM is shutting down", what);
		break;
	case -EAGAIN:
		reply_error(r, 503, "cannot %s: the VM is starting or rebooting — try again in a "
			    "moment", what);
		break;
	case -ETIMEDOUT:
		reply_error(r, 503, "cannot %s: the vCPUs did not stop in time (one is busy in a "
			    "device); the VM runs on as before — try again", what);
		break;
	default:
		reply_error(r, 500, "cannot %s: %s", what, strerror(-err));
		break;
	}
}

static void api_ping(const struct api_target *t, const json_t *body, struct api_reply *r)
{
	reply_json(r, 200, json_pack("{s:s,s:I}", "version", t->version ? t->version : "unknown",
				     "pid", (json_int_t)getpid()));
}

static void api_info(const struct api_target *t, const json_t *body, struct api_reply *r)
{
	json_t *out = json_object();
	int ret;

	if (!out) {
		reply_no_content(r);
		r->status = 500;
		return;
	}
	ret = t->ops->info(t->opaque, out);
	if (ret) {
		json_decref(out);
		reply_op_error(r, "read the VM's state", ret, "the VM's state is not available");
		return;
	}
	reply_json(r, 200, out);
}

static void api_pause(const struct api_target *t, const json_t *body, struct api_reply *r)
{
	int ret = t->ops->pause(t->opaque);

	if (ret)
		reply_op_error(r, "pause the VM", ret,
			       "the VM is already paused — PUT " API_PREFIX "vm.resume runs it again");
	else
		reply_no_content(r);
}

static void api_resume(const struct api_target *t, const json_t *body, struct api_reply *r)
{
	int ret = t->ops->resume(t->opaque);

	if (ret)
		reply_op_error(r, "resume the VM", ret,
			       "the VM is running, not paused — nothing to resume");
	else
		reply_no_content(r);
}

static void api_shutdown(const struct api_target *t, const json_t *body, struct api_reply *r)
{
	/* The stop comes once the reply is out: the client hears it before vmm exits. */
	reply_no_content(r);
	r->shutdown_after = true;
}

/* A non-negative integer member of body, or def when absent; false (400 set) when not one. */
static bool body_bool(const json_t *body, const char *key, bool def, bool *out,
		      struct api_reply *r)
{
	json_t *v = body ? json_object_get(body, key) : NULL;

	*out = def;
	if (!v)
		return true;
	if (!json_is_boolean(v)) {
		reply_error(r, 400, "'%s' must be true or false", key);
		return false;
	}
	*out = json_is_true(v);
	return true;
}

static bool body_uint(const json_t *body, const char *key, uint64_t def, uint64_t *out,
		      struct api_reply *r)
{
	json_t *v = body ? json_object_get(body, key) : NULL;

	*out = def;
	if (!v)
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		reply_error(r, 400, "'%s' must be a non-negative integer", key);
		return false;
	}
	*out = (uint64_t)json_integer_value(v);
	return true;
}

/* A string member of body that must be there; NULL (400 set) when not. */
static const char *body_string(const json_t *body, const char *route, const char *key,
			       struct api_reply *r)
{
	json_t *v = body ? json_object_get(body, key) : NULL;

	if (!json_is_string(v) || !*json_string_value(v)) {
		reply_error(r, 400, "%s needs '%s', a non-empty string (docs/api.md)", route, key);
		return NULL;
	}
	return json_string_value(v);
}

static bool offered(const void *op, struct api_reply *r)
{
	if (!op)
		reply_error(r, 501, "this VMM does not offer migration or snapshots");
	return op != NULL;
}

static void api_migrate(const struct api_target *t, const json_t *body, struct api_reply *r)
{
	struct api_migrate_args a = { .to = body_string(body, "vm.migrate", "to", r) };
	char why[256] = "";
	int ret;

	if (!a.to || !body_uint(body, "max_downtime_ms", 300, &a.max_downtime_ms, r) ||
	    !body_uint(body, "bandwidth", 0, &a.bandwidth, r) ||
	    !body_bool(body, "verify", false, &a.verify, r) || !offered(t->ops->migrate, r))
		return;
	ret = t->ops->migrate(t->opaque, &a, why, sizeof(why));
	switch (ret) {
	case 0:
		reply_json(r, 202, json_pack("{s:s,s:s}", "state", "active", "progress",
					     "GET " API_PREFIX "vm.migration"));
		return;
	case -EINVAL:
		reply_error(r, 400, "%s", why);
		return;
	case -EBUSY:
	case -EOPNOTSUPP:
	case -EALREADY:
		reply_error(r, 409, "%s", why);
		return;
	case -EAGAIN:
	case -ESHUTDOWN:
		reply_op_error(r, "migrate the VM", ret, "");
		return;
	default:
		reply_error(r, 502, "%s", why[0] ? why : strerror(-ret));
		return;
	}
}

static void api_migration(const struct api_target *t, const json_t *body, struct api_reply *r)
{
	json_t *out;
	int ret;

	if (!offered(t->ops->migration, r))
		return;
	out = json_object();
	ret = out ? t->ops->migration(t->opaque, out) : -ENOMEM;
	if (ret == -ENOENT)
		reply_error(r, 404, "no migration has run in this VMM — PUT " API_PREFIX
			    "vm.migrate starts one");
	else if (ret)
		reply_op_error(r, "read the migration's progress", ret, "");
	else
		reply_json(r, 200, json_incref(out));
	json_decref(out);
}

static void api_migrate_ctl(const struct api_target *t, struct api_reply *r, int (*op)(void *),
			    const char *what)
{
	int ret;

	if (!offered(op, r))
		return;
	ret = op(t->opaque);
	if (ret == -ENOENT)
		reply_error(r, 409, "no migration is running — nothing to %s", what);
	else if (ret)
		reply_op_error(r, what, ret, "");
	else
		reply_no_content(r);
}

static void api_migrate_finish(const struct api_target *t, const json_t *body,
			       struct api_reply *r)
{
	api_migrate_ctl(t, r, t->ops->migrate_finish, "finish");
}

static void api_migrate_cancel(const struct api_target *t, const json_t *body,
			       struct api_reply *r)
{
	api_migrate_ctl(t, r, t->ops->migrate_cancel, "cancel");
}

static void api_snapshot(const struct api_target *t, const json_t *body, struct api_reply *r)
{
	const char *to = body_string(body, "vm.snapshot", "to", r);
	char why[256] = "";
	json_t *out;
	int ret;

	if (!to || !offered(t->ops->snapshot, r))
		return;
	out = json_object();
	ret = out ? t->ops->snapshot(t->opaque, to, out, why, sizeof(why)) : -ENOMEM;
	if (!ret)
		reply_json(r, 200, json_incref(out));
	else if (ret == -EEXIST || ret == -EBUSY || ret == -EOPNOTSUPP)
		reply_error(r, 409, "%s", why);
	else if (ret == -EAGAIN || ret == -ESHUTDOWN || ret == -ETIMEDOUT)
		reply_op_error(r, "snapshot the VM", ret, "");
	else
		reply_error(r, 500, "%s", why[0] ? why : strerror(-ret));
	json_decref(out);
}

/*
 * vm.receive-migration and vm.restore: where a `vmm run --incoming defer` takes its guest
 * from; op's answer → 202 {"state": state, "from"}, 400, 409 or 500.
 */
static void api_incoming(const struct api_target *t, const json_t *body, struct api_reply *r,
			 const char *endpoint, int (*op)(void *, const char *, char *, size_t),
			 const char *state)
{
	const char *from = body_string(body, endpoint, "from", r);
	char why[256] = "";
	int ret;

	if (!from || !offered(op, r))
		return;
	ret = op(t->opaque, from, why, sizeof(why));
	if (!ret)
		reply_json(r, 202, json_pack("{s:s,s:s}", "state", state, "from", from));
	else if (ret == -EINVAL)
		reply_error(r, 400, "%s", why);
	else if (ret == -EALREADY)
		reply_error(r, 409, "%s", why);
	else
		reply_error(r, 500, "%s", why[0] ? why : strerror(-ret));
}

static void api_receive(const struct api_target *t, const json_t *body, struct api_reply *r)
{
	api_incoming(t, body, r, "vm.receive-migration", t->ops->receive, "listening");
}

static void api_restore(const struct api_target *t, const json_t *body, struct api_reply *r)
{
	api_incoming(t, body, r, "vm.restore", t->ops->restore, "restoring");
}

static const char *const receive_fields[] = { "from", NULL };
static const char *const migrate_fields[] = { "to", "max_downtime_ms", "bandwidth", "verify",
					       NULL };
static const char *const snapshot_fields[] = { "to", NULL };

/*
 * Every endpoint. Adding one (vm.migrate, vm.snapshot ...) is a line here and
 * its handler; its body members go in `fields`, and api_check_body() refuses
 * any other.
 */
static const struct api_route api_routes[] = {
	{ "vmm.ping", "GET", NULL, api_ping },
	{ "vm.info", "GET", NULL, api_info },
	{ "vm.pause", "PUT", NULL, api_pause },
	{ "vm.resume", "PUT", NULL, api_resume },
	{ "vm.shutdown", "PUT", NULL, api_shutdown },
	{ "vm.migrate", "PUT", migrate_fields, api_migrate },
	{ "vm.migration", "GET", NULL, api_migration },
	{ "vm.migrate-finish", "PUT", NULL, api_migrate_finish },
	{ "vm.migrate-cancel", "PUT", NULL, api_migrate_cancel },
	{ "vm.snapshot", "PUT", snapshot_fields, api_snapshot },
	{ "vm.receive-migration", "PUT", receive_fields, api_receive },
	{ "vm.restore", "PUT", receive_fields, api_restore },
};

static const struct api_route *api_find_route(const char *path)
{
	size_t plen = strlen(API_PREFIX);

	if (strncmp(path, API_PREFIX, plen))
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(api_routes); i++)
		if (!strcmp(path + plen, api_routes[i].name))
			return &api_routes[i];
	return NULL;
}

static bool field_known(const struct api_route *rt, const char *key)
{
	for (const char *const *f = rt->fields; f && *f; f++)
		if (!strcmp(*f, key))
			return true;
	return false;
}

/*
 * Parses and checks the body: none, or a JSON object whose members the route
 * takes. Returns the object (NULL for no body) with *ok set, or sets the 400.
 */
static json_t *api_check_body(const struct api_route *rt, const char *body, size_t len,
			      struct api_reply *r, bool *ok)
{
	json_error_t jerr;
	const char *key;
	json_t *obj, *val;

	*ok = false;
	if (len == 0) {
		*ok = true;
		return NULL;
	}
	obj = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!obj) {
		reply_error(r, 400, "the body is not valid JSON: %s (line %d, column %d)", jerr.text,
			    jerr.line, jerr.column);
		return NULL;
	}
	if (!json_is_object(obj)) {
		reply_error(r, 400, "the body must be a JSON object ({...}); %s takes %s", rt->name,
			    rt->fields ? "named fields" : "no fields, so send no body or {}");
		json_decref(obj);
		return NULL;
	}
	json_object_foreach(obj, key, val) {
		if (!field_known(rt, key)) {
			char q[72];

			reply_error(r, 400, "unknown field '%s': %s takes %s",
				    quote_client(q, sizeof(q), key, 64), rt->name,
				    rt->fields ? "other fields (see docs/api.md)" : "none");
			json_decref(obj);
			return NULL;
		}
	}
	*ok = true;
	return obj;
}

/* The Allow header for a path: its route's method (HEAD comes with GET). */
static const char *route_allow(const struct api_route *rt)
{
	return strcmp(rt->method, "GET") ? rt->method : "GET, HEAD";
}

void api_handle(const struct api_target *t, const char *method, const char *path,
		const char *body, size_t len, struct api_reply *r)
{
	const struct api_route *rt;
	json_t *obj;
	char q[208];
	bool ok;

	memset(r, 0, sizeof(*r));
	if (len > API_MAX_BODY) {
		api_reply_too_big(r, len);
		return;
	}
	rt = api_find_route(path);
	if (!rt) {
		reply_error(r, 404, "no endpoint %s — the API's paths are " API_PREFIX
			    "vmm.ping, vm.info, vm.pause, vm.resume, vm.shutdown, vm.migrate, "
			    "vm.migration, vm.migrate-finish, vm.migrate-cancel, vm.snapshot, "
			    "vm.receive-migration and vm.restore "
			    "(docs/api.md)",
			    quote_client(q, sizeof(q), path, 200));
		return;
	}
	/* HEAD is a GET without the body (the server drops it). */
	if (strcmp(method, rt->method) && !(!strcmp(method, "HEAD") && !strcmp(rt->method, "GET"))) {
		reply_error(r, 405, "%s takes %s, not %s", rt->name, rt->method,
			    quote_client(q, sizeof(q), method, 16));
		r->allow = route_allow(rt);
		return;
	}
	obj = api_check_body(rt, body, len, r, &ok);
	if (!ok)
		return;
	rt->handle(t, obj, r);
	json_decref(obj);
}

/* ---- The listening socket ---- */

int api_listen(const char *path, int *fd)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old_mask;
	int s, ret;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		log_error("--api-socket %s: the path is longer than a unix socket's %zu bytes — use "
			  "a shorter one", path, sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_error("--api-socket %s: it exists and is not a socket — give a new path, "
				  "or remove that file if it is not needed", path);
			return -ENOTSOCK;
		}
		/* A socket: stale if nobody accepts on it. */
		s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			return -errno;
		ret = connect(s, (struct sockaddr *)&addr, sizeof(addr)) == 0 ? 0 : -errno;
		close(s);
		if (ret == 0) {
			log_error("--api-socket %s: another process serves it (another vmm?) — give "
				  "another path", path);
			return -EADDRINUSE;
		}
		if (unlink(path) && errno != ENOENT) {
			ret = -errno;
			log_error("--api-socket %s: cannot remove the stale socket: %s", path,
				  strerror(-ret));
			return ret;
		}
	}
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0) {
		ret = -errno;
		log_error("cannot create the API's socket: %s", strerror(-ret));
		return ret;
	}
	/* Only this user may drive the VM: the socket is created 0600. */
	old_mask = umask(0177);
	ret = bind(s, (struct sockaddr *)&addr, sizeof(addr)) ? -errno : 0;
	umask(old_mask);
	if (!ret && listen(s, 16))
		ret = -errno;
	if (ret) {
		log_error("--api-socket %s: cannot listen there: %s — check that its folder exists "
			  "and is writable", path, strerror(-ret));
		close(s);
		return ret;
	}
	*fd = s;
	return 0;
}

/* ---- The HTTP server ---- */

struct api_server {
	struct api_target target;
	struct MHD_Daemon *daemon;
	char *path;
	dev_t dev;
	ino_t ino;		/* the socket we created (unlinked only if still ours) */
	int listen_fd;
	int stop_fd;		/* eventfd: the thread ends */
	pthread_t thread;
	bool thread_started;
};

/* One request being read. */
struct api_request {
	char *body;
	size_t len;
	unsigned long long too_big;	/* non-zero: the body's size, past API_MAX_BODY */
	bool shutdown_after;
};

/* A chunked body past this is not read to its end: its connection is closed. */
#define API_DISCARD_LIMIT (16 * API_MAX_BODY)

static enum MHD_Result api_send(struct MHD_Connection *c, const struct api_reply *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(r->body ? strlen(r->body) : 0,
					       r->body ? r->body : (char *)"",
					       MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	if (r->body)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (r->allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
	ret = MHD_queue_response(c, r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* The Content-Length the client announced; false if none or not a number. */
static bool content_length(struct MHD_Connection *c, unsigned long long *len)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_CONTENT_LENGTH);
	char *end;

	if (!v || !*v)
		return false;
	errno = 0;
	*len = strtoull(v, &end, 10);
	return !errno && !*end;
}

static enum MHD_Result api_access(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct api_server *s = cls;
	struct api_request *req = *con_cls;
	struct api_reply r;
	enum MHD_Result ret;
	unsigned long long announced;

	(void)version;
	if (!req) {
		/* First call: headers only. A body announced too big is refused before it comes. */
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		*con_cls = req;
		if (content_length(c, &announced) && announced > API_MAX_BODY) {
			api_reply_too_big(&r, announced);
			ret = api_send(c, &r);
			api_reply_free(&r);
			return ret;
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (req->too_big || req->len + n > API_MAX_BODY) {
			/* A chunked body: read and dropped up to a point, then refused. */
			req->too_big = (req->too_big ? req->too_big : req->len) + n;
			free(req->body);
			req->body = NULL;
			return req->too_big > API_DISCARD_LIMIT ? MHD_NO : MHD_YES;
		}
		if (!req->body) {
			req->body = malloc(API_MAX_BODY);
			if (!req->body)
				return MHD_NO;
		}
		memcpy(req->body + req->len, upload_data, n);
		req->len += n;
		return MHD_YES;
	}
	if (req->too_big)
		api_reply_too_big(&r, req->too_big);
	else
		api_handle(&s->target, method, url, req->body, req->len, &r);
	req->shutdown_after = r.shutdown_after;
	ret = api_send(c, &r);
	api_reply_free(&r);
	return ret;
}

/* A request is over (reply sent, or the client gone): a shutdown it asked for happens now. */
static void api_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			  enum MHD_RequestTerminationCode toe)
{
	struct api_server *s = cls;
	struct api_request *req = *con_cls;

	(void)c;
	(void)toe;
	if (!req)
		return;
	if (req->shutdown_after) {
		int ret = s->target.ops->shutdown(s->target.opaque);

		if (ret)
			log_warn("api: cannot shut the VM down: %s", strerror(-ret));
	}
	free(req->body);
	free(req);
	*con_cls = NULL;
}

/* libmicrohttpd's own messages (a client's protocol error ...): with -v only. */
static void api_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[256];

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_info("api: %s", msg);
}

/* The `vmm-api` thread: libmicrohttpd's epoll fd and the stop eventfd. */
static void *api_thread(void *arg)
{
	struct api_server *s = arg;
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
	struct pollfd fds[2] = {
		{ .fd = info ? info->epoll_fd : -1, .events = POLLIN },
		{ .fd = s->stop_fd, .events = POLLIN },
	};

	for (;;) {
		MHD_UNSIGNED_LONG_LONG to;
		int timeout = -1;

		if (MHD_get_timeout(s->daemon, &to) == MHD_YES)
			timeout = to > INT_MAX ? INT_MAX : (int)to;
		if (poll(fds, 2, timeout) < 0 && errno != EINTR) {
			log_error("api: poll failed: %s — the control API stops; the VM runs on",
				  strerror(errno));
			break;
		}
		if (fds[1].revents)
			break;
		MHD_run(s->daemon);
	}
	return NULL;
}

int api_server_start(struct api_server **out, const char *path, const struct api_target *t)
{
	struct api_server *s = calloc(1, sizeof(*s));
	struct stat st;
	int ret;

	*out = NULL;
	if (!s || !(s->path = strdup(path))) {
		free(s);
		log_error("cannot allocate the control API");
		return -ENOMEM;
	}
	s->target = *t;
	s->listen_fd = s->stop_fd = -1;
	ret = api_listen(path, &s->listen_fd);
	if (ret)
		goto fail;
	if (stat(path, &st) == 0) {
		s->dev = st.st_dev;
		s->ino = st.st_ino;
	}
	s->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (s->stop_fd < 0) {
		ret = -errno;
		log_error("cannot create an eventfd for the control API: %s", strerror(-ret));
		goto fail;
	}
	s->daemon = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
				     api_access, s,
				     MHD_OPTION_EXTERNAL_LOGGER, api_mhd_log, NULL,
				     MHD_OPTION_LISTEN_SOCKET, (MHD_socket)s->listen_fd,
				     MHD_OPTION_CONNECTION_LIMIT, (unsigned int)API_MAX_CONNS,
				     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)API_IDLE_TIMEOUT_S,
				     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
				     MHD_OPTION_NOTIFY_COMPLETED, api_completed, s,
				     MHD_OPTION_END);
	if (!s->daemon) {
		ret = -EIO;
		log_error("--api-socket %s: libmicrohttpd cannot serve it", path);
		goto fail;
	}
	ret = thread_start(&s->thread, api_thread, s);
	if (ret) {
		log_error("cannot start the control API's thread: %s", strerror(-ret));
		goto fail;
	}
	pthread_setname_np(s->thread, "vmm-api");
	s->thread_started = true;
	*out = s;
	return 0;
fail:
	api_server_stop(s);
	return ret;
}

void api_server_stop(struct api_server *s)
{
	struct stat st;
	uint64_t one = 1;

	if (!s)
		return;
	if (s->thread_started) {
		if (write(s->stop_fd, &one, sizeof(one)) != sizeof(one))
			log_warn("api: cannot stop its thread: %s", strerror(errno));
		pthread_join(s->thread, NULL);
	}
	if (s->daemon)
		MHD_stop_daemon(s->daemon);	/* closes every connection (and the listening fd) */
	else if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->listen_fd >= 0 && stat(s->path, &st) == 0 && st.st_dev == s->dev &&
	    st.st_ino == s->ino)
		unlink(s->path);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	free(s->path);
	free(s);
}
