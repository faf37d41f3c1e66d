// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests for the control API (vmm/api.c), its VM side's vm.info config
 * (vmm/control.c) and the subcommands' client (vmm/api_client.c), without
 * KVM: api_handle() with fake ops, then the server on a real unix socket
 * (libmicrohttpd on its `vmm-api` thread) driven by raw HTTP and by
 * api_client_run().
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/api.h"
#include "vmm/api_client.h"
#include "vmm/config.h"
#include "vmm/base/mig_stream.h"
#include "vmm/base/sbuf.h"
#include "vmm/control.h"
#include "vmm/migration.h"

/* ---- Fake ops: count the calls, answer what the test says ---- */

struct fake_vm {
	pthread_mutex_t lock;
	int pauses, resumes, shutdowns, infos;
	int pause_ret, resume_ret, info_ret;
	bool paused;
	unsigned int pause_delay_ms;
};

static struct fake_vm fake = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int fake_info(void *opaque, json_t *out)
{
	struct fake_vm *f = opaque;
	int ret;

	pthread_mutex_lock(&f->lock);
	f->infos++;
	ret = f->info_ret;
	if (!ret)
		json_object_set_new(out, "state", json_string(f->paused ? "paused" : "running"));
	pthread_mutex_unlock(&f->lock);
	return ret;
}

static int fake_pause(void *opaque)
{
	struct fake_vm *f = opaque;
	int ret;

	if (f->pause_delay_ms)
		usleep(f->pause_delay_ms * 1000);
	pthread_mutex_lock(&f->lock);
	f->pauses++;
	ret = f->pause_ret ? f->pause_ret : (f->paused ? -EALREADY : 0);
	if (!ret)
		f->paused = true;
	pthread_mutex_unlock(&f->lock);
	return ret;
}

static int fake_resume(void *opaque)
{
	struct fake_vm *f = opaque;
	int ret;

	pthread_mutex_lock(&f->lock);
	f->resumes++;
	ret = f->resume_ret ? f->resume_ret : (f->paused ? 0 : -EALREADY);
	if (!ret)
		f->paused = false;
	pthread_mutex_unlock(&f->lock);
	return ret;
}

