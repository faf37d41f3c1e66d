// SPDX-License-Identifier: GPL-2.0-only
/* vmm: command-line entry point. Exit statuses are listed in `vmm --help`. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm/api.h"
#include "vmm/api_client.h"
#include "vmm/arch.h"
#include "vmm/cli.h"
#include "vmm/control.h"
#include "vmm/exit_status.h"
#include "vmm/kvm_host.h"
#include "vmm/migration.h"
#include "vmm/base/log.h"
#include "vmm/term.h"
#include "vmm/base/util.h"
#include "vmm/vm.h"

#ifndef VMM_VERSION
#define VMM_VERSION "unknown"
#endif

/* Signals that end the VMM cleanly, handled through a signalfd in the main thread. */
static const int stop_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

/*
 * SIGUSR2 logs where the virtio queues stand while the guest runs (SIGUSR1
 * kicks vCPUs). Its own signalfd, read only by wait_for_stop: before the guest
 * runs (waiting for a migration...) it stays pending instead of stopping the VMM.
 */
static int dump_sig_fd = -1;

static int block_stop_signals(void)
{
	sigset_t set, dump;

	sigemptyset(&set);
	for (size_t i = 0; i < ARRAY_SIZE(stop_signals); i++)
		sigaddset(&set, stop_signals[i]);
	sigemptyset(&dump);
	sigaddset(&dump, SIGUSR2);
	/* Blocked before any thread starts, so every thread inherits the mask. */
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) || pthread_sigmask(SIG_BLOCK, &dump, NULL))
		return -1;
	dump_sig_fd = signalfd(-1, &dump, SFD_CLOEXEC | SFD_NONBLOCK);
	return signalfd(-1, &set, SFD_CLOEXEC);
}

/* Waits until the VM stops or a stop signal arrives; returns the signal number or 0. */
static int wait_for_stop(struct vm *vm, int sig_fd)
{
	struct pollfd fds[3] = {
		{ .fd = vm->stop_fd, .events = POLLIN },
		{ .fd = sig_fd, .events = POLLIN },
		{ .fd = dump_sig_fd, .events = POLLIN },	/* -1: ignored by poll */
	};

	for (;;) {
		if (poll(fds, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll failed: %s", strerror(errno));
			vm_request_stop(vm, VM_FAILED);
			return 0;
		}
		if (fds[0].revents)
			return 0;
		if (fds[1].revents) {
			struct signalfd_siginfo si;

			if (read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
				vm_request_stop(vm, VM_QUIT);
				return (int)si.ssi_signo;
			}
		}
		if (fds[2].revents) {
			struct signalfd_siginfo si;

			while (read(dump_sig_fd, &si, sizeof(si)) == sizeof(si))
				vm_log_devices(vm);
		}
	}
}

/*
 * Says (with -v, like every log_info) when guest RAM will get 4 KiB pages only
 * because the host's THP setting for its backing (anonymous memory, or shmem
 * for shared=on) is off, and otherwise what backs it.
 */
static void log_thp(const struct vmm_config *cfg)
{
	enum guest_mem_backing backing = guest_mem_backing_for(cfg->mem_shared, cfg->hugepages);
	const char *knob = guest_mem_thp_sysfs(backing);
	enum guest_mem_thp thp;

	if (!knob) {
		log_info("guest RAM: reserved 2 MiB huge pages (hugetlbfs memfd, shareable)");
		return;
	}
	thp = guest_mem_thp_status(knob);
	if (thp == GUEST_MEM_THP_OFF && backing == GUEST_MEM_ANON)
		log_info("guest RAM gets 4 KiB pages only: this host's transparent huge pages are "
			 "off — for faster guests, echo madvise > %s, or use --memory "
			 "SIZE,hugepages=on", knob);
	else if (thp == GUEST_MEM_THP_OFF)
		log_info("shared guest RAM (--memory shared=on) gets 4 KiB pages only: this host's "
			 "shmem transparent huge pages are off — for faster guests, echo advise > %s, "
			 "or use --memory SIZE,shared=on,hugepages=on", knob);
	else
		log_info("guest RAM: %s, advised for transparent huge pages (%s: %s)",
			 backing == GUEST_MEM_ANON ? "anonymous private memory" : "shared memfd",
			 knob, thp == GUEST_MEM_THP_ON ? "on" : "unknown");
}

/* Waits for the source's connection; the socket, or -1 (a stop signal, or an error). */
static int incoming_accept(int lfd, int sig_fd, const char *spec)
{
	struct pollfd fds[2] = {
		{ .fd = lfd, .events = POLLIN },
		{ .fd = sig_fd, .events = POLLIN },
	};
	int fd;

	log_info("waiting for a migration on %s", spec);
	for (;;) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (fds[1].revents) {
			log_error("--incoming: stopped by a signal before any migration arrived");
			return -1;
		}
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			control_tcp_nodelay(fd);
			return fd;
		}
		if (errno != EINTR && errno != ECONNABORTED) {
			log_error("--incoming: accept failed: %s", strerror(errno));
			return -1;
		}
	}
}

