// SPDX-License-Identifier: GPL-2.0-only

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm/base/guest_mem.h"
#include "vmm/base/log.h"
#include "vmm/control.h"
#include "vmm/vm.h"

int control_init(struct control *c, const struct vmm_config *cfg)
{
	memset(c, 0, sizeof(*c));
	c->cfg = cfg;
	c->incoming_lfd = -1;
	c->restore_fd = -1;
	c->incoming_efd = eventfd(0, EFD_CLOEXEC);
	if (c->incoming_efd < 0)
		return -errno;
	return -pthread_mutex_init(&c->lock, NULL);
}

void control_destroy(struct control *c)
{
	if (c->incoming_lfd >= 0)
		close(c->incoming_lfd);
	if (c->restore_fd >= 0)
		close(c->restore_fd);
	if (c->incoming_efd >= 0)
		close(c->incoming_efd);
	pthread_mutex_destroy(&c->lock);
}

int control_tcp_listen(const char *spec, char *why, size_t whylen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL;
	char host[256], *port;
	int fd, one = 1, ret;

	if (strncmp(spec, "tcp:", 4) || strlen(spec) >= sizeof(host) + 4 ||
	    !strchr(spec + 4, ':')) {
		snprintf(why, whylen, "%s: give tcp:HOST:PORT (e.g. tcp:0.0.0.0:4444)", spec);
		return -EINVAL;
	}
	snprintf(host, sizeof(host), "%s", spec + 4);
	port = strrchr(host, ':');
	*port++ = '\0';
	ret = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (ret) {
		snprintf(why, whylen, "%s: %s — give tcp:HOST:PORT with an address of this host",
			 spec, gai_strerror(ret));
		return -EINVAL;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1) < 0) {
		ret = -errno;
		snprintf(why, whylen, "%s: cannot listen there: %s — pick a free port on an address "
			 "of this host", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = ret;
	}
	freeaddrinfo(res);
	return fd;
}

void control_tcp_nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_warn("migration socket: cannot turn off Nagle's algorithm (%s); the last "
			 "copy may wait for the peer's delayed ACKs", strerror(errno));
}

int control_wait_incoming(struct control *c, int sig_fd, const char **from, bool *is_file)
{
	struct pollfd fds[2] = {
		{ .fd = c->incoming_efd, .events = POLLIN },
		{ .fd = sig_fd, .events = POLLIN },
	};
	int fd;

	pthread_mutex_lock(&c->lock);
	c->incoming_wait = true;
	pthread_mutex_unlock(&c->lock);
	log_info("waiting for PUT /api/v1/vm.receive-migration to say where the migration comes, "
		 "or PUT /api/v1/vm.restore to name a snapshot");
	for (;;) {
		if (poll(fds, 2, -1) < 0 && errno != EINTR)
			return -1;
		if (fds[1].revents)
			return -1;
		pthread_mutex_lock(&c->lock);
		*is_file = c->restore_fd >= 0;
		fd = *is_file ? c->restore_fd : c->incoming_lfd;
		c->restore_fd = c->incoming_lfd = -1;
		if (fd >= 0)
			c->incoming_wait = false;
		pthread_mutex_unlock(&c->lock);
		if (fd >= 0) {
			*from = c->incoming_from;
			return fd;
		}
	}
}