static int fake_shutdown(void *opaque)
{
	struct fake_vm *f = opaque;

	pthread_mutex_lock(&f->lock);
	f->shutdowns++;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

/* Migration ops: remember what they got, answer fake.mig_ret. */
static char mig_to[128];
static uint64_t mig_downtime, mig_bandwidth;
static bool mig_verify;
static int mig_ret, mig_calls, snap_ret;

static int fake_migrate(void *opaque, const struct api_migrate_args *a, char *why,
			size_t whylen)
{
	(void)opaque;
	mig_calls++;
	snprintf(mig_to, sizeof(mig_to), "%s", a->to);
	mig_downtime = a->max_downtime_ms;
	mig_bandwidth = a->bandwidth;
	mig_verify = a->verify;
	if (mig_ret)
		snprintf(why, whylen, "fake reason %d", mig_ret);
	return mig_ret;
}

static int fake_migration(void *opaque, json_t *out)
{
	(void)opaque;
	if (!mig_calls)
		return -ENOENT;
	json_object_set_new(out, "state", json_string("precopy"));
	return 0;
}

static int fake_migrate_finish(void *opaque)
{
	(void)opaque;
	return mig_calls ? 0 : -ENOENT;
}

static int fake_snapshot(void *opaque, const char *path, json_t *out, char *why, size_t whylen)
{
	(void)opaque;
	if (snap_ret) {
		snprintf(why, whylen, "fake snapshot reason");
		return snap_ret;
	}
	json_object_set_new(out, "path", json_string(path));
	return 0;
}

static char recv_from[128];
static int recv_ret;

static int fake_receive(void *opaque, const char *from, char *why, size_t whylen)
{
	(void)opaque;
	snprintf(recv_from, sizeof(recv_from), "%s", from);
	if (recv_ret)
		snprintf(why, whylen, "fake receive reason");
	return recv_ret;
}

static char restore_path[128];
static int restore_ret;

static int fake_restore(void *opaque, const char *path, char *why, size_t whylen)
{
	(void)opaque;
	snprintf(restore_path, sizeof(restore_path), "%s", path);
	if (restore_ret)
		snprintf(why, whylen, "fake restore reason");
	return restore_ret;
}

static const struct api_ops fake_ops = {
	.info = fake_info,
	.pause = fake_pause,
	.resume = fake_resume,
	.shutdown = fake_shutdown,
	.migrate = fake_migrate,
	.migration = fake_migration,
	.migrate_finish = fake_migrate_finish,
	.migrate_cancel = fake_migrate_finish,
	.snapshot = fake_snapshot,
	.receive = fake_receive,
	.restore = fake_restore,
};

static const struct api_target target = { .ops = &fake_ops, .opaque = &fake, .version = "9.8.7" };

static int count(int *field)
{
	int n;

	pthread_mutex_lock(&fake.lock);
	n = *field;
	pthread_mutex_unlock(&fake.lock);
	return n;
}

static void fake_reset(void)
{
	pthread_mutex_lock(&fake.lock);
	fake.pauses = fake.resumes = fake.shutdowns = fake.infos = 0;
	fake.pause_ret = fake.resume_ret = fake.info_ret = 0;
	fake.paused = false;
	fake.pause_delay_ms = 0;
	pthread_mutex_unlock(&fake.lock);
	mig_ret = mig_calls = snap_ret = 0;
	mig_to[0] = '\0';
}

/* ---- api_handle() ---- */

static struct api_reply reply;

static void handle(const char *method, const char *path, const char *body)
{
	api_reply_free(&reply);
	api_handle(&target, method, path, body, body ? strlen(body) : 0, &reply);
}

/* The reply's JSON body as an object (asserts it is one); json_decref it. */
static json_t *reply_obj(void)
{
	json_error_t e;
	json_t *obj;

	cr_assert_not_null(reply.body, "status %u without a body", reply.status);
	cr_assert(reply.body[strlen(reply.body) - 1] == '\n', "body not ending in a newline");
	obj = json_loads(reply.body, 0, &e);
	cr_assert_not_null(obj, "body is not JSON (%s): %s", e.text, reply.body);
	cr_assert(json_is_object(obj));
	return obj;
}

/* The reply is `status` with {"error": "...needle..."} and nothing else. */
static void expect_error(unsigned int status, const char *needle)
{
	json_t *obj;
	const char *msg;

	cr_assert_eq(reply.status, status, "status %u, want %u (%s)", reply.status, status,
		     reply.body ? reply.body : "");
	obj = reply_obj();
	msg = json_string_value(json_object_get(obj, "error"));
	cr_assert_not_null(msg, "no \"error\" string: %s", reply.body);
	cr_assert_eq(json_object_size(obj), 1);
	cr_assert(strstr(msg, needle), "error '%s' lacks '%s'", msg, needle);
	cr_assert_not(reply.shutdown_after);
	json_decref(obj);
}

static void handle_fini(void)
{
	api_reply_free(&reply);
	fake_reset();
}

TestSuite(api_handle, .init = fake_reset, .fini = handle_fini);

Test(api_handle, ping_gives_version)
{
	json_t *obj;

	handle("GET", "/api/v1/vmm.ping", NULL);
	cr_assert_eq(reply.status, 200);
	obj = reply_obj();
	cr_assert_str_eq(json_string_value(json_object_get(obj, "version")), "9.8.7");
	cr_assert_eq(json_integer_value(json_object_get(obj, "pid")), getpid());
	json_decref(obj);
}

Test(api_handle, info_from_ops)
{
	json_t *obj;

	handle("GET", "/api/v1/vm.info", NULL);
	cr_assert_eq(reply.status, 200);
	obj = reply_obj();
	cr_assert_str_eq(json_string_value(json_object_get(obj, "state")), "running");
	json_decref(obj);
	cr_assert_eq(fake.infos, 1);

	fake.info_ret = -EAGAIN;
	handle("GET", "/api/v1/vm.info", NULL);
	expect_error(503, "starting or rebooting");
}

Test(api_handle, head_is_get)
{
	handle("HEAD", "/api/v1/vm.info", NULL);
	cr_assert_eq(reply.status, 200);
}

Test(api_handle, pause_resume_and_conflicts)
{
	handle("PUT", "/api/v1/vm.pause", NULL);
	cr_assert_eq(reply.status, 204);
	cr_assert_null(reply.body);
	cr_assert(fake.paused);

	handle("PUT", "/api/v1/vm.pause", NULL);
	expect_error(409, "already paused");
	cr_assert(fake.paused);

	handle("PUT", "/api/v1/vm.resume", "{}");
	cr_assert_eq(reply.status, 204);
	cr_assert_not(fake.paused);

	handle("PUT", "/api/v1/vm.resume", NULL);
	expect_error(409, "not paused");
	cr_assert_eq(fake.pauses, 2);
	cr_assert_eq(fake.resumes, 2);
}

Test(api_handle, op_errors_map_to_statuses)
{
	static const struct { int err; unsigned int status; const char *needle; } cases[] = {
		{ -ESHUTDOWN, 409, "shutting down" },
		{ -EAGAIN, 503, "try again" },
		{ -ETIMEDOUT, 503, "did not stop in time" },
		{ -EIO, 500, "Input/output error" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fake.pause_ret = cases[i].err;
		handle("PUT", "/api/v1/vm.pause", NULL);
		expect_error(cases[i].status, cases[i].needle);
	}
}

Test(api_handle, shutdown_happens_after_the_reply)
{
	handle("PUT", "/api/v1/vm.shutdown", NULL);
	cr_assert_eq(reply.status, 204);
	cr_assert(reply.shutdown_after);
	/* api_handle only asks; the server calls ops->shutdown once the reply is out. */
	cr_assert_eq(fake.shutdowns, 0);
}

Test(api_handle, unknown_paths_are_404)
{
	static const char *const paths[] = {
		"/api/v1/vm.teleport", "/api/v1/", "/", "", "/api/v2/vm.info", "/api/v1/vm.info/",
		"/api/v1/vm.infox", "/api/v1//vm.info", "vm.info", "/API/V1/vm.info",
	};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		handle("GET", paths[i], NULL);
		expect_error(404, "no endpoint");
	}
	cr_assert_eq(fake.infos, 0);
}

Test(api_handle, wrong_method_is_405_with_allow)
{
	handle("GET", "/api/v1/vm.pause", NULL);
	expect_error(405, "vm.pause takes PUT, not GET");
	cr_assert_str_eq(reply.allow, "PUT");
	handle("PUT", "/api/v1/vm.info", NULL);
	expect_error(405, "takes GET");
	cr_assert_str_eq(reply.allow, "GET, HEAD");
	handle("DELETE", "/api/v1/vm.shutdown", NULL);
	expect_error(405, "takes PUT");
	handle("POST", "/api/v1/vm.pause", NULL);
	expect_error(405, "not POST");
	cr_assert_eq(fake.pauses, 0);
	cr_assert_eq(fake.shutdowns, 0);
}

Test(api_handle, bad_bodies_are_400_and_change_nothing)
{
	static const struct { const char *body, *needle; } cases[] = {
		{ "{", "not valid JSON" },
		{ "not json", "not valid JSON" },
		{ "{\"a\":1}x", "not valid JSON" },
		{ " ", "not valid JSON" },
		{ "[]", "must be a JSON object" },
		{ "42", "must be a JSON object" },
		{ "\"s\"", "must be a JSON object" },
		{ "null", "must be a JSON object" },
		{ "{\"force\":true}", "unknown field 'force'" },
		{ "{\"a\":1,\"a\":2}", "duplicate" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		handle("PUT", "/api/v1/vm.pause", cases[i].body);
		expect_error(400, cases[i].needle);
		handle("PUT", "/api/v1/vm.shutdown", cases[i].body);
		expect_error(400, cases[i].needle);
	}
	cr_assert_eq(fake.pauses, 0);
	cr_assert_not(fake.paused);
}

Test(api_handle, body_with_nul_is_refused)
{
	static const char body[] = "{}\0{}";

	api_reply_free(&reply);
	api_handle(&target, "PUT", "/api/v1/vm.pause", body, sizeof(body) - 1, &reply);
	expect_error(400, "not valid JSON");
	cr_assert_eq(fake.pauses, 0);
}

Test(api_handle, huge_body_is_413)
{
	size_t n = API_MAX_BODY + 1;
	char *big = malloc(n + 1);

	memset(big, ' ', n);
	big[0] = '{';
	big[n - 1] = '}';
	big[n] = '\0';
	handle("PUT", "/api/v1/vm.pause", big);
	expect_error(413, "at most 65536");
	cr_assert_eq(fake.pauses, 0);
	free(big);

	/* Exactly the cap is read. */
	big = malloc(API_MAX_BODY + 1);
	memset(big, ' ', API_MAX_BODY);
	big[0] = '{';
	big[API_MAX_BODY - 1] = '}';
	big[API_MAX_BODY] = '\0';
	handle("PUT", "/api/v1/vm.pause", big);
	cr_assert_eq(reply.status, 204);
	free(big);
}

Test(api_handle, error_messages_bounded)
{
	char path[2048];

	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	memcpy(path, "/api/v1/", 8);
	handle("GET", path, NULL);
	expect_error(404, "no endpoint");
	cr_assert_lt(strlen(reply.body), 600);
}

/* ---- control_config_json(): vm.info's config ---- */

Test(api_control, config_lists_every_device)
{
	struct vmm_config cfg = {
		.kernel = "/k", .initrd = NULL, .cmdline = "console=ttyS0", .ncpus = 2,
		.memory = 512ULL << 20, .mem_shared = true, .ndisks = 2, .nnets = 2, .rng = true,
		.console_set = true, .vsock_set = true, .nfs = 1,
	};
	json_t *c, *devs, *d;

	cfg.disks[0] = (struct blk_options){ .path = "/d.img", .readonly = true, .id = "ser" };
	cfg.disks[1] = (struct blk_options){ .vhost_user = "/vu.sock", .reconnect = 20 };
	cfg.nets[0] = (struct net_options){ .tap = "tap0", .mac_set = true,
					    .mac = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 },
					    .vhost = NET_VHOST_OFF };
	cfg.nets[1] = (struct net_options){ .vhost_user = "/vn.sock" };
	cfg.fs[0] = (struct fs_options){ .vhost_user = "/fs.sock", .tag = "share" };
	cfg.console = (struct console_options){ .backend = CONSOLE_BACKEND_FILE, .path = "/c" };
	cfg.vsock.cid = 42;
	c = control_config_json(&cfg);
	cr_assert_not_null(c);
	cr_assert_eq(json_integer_value(json_object_get(c, "cpus")), 2);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(c, "memory"), "size")),
		     512LL << 20);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "memory"), "kind")),
			 "shared");
	cr_assert(json_is_null(json_object_get(c, "initrd")) || !json_object_get(c, "initrd"));
	devs = json_object_get(c, "devices");
	cr_assert_eq(json_array_size(devs), 8);

	d = json_array_get(devs, 0);
	cr_assert_str_eq(json_string_value(json_object_get(d, "id")), "virtio-blk0");
	cr_assert_str_eq(json_string_value(json_object_get(d, "kind")), "virtio-blk");
	cr_assert(json_is_true(json_object_get(json_object_get(d, "options"), "readonly")));
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(d, "options"), "serial")),
			 "ser");
	d = json_array_get(devs, 1);
	cr_assert_str_eq(json_string_value(json_object_get(d, "id")), "virtio-blk1");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(d, "options"),
							   "vhost_user")), "/vu.sock");
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(d, "options"),
							"reconnect")), 20);
	d = json_array_get(devs, 2);
	cr_assert_str_eq(json_string_value(json_object_get(d, "id")), "virtio-net0");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(d, "options"), "mac")),
			 "52:54:00:12:34:56");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(d, "options"), "vhost")),
			 "off");
	d = json_array_get(devs, 3);
	cr_assert_str_eq(json_string_value(json_object_get(d, "id")), "virtio-net1");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(d, "options"),
							   "vhost_user")), "/vn.sock");
	cr_assert_null(json_object_get(json_object_get(d, "options"), "mac"));
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(devs, 4), "id")),
			 "virtio-rng0");
	d = json_array_get(devs, 5);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(d, "options"), "path")),
			 "/c");
	d = json_array_get(devs, 6);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(d, "options"), "cid")), 42);
	d = json_array_get(devs, 7);
	cr_assert_str_eq(json_string_value(json_object_get(d, "id")), "virtio-fs0");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(d, "options"), "tag")),
			 "share");
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(d, "options"), "queues")), 1);
	json_decref(c);
}