/*
 * The first boot's VM from a migration (--incoming) or a snapshot (--restore)
 * instead of the kernel: created without a guest, loaded, started. 0, or an exit
 * status after reporting (the VM was never started then).
 */
static int start_from_stream(struct vm *vm, const struct vmm_config *cfg, int sig_fd,
			     struct control *ctl)
{
	bool defer = cfg->incoming && !strcmp(cfg->incoming, "defer"), live = cfg->incoming;
	const char *from = cfg->incoming;
	int lfd = -1, fd = -1, ret;
	char why[256];

	if (cfg->incoming && !defer) {
		lfd = control_tcp_listen(cfg->incoming, why, sizeof(why));
		if (lfd < 0) {
			log_error("--incoming %s", why);
			return VMM_EXIT_USAGE;
		}
	}
	ret = vm_create(vm, cfg, NULL);
	if (ret) {
		if (lfd >= 0)
			close(lfd);
		return ret;
	}
	if (defer) {
		bool is_file = false;

		lfd = control_wait_incoming(ctl, sig_fd, &from, &is_file);
		if (lfd < 0) {
			log_error("--incoming defer: stopped by a signal before any migration or "
				  "restore was set up");
			return VMM_EXIT_MIGRATION;
		}
		if (is_file) {
			/* PUT vm.restore: a snapshot file, as --restore FILE with these options. */
			fd = lfd;
			lfd = -1;
			live = false;
			log_info("restoring the snapshot %s (PUT vm.restore)", from);
		}
	}
	if (lfd >= 0) {
		fd = incoming_accept(lfd, sig_fd, from);
		close(lfd);
	} else if (!defer) {
		fd = open(cfg->restore, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			log_error("--restore %s: %s", cfg->restore, strerror(errno));
	}
	if (fd < 0)
		return VMM_EXIT_MIGRATION;
	ret = migration_load(vm, fd, live, false);
	if (!ret) {
		uint64_t t0 = monotonic_ms();

		ret = vm_start_loaded(vm);
		if (!ret)
			log_info("the loaded VM started in %llu ms (devices' data paths, vCPUs)",
				 (unsigned long long)(monotonic_ms() - t0));
	} else {
		ret = VMM_EXIT_MIGRATION;
	}
	if (!ret && live && migration_ack(fd)) {
		log_error("--incoming: the source is gone before it heard that the guest runs here; "
			  "it runs the guest on — stopping this copy");
		ret = VMM_EXIT_MIGRATION;
	}
	close(fd);
	if (!ret)
		log_info("the guest runs from the %s", live ? "migration" : "snapshot");
	return ret;
}

/*
 * Runs the guest, rebooting it unless --no-reboot; returns the exit status.
 * Each boot's VM is handed to the control API (ctl) while it runs. The first
 * boot comes from a migration or a snapshot with --incoming/--restore (img may
 * then be NULL: a reboot then ends vmm).
 */
static int run_guest(const struct vmm_config *cfg, const struct arch_boot *img, int sig_fd,
		     struct control *ctl)
{
	char backend[64];

