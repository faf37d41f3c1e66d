// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmm/base/guest_mem.h"
#include "vmm/control.h"
#include "vmm/vm.h"

int control_init(struct control *c, const struct vmm_config *cfg)
{
	memset(c, 0, sizeof(*c));
	c->cfg = cfg;
	return -pthread_mutex_init(&c->lock, NULL);
}

void control_destroy(struct control *c)
{
	pthread_mutex_destroy(&c->lock);
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
	pthread_mutex_lock(&c->lock);
	c->vm = NULL;
	pthread_mutex_unlock(&c->lock);
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

static int vm_pause_op(struct vm *vm)
{
	return vm_pause(vm, CONTROL_PAUSE_TIMEOUT_MS);
}

static int control_pause(void *opaque)
{
	return control_on_vm(opaque, vm_pause_op);
}

static int control_resume(void *opaque)
{
	return control_on_vm(opaque, vm_resume);
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
};