Test(api_control, memory_kinds)
{
	struct vmm_config cfg = { .kernel = "/k", .cmdline = "", .ncpus = 1, .memory = 1 << 24 };
	json_t *c;

	c = control_config_json(&cfg);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "memory"), "kind")),
			 "anonymous");
	cr_assert_eq(json_array_size(json_object_get(c, "devices")), 0);
	json_decref(c);
	cfg.hugepages = true;
	c = control_config_json(&cfg);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "memory"), "kind")),
			 "hugepages");
	json_decref(c);
}

Test(api_control, no_vm_means_starting_and_eagain)
{
	struct vmm_config cfg = { .kernel = "/k", .cmdline = "", .ncpus = 1, .memory = 1 << 24 };
	struct control ctl;
	json_t *out = json_object();

	cr_assert_eq(control_init(&ctl, &cfg), 0);
	cr_assert_eq(control_api_ops.info(&ctl, out), 0);
	cr_assert_str_eq(json_string_value(json_object_get(out, "state")), "starting");
	cr_assert(json_is_null(json_object_get(out, "uptime_s")));
	cr_assert_eq(control_api_ops.pause(&ctl), -EAGAIN);
	cr_assert_eq(control_api_ops.resume(&ctl), -EAGAIN);
	cr_assert_not(control_shutdown_requested(&ctl));
	cr_assert_eq(control_api_ops.shutdown(&ctl), 0);
	cr_assert(control_shutdown_requested(&ctl));
	json_decref(out);
	control_destroy(&ctl);
}