	/* Once per process, not per boot: the host settings do not change between reboots. */
	if (kvm_host_backend(KVM_HOST_MODULE_DIR, backend, sizeof(backend)) == KVM_HOST_OTHER)
		log_warn("/dev/kvm is served by %s, not by kvm_intel or kvm_amd: a stock Linux "
			 "guest may hang early in its boot — run vmm on a host with hardware "
			 "virtualization, or in a VM with nested virtualization (scripts/with-kvm)",
			 backend);
	log_thp(cfg);
	for (unsigned int boot = 1;; boot++) {
		struct vm vm;
		int ret, sig;
		enum vm_stop_reason reason;

		if (control_shutdown_requested(ctl)) {
			log_info("the control API asked for a shutdown");
			return VMM_EXIT_OK;
		}
		log_info("boot %u: creating the VM", boot);
		if (boot == 1 && (cfg->incoming || cfg->restore)) {
			ret = start_from_stream(&vm, cfg, sig_fd, ctl);
		} else if (!img) {
			log_info("the guest rebooted, and no --kernel was given to boot it again");
			return VMM_EXIT_OK;
		} else {
			ret = vm_create(&vm, cfg, img);
			if (!ret)
				ret = vm_start(&vm);
		}
		if (ret) {
			vm_destroy(&vm);
			return ret;
		}
		log_info("boot %u: %u vCPUs, %llu MiB", boot, cfg->ncpus,
			 (unsigned long long)(cfg->memory >> 20));
		control_attach(ctl, &vm, boot);
		sig = wait_for_stop(&vm, sig_fd);
		control_detach(ctl);
		reason = (enum vm_stop_reason)atomic_load(&vm.stop_reason);
		log_info("boot %u: stopping the VM (reason %d)", boot, (int)reason);
		vm_destroy(&vm);
		log_info("boot %u: VM destroyed", boot);

		switch (reason) {
		case VM_POWEROFF:
			log_info("the guest powered off");
			return VMM_EXIT_OK;
		case VM_RESET:
			log_info("the guest rebooted");
			if (cfg->no_reboot)
				return VMM_EXIT_OK;
			continue;
		case VM_QUIT:
			return sig ? 128 + sig : VMM_EXIT_OK;
		case VM_SHUTDOWN:
			log_info("the control API shut the guest down");
			return VMM_EXIT_OK;
		case VM_MIGRATED:
			log_info("the guest was migrated; it runs on at the destination");
			control_wait_reported(ctl, 3000);
			return VMM_EXIT_OK;
		case VM_FAILED:
		default:
			return VMM_EXIT_RUNTIME;
		}
	}
}

/* Serves the control API (with --api-socket) while the guest runs; returns the exit status. */
static int run_with_api(const struct vmm_config *cfg, const struct arch_boot *img, int sig_fd)
{
	struct api_server *api = NULL;
	struct control ctl;
	int ret = control_init(&ctl, cfg);

	if (ret) {
		log_error("cannot set up the control API: %s", strerror(-ret));
		return VMM_EXIT_RESOURCE;
	}
	if (cfg->api_socket) {
		struct api_target t = { .ops = &control_api_ops, .opaque = &ctl,
					.version = VMM_VERSION };

		ret = api_server_start(&api, cfg->api_socket, &t);
		if (ret) {
			control_destroy(&ctl);
			return ret == -ENOTSOCK || ret == -EADDRINUSE || ret == -ENAMETOOLONG ||
			       ret == -ENOENT || ret == -EACCES || ret == -ENOTDIR ?
			       VMM_EXIT_USAGE : VMM_EXIT_RESOURCE;
		}
		log_info("control API on %s", cfg->api_socket);
	}
	term_raw_enable();
	ret = run_guest(cfg, img, sig_fd, &ctl);
	term_restore();
	api_server_stop(api);
	control_destroy(&ctl);
	return ret;
}

/*
 * `vmm run --restore PATH` without VM options: the configuration comes from the
 * snapshot (its run options, plus this command line's --api-socket, --restore and
 * -v). 0 or an exit status after reporting; *saved outlives cfg.
 */
static int restore_config(struct vmm_config *cfg, char ***saved, char *err, size_t errlen)
{
	const char *restore = cfg->restore, *api = cfg->api_socket;
	bool verbose = cfg->verbose;
	char **argv2 = NULL;
	enum cli_command cmd;
	int fd, n = 0, ret;

	fd = open(restore, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_error("--restore %s: %s — give the path `vmm snapshot --to` wrote", restore,
			  strerror(errno));
		return VMM_EXIT_USAGE;
	}
	ret = migration_read_config(fd, &n, saved);
	close(fd);
	if (ret)
		return VMM_EXIT_MIGRATION;
	argv2 = calloc((size_t)n + 8, sizeof(*argv2));
	if (!argv2)
		return VMM_EXIT_RESOURCE;
	argv2[0] = "vmm";
	argv2[1] = "run";
	for (int i = 1; i < n; i++)
		argv2[i + 1] = (*saved)[i];
	n++;
	argv2[n++] = "--restore";
	argv2[n++] = (char *)restore;
	if (api) {
		argv2[n++] = "--api-socket";
		argv2[n++] = (char *)api;
	}
	if (verbose)
		argv2[n++] = "-v";
	cli_config_free(cfg);
	ret = cli_parse(n, argv2, cfg, &cmd, err, errlen);
	if (ret)
		log_error("the snapshot's options do not parse here: %s", err);
	/* cfg points into *saved and restore/api (main's argv), not into argv2 itself. */
	free(argv2);
	return ret;
}

int main(int argc, char **argv)
{
	struct vmm_config cfg;
	struct arch_boot *img;
	enum cli_command cmd;
	char err[512], **saved_argv = NULL;
	int ret, sig_fd;

	ret = cli_parse(argc, argv, &cfg, &cmd, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "vmm: error: %s\n", err);
		return ret;
	}
	switch (cmd) {
	case CLI_HELP:
		cli_print_help(stdout);
		fputs("\n", stdout);
		cli_print_run_help(stdout);
		return VMM_EXIT_OK;
	case CLI_RUN_HELP:
		cli_print_run_help(stdout);
		return VMM_EXIT_OK;
	case CLI_VERSION:
		printf("vmm %s\n", VMM_VERSION);
		return VMM_EXIT_OK;
	case CLI_CTL_HELP:
		cli_print_ctl_help(stdout);
		return VMM_EXIT_OK;
	case CLI_PAUSE:
	case CLI_RESUME:
	case CLI_STATUS:
	case CLI_SHUTDOWN:
		signal(SIGPIPE, SIG_IGN);
		return api_client_run(argv[1], cfg.api_socket, stdout, stderr);
	case CLI_MIGRATE: {
		struct api_migrate_args a = { .to = cfg.ctl.to,
					      .max_downtime_ms = cfg.ctl.max_downtime_ms,
					      .bandwidth = cfg.ctl.bandwidth, .verify = cfg.ctl.verify };

		signal(SIGPIPE, SIG_IGN);
		return api_client_migrate(cfg.api_socket, &a, cfg.ctl.finish, cfg.ctl.cancel,
					  stdout, stderr);
	}
	case CLI_SNAPSHOT:
		signal(SIGPIPE, SIG_IGN);
		return api_client_snapshot(cfg.api_socket, cfg.ctl.to, stdout, stderr);
	case CLI_RUN:
		break;
	}
	log_set_verbose(cfg.verbose);
	signal(SIGPIPE, SIG_IGN);
	if (cfg.restore && !cfg.vm_options) {
		ret = restore_config(&cfg, &saved_argv, err, sizeof(err));
		if (ret)
			return ret;
	}

	sig_fd = block_stop_signals();
	if (sig_fd < 0) {
		log_error("cannot set up signal handling: %s", strerror(errno));
		return VMM_EXIT_RESOURCE;
	}
	/* Opened and checked once; every boot loads the guest from it. */
	img = NULL;
	ret = cfg.kernel ? arch_boot_open(&img, cfg.kernel, cfg.initrd, cfg.cmdline) : 0;
	if (ret && (cfg.incoming || cfg.restore)) {
		log_warn("the kernel %s cannot be opened here: the guest runs from the %s, but a "
			 "reboot will end vmm", cfg.kernel, cfg.incoming ? "migration" : "snapshot");
		img = NULL;
		ret = 0;
	}
	if (ret) {
		ret = exit_status_for(EXIT_STEP_BOOT_IMAGE, ret);
	} else {
		ret = run_with_api(&cfg, img, sig_fd);
	}
	arch_boot_free(img);
	cli_config_free(&cfg);
	migration_config_free(saved_argv);
	close(sig_fd);
	if (dump_sig_fd >= 0)
		close(dump_sig_fd);
	return ret;
}