static int control_receive(void *opaque, const char *from, char *why, size_t whylen)
{
	struct control *c = opaque;
	uint64_t one = 1;
	int fd, ret = 0;

	pthread_mutex_lock(&c->lock);
	if (!c->incoming_wait || c->incoming_lfd >= 0 || c->restore_fd >= 0) {
		snprintf(why, whylen, "%s", c->incoming_lfd >= 0 ? "a receive is already set up — "
			 "start the migration at the source" : c->restore_fd >= 0 ? "a restore is "
			 "already under way" : "this vmm does not wait for a migration: start it "
			 "with `vmm run --incoming defer ...`");
		ret = -EALREADY;
		goto out;
	}
	fd = control_tcp_listen(from, why, whylen);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	c->incoming_lfd = fd;
	snprintf(c->incoming_from, sizeof(c->incoming_from), "%s", from);
	if (write(c->incoming_efd, &one, sizeof(one)) != sizeof(one))
		log_warn("cannot wake the main thread: %s", strerror(errno));
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static int control_restore(void *opaque, const char *path, char *why, size_t whylen)
{
	struct control *c = opaque;
	char **argv = NULL;
	uint64_t one = 1;
	int fd, argc = 0, ret = 0;

	pthread_mutex_lock(&c->lock);
	if (!c->incoming_wait || c->incoming_lfd >= 0 || c->restore_fd >= 0) {
		snprintf(why, whylen, "%s", c->restore_fd >= 0 ? "a restore is already under way" :
			 c->incoming_lfd >= 0 ? "this vmm already listens for a migration" :
			 "this vmm does not wait for a guest: start it with `vmm run --incoming "
			 "defer ...` (or give `vmm run --restore FILE`)");
		ret = -EALREADY;
		goto out;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen, "%s: %s — give the path `vmm snapshot --to` wrote", path,
			 strerror(errno));
		ret = -EINVAL;
		goto out;
	}
	/* A snapshot's header and CONFIG read and checked now: a wrong file is a 400. */
	ret = migration_read_config(fd, &argc, &argv);
	migration_config_free(argv);
	if (ret || lseek(fd, 0, SEEK_SET) != 0) {
		snprintf(why, whylen, "%s is not a snapshot this vmm can read (its log says why)",
			 path);
		close(fd);
		ret = -EINVAL;
		goto out;
	}
	c->restore_fd = fd;
	snprintf(c->incoming_from, sizeof(c->incoming_from), "%s", path);
	if (write(c->incoming_efd, &one, sizeof(one)) != sizeof(one))
		log_warn("cannot wake the main thread: %s", strerror(errno));
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

void control_attach(struct control *c, struct vm *vm, unsigned int boot)
{
	pthread_mutex_lock(&c->lock);
	c->vm = vm;
	c->boot = boot;
	clock_gettime(CLOCK_MONOTONIC, &c->boot_start);
	if (c->shutdown)
		vm_request_stop(vm, VM_SHUTDOWN);
	pthread_mutex_unlock(&c->lock);
}

void control_detach(struct control *c)
{
	bool join;

	pthread_mutex_lock(&c->lock);
	c->vm = NULL;
	join = c->mig_thread;
	if (join)
		atomic_store(&c->mig.cancel, true);
	pthread_mutex_unlock(&c->lock);
	/* The migration's thread uses the VM without the lock: it must be gone before it is. */
	if (join) {
		pthread_join(c->mig_tid, NULL);
		pthread_mutex_lock(&c->lock);
		c->mig_thread = false;
		pthread_mutex_unlock(&c->lock);
	}
}

void control_wait_reported(struct control *c, unsigned int timeout_ms)
{
	for (unsigned int waited = 0; waited < timeout_ms; waited += 20) {
		bool done;

		pthread_mutex_lock(&c->lock);
		done = c->mig_reported || !c->mig_ever;
		pthread_mutex_unlock(&c->lock);
		if (done)
			return;
		usleep(20 * 1000);
	}
}

bool control_shutdown_requested(struct control *c)
{
	bool ret;

	pthread_mutex_lock(&c->lock);
	ret = c->shutdown;
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* ---- vm.info ---- */

static const char *memory_kind(const struct vmm_config *cfg)
{
	if (cfg->hugepages)
		return "hugepages";
	return cfg->mem_shared ? "shared" : "anonymous";
}

static const char *net_vhost_name(enum net_vhost v)
{
	switch (v) {
	case NET_VHOST_ON:	return "on";
	case NET_VHOST_OFF:	return "off";
	default:		return "auto";
	}
}

/* Device n of a kind: {"id": kind + n, "kind", "options"}; options stolen. NULL: no memory. */
static json_t *device_json(const char *kind, unsigned int n, json_t *options)
{
	char id[32];

	snprintf(id, sizeof(id), "%s%u", kind, n);
	return options ? json_pack("{s:s,s:s,s:o}", "id", id, "kind", kind, "options", options) : NULL;
}

static json_t *disk_json(const struct blk_options *d)
{
	if (d->vhost_user)
		return json_pack("{s:s,s:i}", "vhost_user", d->vhost_user, "reconnect",
				 (int)d->reconnect);
	return json_pack("{s:s,s:b,s:b,s:s?}", "path", d->path, "readonly", d->readonly,
			 "direct", d->direct, "serial", d->id);
}

static json_t *net_json(const struct net_options *n)
{
	char mac[18];

	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->mac[0], n->mac[1],
		 n->mac[2], n->mac[3], n->mac[4], n->mac[5]);
	if (n->vhost_user)
		return json_pack("{s:s,s:s*}", "vhost_user", n->vhost_user, "mac",
				 n->mac_set ? mac : NULL);
	return json_pack("{s:s,s:s*,s:s}", "tap", n->tap, "mac", n->mac_set ? mac : NULL, "vhost",
			 net_vhost_name(n->vhost));
}

static json_t *console_json(const struct console_options *c)
{
	if (c->backend == CONSOLE_BACKEND_FILE)
		return json_pack("{s:s,s:s}", "backend", "file", "path", c->path);
	return json_pack("{s:s}", "backend", "pty");
}

/* The devices in the order vm.c creates them and with the names it gives (virtio-blk0 ...). */
static json_t *devices_json(const struct vmm_config *cfg)
{
	json_t *list = json_array();
	bool ok = list != NULL;

	for (unsigned int i = 0; ok && i < cfg->ndisks; i++)
		ok = !json_array_append_new(list, device_json("virtio-blk", i,
							       disk_json(&cfg->disks[i])));
	for (unsigned int i = 0; ok && i < cfg->nnets; i++)
		ok = !json_array_append_new(list, device_json("virtio-net", i,
							       net_json(&cfg->nets[i])));
	if (ok && cfg->rng)
		ok = !json_array_append_new(list, device_json("virtio-rng", 0,
							       json_object()));
	if (ok && cfg->console_set)
		ok = !json_array_append_new(list, device_json("virtio-console", 0,
							       console_json(&cfg->console)));
	if (ok && cfg->vsock_set)
		ok = !json_array_append_new(list, device_json("virtio-vsock", 0,
							       json_pack("{s:I}", "cid",
									 (json_int_t)cfg->vsock.cid)));
	for (unsigned int i = 0; ok && i < cfg->nfs; i++)
		ok = !json_array_append_new(list, device_json("virtio-fs", i,
							       json_pack("{s:s,s:s,s:i}", "vhost_user",
									 cfg->fs[i].vhost_user, "tag",
									 cfg->fs[i].tag, "queues",
									 cfg->fs[i].queues ? (int)cfg->fs[i].queues : 1)));
	if (!ok) {
		json_decref(list);
		return NULL;
	}
	return list;
}

json_t *control_config_json(const struct vmm_config *cfg)
{
	json_t *devices = devices_json(cfg);

	if (!devices)
		return NULL;
	return json_pack("{s:i,s:{s:I,s:s},s:s,s:s*,s:s,s:o}",
			 "cpus", (int)cfg->ncpus,
			 "memory", "size", (json_int_t)cfg->memory, "kind", memory_kind(cfg),
			 "kernel", cfg->kernel, "initrd", cfg->initrd, "cmdline", cfg->cmdline,
			 "devices", devices);
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static int control_info(void *opaque, json_t *out)
{
	struct control *c = opaque;
	json_t *config = control_config_json(c->cfg);
	const char *state;
	int ret = 0;

	if (!config)
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	if (!c->vm)
		state = "starting";
	else if (atomic_load(&c->vm->stop_reason))
		state = "shutting-down";
	else
		state = vm_is_paused(c->vm) ? "paused" : "running";
	if (json_object_set_new(out, "state", json_string(state)) ||
	    json_object_set_new(out, "boot", json_integer(c->boot)) ||
	    json_object_set_new(out, "uptime_s", c->vm ? json_real(seconds_since(&c->boot_start))
							: json_null()) ||
	    json_object_set_new(out, "config", config))
		ret = -ENOMEM;
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* Runs op on the attached VM under the lock; -EAGAIN when there is none. */
static int control_on_vm(struct control *c, int (*op)(struct vm *vm))
{
	int ret;

	pthread_mutex_lock(&c->lock);
	ret = c->vm ? op(c->vm) : -EAGAIN;
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* Whether a migration runs (then pause/resume/snapshot wait for it to end). */
static bool migrating(struct control *c)
{
	return c->mig_running;
}

static int vm_pause_op(struct vm *vm)
{
	return vm_pause(vm, CONTROL_PAUSE_TIMEOUT_MS);
}

static int control_pause(void *opaque)
{
	struct control *c = opaque;

	if (migrating(c))
		return -EBUSY;
	return control_on_vm(opaque, vm_pause_op);
}

static int control_resume(void *opaque)
{
	struct control *c = opaque;

	if (migrating(c))
		return -EBUSY;
	return control_on_vm(opaque, vm_resume);
}

/* ---- Migration ---- */

/* Connects to tcp:HOST:PORT within 10 s; the socket or -errno with why. */
static int connect_tcp(const char *to, char *why, size_t whylen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	char host[256], *port;
	int fd, ret, err = 0;
	socklen_t len = sizeof(err);
	struct pollfd pfd;

	if (strncmp(to, "tcp:", 4) || strlen(to) >= sizeof(host) + 4 ||
	    !strchr(to + 4, ':')) {
		snprintf(why, whylen, "'to' must be tcp:HOST:PORT (the destination's --incoming)");
		return -EINVAL;
	}
	snprintf(host, sizeof(host), "%s", to + 4);
	port = strrchr(host, ':');
	*port++ = '\0';
	ret = getaddrinfo(host, port, &hints, &res);
	if (ret) {
		snprintf(why, whylen, "cannot resolve %s: %s", to, gai_strerror(ret));
		return -EHOSTUNREACH;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		goto fail;
	}
	if (connect(fd, res->ai_addr, res->ai_addrlen) < 0 && errno != EINPROGRESS) {
		ret = -errno;
		goto fail;
	}
	pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
	ret = poll(&pfd, 1, 10000);
	if (ret <= 0) {
		ret = ret ? -errno : -ETIMEDOUT;
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
		ret = err ? -err : -errno;
		goto fail;
	}
	control_tcp_nodelay(fd);
	freeaddrinfo(res);
	return fd;
fail:
	snprintf(why, whylen, "cannot connect to %s: %s — is `vmm run --incoming %s` running "
		 "there?", to, strerror(-ret), to);
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return ret;
}

static void *migrate_thread(void *opaque)
{
	struct control *c = opaque;
	int ret;

	pthread_setname_np(pthread_self(), "vmm-migrate");
	/* c->vm stays valid: control_detach() joins this thread before the VM goes. */
	ret = migration_send(c->vm, c->mig_fd, &c->mig_params, &c->mig);
	close(c->mig_fd);
	c->mig_fd = -1;
	pthread_mutex_lock(&c->lock);
	c->mig_running = false;
	if (!ret && c->vm)
		vm_request_stop(c->vm, VM_MIGRATED);
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static int control_migrate(void *opaque, const struct api_migrate_args *a, char *why,
			   size_t whylen)
{
	const char *to = a->to;
	struct control *c = opaque;
	int fd, ret;

	pthread_mutex_lock(&c->lock);
	if (!c->vm) {
		ret = -EAGAIN;
		goto out;
	}
	if (c->mig_running) {
		snprintf(why, whylen, "a migration to %s is already running — GET "
			 "/api/v1/vm.migration shows it", c->mig_to);
		ret = -EBUSY;
		goto out;
	}
	if (vm_is_paused(c->vm)) {
		snprintf(why, whylen, "the VM is paused — resume it first (a snapshot moves a "
			 "paused VM)");
		ret = -EALREADY;
		goto out;
	}
	ret = migration_check(c->vm, why, whylen);
	if (ret)
		goto out;
	/* A previous migration's thread has ended (mig_running false): reap it. */
	if (c->mig_thread) {
		pthread_join(c->mig_tid, NULL);
		c->mig_thread = false;
	}
	fd = connect_tcp(to, why, whylen);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	memset(&c->mig, 0, sizeof(c->mig));
	c->mig_reported = false;
	mig_params_default(&c->mig_params);
	c->mig_params.max_downtime_ms = a->max_downtime_ms;
	c->mig_params.bandwidth = a->bandwidth;
	c->mig_params.verify = a->verify;
	c->mig_fd = fd;
	snprintf(c->mig_to, sizeof(c->mig_to), "%s", to);
	c->mig_running = c->mig_thread = c->mig_ever = true;
	ret = -pthread_create(&c->mig_tid, NULL, migrate_thread, c);
	if (ret) {
		c->mig_running = c->mig_thread = false;
		close(fd);
		snprintf(why, whylen, "cannot start the migration's thread: %s", strerror(-ret));
	} else {
		log_info("migration to %s started", to);
	}
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static const char *phase_name(int phase)
{
	switch (phase) {
	case MIG_SETUP:		return "setup";
	case MIG_PRECOPY:	return "precopy";
	case MIG_STOPCOPY:	return "stopcopy";
	case MIG_DONE:		return "completed";
	case MIG_FAILED:	return "failed";
	default:		return "none";
	}
}

static int control_migration(void *opaque, json_t *out)
{
	struct control *c = opaque;
	struct mig_progress *p = &c->mig;
	int phase, ret = 0;

	pthread_mutex_lock(&c->lock);
	if (!c->mig_ever) {
		pthread_mutex_unlock(&c->lock);
		return -ENOENT;
	}
	phase = atomic_load(&p->phase);
	if (json_object_set_new(out, "state", json_string(phase_name(phase))) ||
	    json_object_set_new(out, "to", json_string(c->mig_to)) ||
	    json_object_set_new(out, "iteration", json_integer(atomic_load(&p->iteration))) ||
	    json_object_set_new(out, "bytes", json_integer((json_int_t)atomic_load(&p->bytes))) ||
	    json_object_set_new(out, "pages", json_integer((json_int_t)atomic_load(&p->pages))) ||
	    json_object_set_new(out, "dirty_pages",
				json_integer((json_int_t)atomic_load(&p->dirty_pages))) ||
	    json_object_set_new(out, "dirty_rate_pps",
				json_integer((json_int_t)atomic_load(&p->dirty_rate))) ||
	    json_object_set_new(out, "bandwidth_bps",
				json_integer((json_int_t)atomic_load(&p->bandwidth))) ||
	    json_object_set_new(out, "expected_downtime_ms",
				json_integer((json_int_t)atomic_load(&p->expected_downtime_ms))) ||
	    json_object_set_new(out, "not_converging",
				json_boolean(atomic_load(&p->not_converging))) ||
	    json_object_set_new(out, "total_ms",
				json_integer((json_int_t)atomic_load(&p->total_ms))) ||
	    json_object_set_new(out, "downtime_ms",
				json_integer((json_int_t)atomic_load(&p->downtime_ms))) ||
	    json_object_set_new(out, "downtime_parts_ms",
				json_pack("{s:I,s:I,s:I,s:I}",
					  "stop", (json_int_t)atomic_load(&p->stop_ms),
					  "last_ram", (json_int_t)atomic_load(&p->last_ram_ms),
					  "state", (json_int_t)atomic_load(&p->state_ms),
					  "destination",
					  (json_int_t)atomic_load(&p->destination_ms))) ||
	    (phase == MIG_FAILED &&
	     json_object_set_new(out, "error", json_string(p->error[0] ? p->error : "failed"))))
		ret = -ENOMEM;
	if (!ret && (phase == MIG_DONE || phase == MIG_FAILED))
		c->mig_reported = true;
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static int control_migrate_flag(struct control *c, _Atomic bool *flag)
{
	int ret = 0;

	pthread_mutex_lock(&c->lock);
	if (c->mig_running)
		atomic_store(flag, true);
	else
		ret = -ENOENT;
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static int control_migrate_finish(void *opaque)
{
	struct control *c = opaque;

	return control_migrate_flag(c, &c->mig.finish);
}

static int control_migrate_cancel(void *opaque)
{
	struct control *c = opaque;

	return control_migrate_flag(c, &c->mig.cancel);
}

static int control_snapshot(void *opaque, const char *path, json_t *out, char *why,
			    size_t whylen)
{
	struct control *c = opaque;
	struct mig_progress prog;
	int fd, ret;

	pthread_mutex_lock(&c->lock);
	if (!c->vm) {
		ret = -EAGAIN;
		goto out;
	}
	if (c->mig_running) {
		snprintf(why, whylen, "a migration is running — wait for it to end");
		ret = -EBUSY;
		goto out;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		snprintf(why, whylen, "cannot create %s: %s%s", path, strerror(errno),
			 errno == EEXIST ? " — give a new path (a snapshot never overwrites)" : "");
		goto out;
	}
	memset(&prog, 0, sizeof(prog));
	ret = migration_snapshot(c->vm, fd, false, &prog);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (ret) {
		snprintf(why, whylen, "%s", prog.error[0] ? prog.error : strerror(-ret));
		unlink(path);
	} else if (json_object_set_new(out, "path", json_string(path)) ||
		   json_object_set_new(out, "bytes", json_integer((json_int_t)prog.bytes)) ||
		   json_object_set_new(out, "ms", json_integer((json_int_t)prog.total_ms))) {
		ret = -ENOMEM;
	}
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static int control_shutdown(void *opaque)
{
	struct control *c = opaque;

	pthread_mutex_lock(&c->lock);
	c->shutdown = true;
	if (c->vm)
		vm_request_stop(c->vm, VM_SHUTDOWN);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

const struct api_ops control_api_ops = {
	.info = control_info,
	.pause = control_pause,
	.resume = control_resume,
	.shutdown = control_shutdown,
	.migrate = control_migrate,
	.migration = control_migration,
	.migrate_finish = control_migrate_finish,
	.migrate_cancel = control_migrate_cancel,
	.snapshot = control_snapshot,
	.receive = control_receive,
	.restore = control_restore,
};