/* ---- The server on a unix socket ---- */

static char sock_path[108];
static struct api_server *server;

static void server_start(void)
{
	fake_reset();
	snprintf(sock_path, sizeof(sock_path), "/tmp/vmm-test-api.%d.sock", getpid());
	unlink(sock_path);
	cr_assert_eq(api_server_start(&server, sock_path, &target), 0);
}

static void server_stop(void)
{
	api_server_stop(server);
	server = NULL;
	unlink(sock_path);
	fake_reset();
}

static int connect_sock(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	strcpy(addr.sun_path, sock_path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0, "connect: %s",
		     strerror(errno));
	return fd;
}

/* Sends raw bytes (closing the write side if asked) and reads the whole reply; malloc'd. */
static char *raw_exchange_fd(int fd, const char *req, size_t len, bool shut)
{
	size_t cap = 1 << 20, n = 0;
	char *buf = malloc(cap);
	struct timeval tv = { .tv_sec = 20 };

	cr_assert_eq(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
	if (shut)
		shutdown(fd, SHUT_WR);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (;;) {
		ssize_t r = recv(fd, buf + n, cap - n - 1, 0);

		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	close(fd);
	return buf;
}

static char *raw_exchange(const char *req)
{
	return raw_exchange_fd(connect_sock(), req, strlen(req), false);
}

static unsigned int raw_status(const char *raw)
{
	unsigned int status = 0;
	size_t off;

	cr_assert_eq(api_client_parse_reply(raw, strlen(raw), &status, &off), 0, "not HTTP: '%.200s'",
		     raw);
	return status;
}

TestSuite(api_server, .init = server_start, .fini = server_stop);

Test(api_server, socket_is_private)
{
	struct stat st;

	cr_assert_eq(lstat(sock_path, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
}

Test(api_server, client_request_info)
{
	unsigned int status;
	char *body;
	json_t *obj;

	cr_assert_eq(api_client_request(sock_path, "GET", "/api/v1/vm.info", 5000, &status, &body), 0);
	cr_assert_eq(status, 200);
	obj = json_loads(body, 0, NULL);
	cr_assert_not_null(obj, "%s", body);
	cr_assert_str_eq(json_string_value(json_object_get(obj, "state")), "running");
	json_decref(obj);
	free(body);
}

Test(api_server, json_content_type_and_keep_alive)
{
	int fd = connect_sock();
	char *raw;

	/* Two requests on one connection (HTTP/1.1 keep-alive), the second closing it. */
	raw = raw_exchange_fd(fd, "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n"
			      "GET /api/v1/vm.info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			      strlen("GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n"
				     "GET /api/v1/vm.info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
			      false);
	cr_assert(strstr(raw, "\"version\":\"9.8.7\""), "%s", raw);
	cr_assert(strstr(raw, "\"state\":\"running\""), "%s", raw);
	cr_assert(strcasestr(raw, "Content-Type: application/json"), "%s", raw);
	free(raw);
}

Test(api_server, errors_over_http)
{
	char *raw;

	raw = raw_exchange("GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	cr_assert_eq(raw_status(raw), 404);
	cr_assert(strstr(raw, "{\"error\":"), "%s", raw);
	free(raw);

	raw = raw_exchange("GET /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	cr_assert_eq(raw_status(raw), 405);
	cr_assert(strcasestr(raw, "\r\nAllow: PUT\r\n"), "%s", raw);
	free(raw);

	raw = raw_exchange("PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
			   "Content-Type: application/json\r\nContent-Length: 5\r\n\r\n{\"a\":");
	cr_assert_eq(raw_status(raw), 400);
	cr_assert(strstr(raw, "not valid JSON"), "%s", raw);
	free(raw);
	cr_assert_eq(count(&fake.pauses), 0);

	/* Not HTTP at all: libmicrohttpd answers 400 itself. */
	raw = raw_exchange("HELLO\r\n\r\n");
	cr_assert(raw[0] == '\0' || raw_status(raw) == 400, "%s", raw);
	free(raw);
}

Test(api_server, announced_huge_body_is_413_before_it_is_sent)
{
	char *raw;

	raw = raw_exchange("PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
			   "Content-Length: 10000000\r\n\r\n{");
	cr_assert_eq(raw_status(raw), 413);
	cr_assert(strstr(raw, "at most 65536"), "%s", raw);
	free(raw);
	cr_assert_eq(count(&fake.pauses), 0);
}

Test(api_server, chunked_body_past_the_cap)
{
	size_t chunk = 32 * 1024, n = 0;
	char *req = malloc(8 * (chunk + 16) + 256), *raw;
	int fd;

	n += (size_t)sprintf(req, "PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
			     "Transfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 4; i++) {
		n += (size_t)sprintf(req + n, "%zx\r\n", chunk);
		memset(req + n, ' ', chunk);
		n += chunk;
		n += (size_t)sprintf(req + n, "\r\n");
	}
	n += (size_t)sprintf(req + n, "0\r\n\r\n");
	fd = connect_sock();
	raw = raw_exchange_fd(fd, req, n, false);
	cr_assert_eq(raw_status(raw), 413, "%s", raw);
	free(raw);
	free(req);
	cr_assert_eq(count(&fake.pauses), 0);
}

Test(api_server, shutdown_after_reply)
{
	char *raw = raw_exchange("PUT /api/v1/vm.shutdown HTTP/1.1\r\nHost: x\r\n"
				 "Connection: close\r\n\r\n");

	cr_assert_eq(raw_status(raw), 204);
	free(raw);
	for (int i = 0; i < 100 && count(&fake.shutdowns) == 0; i++)
		usleep(10000);
	cr_assert_eq(count(&fake.shutdowns), 1);
}

struct client_arg {
	unsigned int status;
	int ret;
};

static void *client_thread(void *arg)
{
	struct client_arg *a = arg;
	char *body = NULL;

	a->ret = api_client_request(sock_path, "GET", "/api/v1/vm.info", 20000, &a->status, &body);
	free(body);
	return NULL;
}

Test(api_server, many_clients_at_once)
{
	enum { N = 48 };
	pthread_t t[N];
	struct client_arg a[N];

	for (int i = 0; i < N; i++) {
		a[i] = (struct client_arg){ 0 };
		cr_assert_eq(pthread_create(&t[i], NULL, client_thread, &a[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(a[i].ret, 0, "client %d: %s", i, strerror(-a[i].ret));
		cr_assert_eq(a[i].status, 200);
	}
	cr_assert_eq(count(&fake.infos), N);
}

Test(api_server, silent_client_does_not_block_others)
{
	int silent = connect_sock(), half = connect_sock();
	unsigned int status;
	char *body;

	/* One says nothing, one stops mid-header: another client is still served at once. */
	cr_assert_eq(send(half, "GET /api/v1/vm.info HTTP/1.1\r\nHo", 33, MSG_NOSIGNAL), 33);
	cr_assert_eq(api_client_request(sock_path, "PUT", "/api/v1/vm.pause", 3000, &status, &body),
		     0);
	cr_assert_eq(status, 204);
	free(body);
	cr_assert_eq(count(&fake.pauses), 1);
	close(silent);
	close(half);
}

Test(api_server, idle_client_is_disconnected, .timeout = 30)
{
	int fd = connect_sock();
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	/* Past API_IDLE_TIMEOUT_S the server closes it (EOF), with nothing changed. */
	cr_assert_eq(poll(&p, 1, (API_IDLE_TIMEOUT_S + 5) * 1000), 1);
	cr_assert_eq(recv(fd, &c, 1, 0), 0);
	close(fd);
	cr_assert_eq(count(&fake.pauses), 0);
}

Test(api_server, subcommands)
{
	FILE *out = tmpfile(), *err = tmpfile();
	char line[512];

	cr_assert_eq(api_client_run("pause", sock_path, out, err), API_CLIENT_OK);
	cr_assert_eq(api_client_run("pause", sock_path, out, err), API_CLIENT_STATE);
	cr_assert_eq(api_client_run("resume", sock_path, out, err), API_CLIENT_OK);
	cr_assert_eq(api_client_run("resume", sock_path, out, err), API_CLIENT_STATE);
	fake.pause_ret = -EIO;
	cr_assert_eq(api_client_run("pause", sock_path, out, err), API_CLIENT_REFUSED);
	/* The fake's vm.info lacks the config: not a reply `vmm status` understands. */
	cr_assert_eq(api_client_run("status", sock_path, out, err), API_CLIENT_UNREACHABLE);
	cr_assert_eq(api_client_run("fly", sock_path, out, err), API_CLIENT_USAGE);
	rewind(out);
	cr_assert_not_null(fgets(line, sizeof(line), out));
	cr_assert_str_eq(line, "paused\n");
	cr_assert_not_null(fgets(line, sizeof(line), out));
	cr_assert_str_eq(line, "resumed\n");
	rewind(err);
	cr_assert_not_null(fgets(line, sizeof(line), err));
	cr_assert(strstr(line, "vmm pause: the VMM answered 409: the VM is already paused"), "%s",
		  line);
	fclose(out);
	fclose(err);
}

/* ---- The socket's path: stale, foreign, in use; the client's errors ---- */

static char tmp_path[108];

static void path_init(void)
{
	snprintf(tmp_path, sizeof(tmp_path), "/tmp/vmm-test-api-path.%d", getpid());
	unlink(tmp_path);
}

static void path_fini(void)
{
	unlink(tmp_path);
}

TestSuite(api_path, .init = path_init, .fini = path_fini);

Test(api_path, refuses_a_file)
{
	int fd = open(tmp_path, O_CREAT | O_WRONLY, 0600);
	struct api_server *s = NULL;
	struct stat st;

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(api_server_start(&s, tmp_path, &target), -ENOTSOCK);
	cr_assert_null(s);
	cr_assert_eq(stat(tmp_path, &st), 0, "the file was removed");
	cr_assert(S_ISREG(st.st_mode));
}

Test(api_path, replaces_a_stale_socket_and_unlinks_on_stop)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct api_server *s = NULL;
	unsigned int status;
	char *body;

	strcpy(addr.sun_path, tmp_path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd);	/* a socket file nobody listens on: what a killed vmm leaves */
	cr_assert_eq(api_server_start(&s, tmp_path, &target), 0);
	cr_assert_eq(api_client_request(tmp_path, "GET", "/api/v1/vmm.ping", 5000, &status, &body), 0);
	cr_assert_eq(status, 200);
	free(body);
	api_server_stop(s);
	cr_assert_eq(access(tmp_path, F_OK), -1, "the socket is still there");
	cr_assert_eq(api_client_request(tmp_path, "GET", "/api/v1/vmm.ping", 1000, &status, &body),
		     -ENOENT);
}

Test(api_path, refuses_a_live_socket)
{
	struct api_server *a = NULL, *b = NULL;

	cr_assert_eq(api_server_start(&a, tmp_path, &target), 0);
	cr_assert_eq(api_server_start(&b, tmp_path, &target), -EADDRINUSE);
	cr_assert_null(b);
	api_server_stop(a);
}

Test(api_path, too_long)
{
	char longp[200];
	struct api_server *s = NULL;

	memset(longp, 'x', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	cr_assert_eq(api_server_start(&s, longp, &target), -ENAMETOOLONG);
}

Test(api_path, client_cannot_reach)
{
	FILE *out = tmpfile(), *err = tmpfile();
	int fd;

	cr_assert_eq(api_client_run("status", tmp_path, out, err), API_CLIENT_UNREACHABLE);
	/* A listener that answers something else than HTTP. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un addr = { .sun_family = AF_UNIX };

		strcpy(addr.sun_path, tmp_path);
		cr_assert_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
		cr_assert_eq(listen(fd, 1), 0);
	}
	if (fork() == 0) {
		int c = accept(fd, NULL, NULL);
		char buf[256];

		(void)!read(c, buf, sizeof(buf));
		(void)!write(c, "SSH-2.0-nope\r\n", 14);
		_exit(0);
	}
	cr_assert_eq(api_client_run("status", tmp_path, out, err), API_CLIENT_UNREACHABLE);
	close(fd);
	fclose(out);
	fclose(err);
}

/* ---- api_client_parse_reply() ---- */

Test(api_client, parse_reply)
{
	static const char ok[] = "HTTP/1.1 204 No Content\r\nX: y\r\n\r\n";
	static const char body[] = "HTTP/1.0 409 Conflict\r\n\r\n{\"error\":\"e\"}";
	static const char *const bad[] = {
		"", "HTTP/1.1", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/2.0 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\n", "http/1.1 200 OK\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 099 Low\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n",
	};
	unsigned int status;
	size_t off;

	cr_assert_eq(api_client_parse_reply(ok, strlen(ok), &status, &off), 0);
	cr_assert_eq(status, 204);
	cr_assert_eq(off, strlen(ok));
	cr_assert_eq(api_client_parse_reply(body, strlen(body), &status, &off), 0);
	cr_assert_eq(status, 409);
	cr_assert_str_eq(body + off, "{\"error\":\"e\"}");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(api_client_parse_reply(bad[i], strlen(bad[i]), &status, &off), -EBADMSG,
			     "'%s' accepted", bad[i]);
}

static int open_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

Test(api_path, start_and_stop_leave_no_fd)
{
	int before = open_fds();
	struct api_server *s = NULL;
	unsigned int status;
	char *body;
	int c;

	cr_assert_eq(api_server_start(&s, tmp_path, &target), 0);
	cr_assert_eq(api_client_request(tmp_path, "GET", "/api/v1/vmm.ping", 5000, &status, &body), 0);
	free(body);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un addr = { .sun_family = AF_UNIX };

		strcpy(addr.sun_path, tmp_path);
		cr_assert_eq(connect(c, (struct sockaddr *)&addr, sizeof(addr)), 0);
	}
	usleep(50000);	/* the server accepted it: stop closes it */
	api_server_stop(s);
	close(c);
	cr_assert_eq(open_fds(), before);
}

Test(api_handle, client_text_quoted_safely)
{
	json_t *obj;

	handle("GET", "/api/v1/\xff\xfe\x01vm", NULL);
	expect_error(404, "no endpoint /api/v1/?" "?" "?vm");
	handle("\xc3\x01GET", "/api/v1/vm.pause", NULL);
	expect_error(405, "not ?" "?GET");
	handle("PUT", "/api/v1/vm.pause", "{\"\\u0001\\u00e9\":1}");
	expect_error(400, "unknown field '?" "?" "?'");
	obj = reply_obj();
	json_decref(obj);
}

/* ---- migration and snapshot endpoints ---- */

Test(api_handle, migrate_takes_to_and_numbers)
{
	handle("GET", "/api/v1/vm.migration", NULL);
	expect_error(404, "no migration");
	handle("PUT", "/api/v1/vm.migrate-finish", NULL);
	expect_error(409, "no migration is running");
	handle("PUT", "/api/v1/vm.migrate", "{\"to\":\"tcp:h:1\",\"max_downtime_ms\":50,"
	       "\"bandwidth\":1000}");
	cr_assert_eq(reply.status, 202, "%u %s", reply.status, reply.body);
	cr_assert_str_eq(mig_to, "tcp:h:1");
	cr_assert_eq(mig_downtime, 50);
	cr_assert_eq(mig_bandwidth, 1000);
	cr_assert_not(mig_verify, "not verified unless asked");
	handle("PUT", "/api/v1/vm.migrate", "{\"to\":\"tcp:h:1\"}");
	cr_assert_eq(mig_downtime, 300, "default downtime");
	cr_assert_eq(mig_bandwidth, 0);
	handle("PUT", "/api/v1/vm.migrate", "{\"to\":\"tcp:h:1\",\"verify\":true}");
	cr_assert_eq(reply.status, 202, "%u %s", reply.status, reply.body);
	cr_assert(mig_verify);
	handle("GET", "/api/v1/vm.migration", NULL);
	cr_assert_eq(reply.status, 200);
	handle("PUT", "/api/v1/vm.migrate-finish", NULL);
	cr_assert_eq(reply.status, 204);
}

Test(api_handle, migrate_bad_bodies_change_nothing)
{
	static const char *const bad[] = {
		NULL, "{}", "{\"to\":\"\"}", "{\"to\":5}", "{\"to\":\"tcp:h:1\",\"bandwidth\":-1}",
		"{\"to\":\"tcp:h:1\",\"max_downtime_ms\":\"soon\"}", "{\"to\":\"tcp:h:1\",\"x\":1}",
		"{\"to\":\"tcp:h:1\",\"verify\":1}", "{\"to\":\"tcp:h:1\",\"verify\":\"yes\"}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		handle("PUT", "/api/v1/vm.migrate", bad[i]);
		cr_assert_eq(reply.status, 400, "body %s: %u %s", bad[i] ? bad[i] : "(none)",
			     reply.status, reply.body);
	}
	cr_assert_eq(mig_calls, 0);
}

Test(api_handle, migrate_errors_map_to_statuses)
{
	static const struct { int err; unsigned int status; } map[] = {
		{ -EINVAL, 400 }, { -EBUSY, 409 }, { -EOPNOTSUPP, 409 }, { -ECONNREFUSED, 502 },
		{ -EAGAIN, 503 },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		mig_ret = map[i].err;
		handle("PUT", "/api/v1/vm.migrate", "{\"to\":\"tcp:h:1\"}");
		cr_assert_eq(reply.status, map[i].status, "errno %d: %u %s", -map[i].err,
			     reply.status, reply.body);
	}
}

Test(api_handle, snapshot_endpoint)
{
	json_t *obj;

	handle("PUT", "/api/v1/vm.snapshot", "{\"to\":\"/s\"}");
	cr_assert_eq(reply.status, 200);
	obj = reply_obj();
	cr_assert_str_eq(json_string_value(json_object_get(obj, "path")), "/s");
	json_decref(obj);
	handle("PUT", "/api/v1/vm.snapshot", NULL);
	expect_error(400, "'to'");
	snap_ret = -EEXIST;
	handle("PUT", "/api/v1/vm.snapshot", "{\"to\":\"/s\"}");
	expect_error(409, "fake snapshot reason");
}

Test(api_handle, receive_migration_endpoint)
{
	handle("PUT", "/api/v1/vm.receive-migration", "{\"from\":\"tcp:0.0.0.0:4444\"}");
	cr_assert_eq(reply.status, 202, "%u %s", reply.status, reply.body);
	cr_assert_str_eq(recv_from, "tcp:0.0.0.0:4444");
	handle("PUT", "/api/v1/vm.receive-migration", "{}");
	expect_error(400, "'from'");
	recv_ret = -EALREADY;
	handle("PUT", "/api/v1/vm.receive-migration", "{\"from\":\"tcp:0.0.0.0:4444\"}");
	expect_error(409, "fake receive reason");
	recv_ret = -EINVAL;
	handle("PUT", "/api/v1/vm.receive-migration", "{\"from\":\"x\"}");
	expect_error(400, "fake receive reason");
	recv_ret = 0;
}

Test(api_handle, receive_on_a_vmm_that_does_not_wait)
{
	struct control c;
	char why[256] = "";

	cr_assert_eq(control_init(&c, NULL), 0);
	cr_assert_eq(control_api_ops.receive(&c, "tcp:127.0.0.1:0", why, sizeof(why)), -EALREADY);
	cr_assert(strstr(why, "--incoming defer"), "%s", why);
	c.incoming_wait = true;
	cr_assert_eq(control_api_ops.receive(&c, "nonsense", why, sizeof(why)), -EINVAL);
	cr_assert_eq(control_api_ops.receive(&c, "tcp:127.0.0.1:0", why, sizeof(why)), 0, "%s", why);
	cr_assert_geq(c.incoming_lfd, 0);
	cr_assert_eq(control_api_ops.receive(&c, "tcp:127.0.0.1:0", why, sizeof(why)), -EALREADY);
	control_destroy(&c);
}

Test(api_handle, restore_endpoint)
{
	handle("PUT", "/api/v1/vm.restore", "{\"from\":\"/var/lib/vm/snap\"}");
	cr_assert_eq(reply.status, 202, "%u %s", reply.status, reply.body);
	cr_assert(strstr(reply.body, "\"restoring\""), "%s", reply.body);
	cr_assert_str_eq(restore_path, "/var/lib/vm/snap");
	handle("PUT", "/api/v1/vm.restore", "{\"to\":\"/x\"}");
	expect_error(400, "to");
	handle("GET", "/api/v1/vm.restore", NULL);
	expect_error(405, "PUT");
	restore_ret = -EALREADY;
	handle("PUT", "/api/v1/vm.restore", "{\"from\":\"/s\"}");
	expect_error(409, "fake restore reason");
	restore_ret = -EINVAL;
	handle("PUT", "/api/v1/vm.restore", "{\"from\":\"/s\"}");
	expect_error(400, "fake restore reason");
	restore_ret = 0;
}

/* A snapshot file that holds only a header and a CONFIG section with one run option. */
static void write_tiny_snapshot(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	struct mig_stream s;
	struct sbuf b;

	cr_assert_geq(fd, 0);
	cr_assert_eq(mig_stream_init(&s, fd, true, 1000), 0);
	cr_assert_eq(mig_write_header(&s, 0, "x86_64"), 0);
	sbuf_init_writer(&b);
	sbuf_put_u32(&b, 1);		/* vCPUs */
	sbuf_put_u64(&b, 64u << 20);	/* RAM */
	sbuf_put_u32(&b, 0);		/* regions */
	sbuf_put_u32(&b, 0);		/* devices */
	sbuf_put_u32(&b, 1);		/* run options */
	sbuf_put_str(&b, "--cpus=1");
	cr_assert_eq(sbuf_error(&b), 0);
	cr_assert_eq(mig_write_section(&s, MIG_KIND_CONFIG, 0, MIG_CONFIG_VERSION, b.data, b.len), 0);
	sbuf_free(&b);
	cr_assert_eq(mig_write_end(&s), 0);
	mig_stream_fini(&s);
	close(fd);
}

Test(api_handle, restore_on_the_control)
{
	char dir[] = "/tmp/vmm-test-restore.XXXXXX", snap[128], junk[128], why[256] = "";
	const char *from = NULL;
	struct control c;
	bool is_file = false;
	int fd, efd_sig;
	char head[8];

	cr_assert(mkdtemp(dir));
	snprintf(snap, sizeof(snap), "%s/snap", dir);
	snprintf(junk, sizeof(junk), "%s/junk", dir);
	write_tiny_snapshot(snap);
	fd = open(junk, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_eq(write(fd, "not a snapshot at all", 21), 21);
	close(fd);

	cr_assert_eq(control_init(&c, NULL), 0);
	/* Not started with --incoming defer. */
	cr_assert_eq(control_api_ops.restore(&c, snap, why, sizeof(why)), -EALREADY);
	cr_assert(strstr(why, "--incoming defer"), "%s", why);
	c.incoming_wait = true;
	cr_assert_eq(control_api_ops.restore(&c, "/nonexistent/snap", why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "No such file"), "%s", why);
	cr_assert_eq(control_api_ops.restore(&c, junk, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "not a snapshot"), "%s", why);
	cr_assert_eq(c.restore_fd, -1);
	cr_assert_eq(control_api_ops.restore(&c, snap, why, sizeof(why)), 0, "%s", why);
	cr_assert_geq(c.restore_fd, 0);
	/* One at a time, and not both a restore and a receive. */
	cr_assert_eq(control_api_ops.restore(&c, snap, why, sizeof(why)), -EALREADY);
	cr_assert_eq(control_api_ops.receive(&c, "tcp:127.0.0.1:0", why, sizeof(why)), -EALREADY);
	/* main's wait gets the file, from its start. */
	efd_sig = eventfd(0, EFD_CLOEXEC);
	fd = control_wait_incoming(&c, efd_sig, &from, &is_file);
	cr_assert_geq(fd, 0);
	cr_assert(is_file);
	cr_assert_str_eq(from, snap);
	cr_assert_eq(read(fd, head, sizeof(head)), (ssize_t)sizeof(head));
	cr_assert_eq(lseek(fd, 0, SEEK_CUR), 8);
	cr_assert_eq(c.restore_fd, -1);
	cr_assert_not(c.incoming_wait);
	close(fd);
	close(efd_sig);
	control_destroy(&c);
	unlink(snap);
	unlink(junk);
	rmdir(dir);
}
