// SPDX-License-Identifier: GPL-2.0-only
/*
 * mig-load: the workload of the "migrate" benchmark guest (scripts/bench migrate), built
 * statically by scripts/bench and run by the guest's /init. The parent process is the
 * heartbeat the host times the guest's downtime by; each load runs in a child of its own:
 *
 *   mig-load [-b BEAT_MS] [-r DIRTY_MIB_PER_S -w WORKING_SET_MIB] [-d DISK] [-f FILE]
 *     -b  a heartbeat line every BEAT_MS ms (default 10): "H<seq>;" — the host timestamps
 *         each line's arrival; the largest gap across the switchover is the downtime the
 *         guest saw (its clock is paused with it, so the sequence has no hole)
 *     -r  dirty DIRTY_MIB_PER_S MiB of guest memory per second (one 8-byte store per 4 KiB
 *         page, the pages in turn over the working set; every page of it was filled with
 *         non-zero data first, so none is a zero page); "D<pages>;" every second (pages
 *         dirtied so far, for the rate actually reached)
 *     -w  the working set, MiB (default 128)
 *     -d  write a 4 KiB block with O_DIRECT to DISK every 10 ms, in turn over the disk
 *         (a vhost-user-blk disk with requests in flight when the guest pauses);
 *         "W<blocks>;" every second
 *     -f  hold FILE open (O_APPEND) and append a numbered line every 100 ms (a virtio-fs
 *         share whose back-end keeps the open file's state); "F<lines>;" every second
 *
 * Lines: "MIGBENCH-READY ..." once every load has started (and the working set is filled),
 * "MIGBENCH-ERROR <what>" when a load fails (a write error, a child gone). Each line is one
 * write() to the console, so lines of the processes never interleave.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define BLOCK 4096

static void say(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	while (write(1, line, (size_t)n) < 0 && errno == EINTR)
		;
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&t, &t) && errno == EINTR)
		;
}

/* The dirtier: rate pages per second over wss pages, at 10 ms ticks (no catch-up bursts
 * beyond 100 ms worth after the guest was held up). */
static int dirtier(uint64_t rate, uint64_t wss)
{
	uint64_t *mem, done = 0, next = 0, stamp = 1;
	double start, last_report;

	mem = mmap(NULL, wss * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		   -1, 0);
	if (mem == MAP_FAILED) {
		say("MIGBENCH-ERROR dirtier: cannot map %llu MiB: %s",
		    (unsigned long long)(wss * PAGE >> 20), strerror(errno));
		return 1;
	}
	for (uint64_t p = 0; p < wss; p++)
		for (size_t i = 0; i < PAGE / 8; i++)
			mem[p * (PAGE / 8) + i] = (p << 12 | i) * 0x9e3779b97f4a7c15ULL | 1;
	say("MIGBENCH-DIRTY-READY %llu pages", (unsigned long long)wss);
	start = last_report = now_s();
	for (;;) {
		double t = now_s();
		uint64_t due = (uint64_t)((t - start) * (double)rate);

		if (due > done + rate / 10)
			done = due - rate / 10;	/* held up (paused, starved): no burst */
		while (done < due) {
			mem[next * (PAGE / 8) + (stamp % (PAGE / 8))] = stamp;
			stamp++;
			next = next + 1 == wss ? 0 : next + 1;
			done++;
		}
		if (t - last_report >= 1.0) {
			say("D%llu;", (unsigned long long)done);
			last_report = t;
		}
		sleep_ms(10);
	}
}

/* 4 KiB O_DIRECT writes every 10 ms, in turn over the disk. */
static int disk_writer(const char *path)
{
	uint8_t *buf;
	uint64_t n = 0, blocks;
	off_t size;
	double last_report;
	int fd;

	fd = open(path, O_RDWR | O_DIRECT);
	if (fd < 0) {
		say("MIGBENCH-ERROR disk: cannot open %s: %s", path, strerror(errno));
		return 1;
	}
	size = lseek(fd, 0, SEEK_END);
	blocks = size > 0 ? (uint64_t)size / BLOCK : 0;
	if (!blocks || posix_memalign((void **)&buf, BLOCK, BLOCK)) {
		say("MIGBENCH-ERROR disk: %s is empty or no memory", path);
		return 1;
	}
	say("MIGBENCH-DISK-READY %llu blocks", (unsigned long long)blocks);
	last_report = now_s();
	for (;;) {
		memset(buf, 0, BLOCK);
		snprintf((char *)buf, BLOCK, "MIGBENCH block %llu", (unsigned long long)n);
		if (pwrite(fd, buf, BLOCK, (off_t)((n % blocks) * BLOCK)) != BLOCK) {
			say("MIGBENCH-ERROR disk: write %llu failed: %s", (unsigned long long)n,
			    strerror(errno));
			return 1;
		}
		n++;
		if (now_s() - last_report >= 1.0) {
			say("W%llu;", (unsigned long long)n);
			last_report = now_s();
		}
		sleep_ms(10);
	}
}

/* A file held open, a line appended every 100 ms. */
static int file_writer(const char *path)
{
	uint64_t n = 0;
	double last_report;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (fd < 0) {
		say("MIGBENCH-ERROR file: cannot open %s: %s", path, strerror(errno));
		return 1;
	}
	say("MIGBENCH-FILE-READY %s", path);
	last_report = now_s();
	for (;;) {
		char line[64];
		int len = snprintf(line, sizeof(line), "line %llu\n", (unsigned long long)n);

		if (write(fd, line, (size_t)len) != len) {
			say("MIGBENCH-ERROR file: append of line %llu failed: %s",
			    (unsigned long long)n, strerror(errno));
			return 1;
		}
		n++;
		if (now_s() - last_report >= 1.0) {
			say("F%llu;", (unsigned long long)n);
			last_report = now_s();
		}
		sleep_ms(100);
	}
}

static pid_t spawn(int (*fn)(void))
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(fn());
	if (pid < 0)
		say("MIGBENCH-ERROR fork failed: %s", strerror(errno));
	return pid;
}

static uint64_t opt_rate, opt_wss = 128;
static const char *opt_disk, *opt_file;
static int run_dirtier(void) { return dirtier(opt_rate * 256, opt_wss * 256); }
static int run_disk(void) { return disk_writer(opt_disk); }
static int run_file(void) { return file_writer(opt_file); }

int main(int argc, char **argv)
{
	long beat_ms = 10;
	unsigned long long seq = 0;
	int c, children = 0;

	while ((c = getopt(argc, argv, "b:r:w:d:f:")) != -1) {
		switch (c) {
		case 'b': beat_ms = strtol(optarg, NULL, 10); break;
		case 'r': opt_rate = strtoull(optarg, NULL, 10); break;
		case 'w': opt_wss = strtoull(optarg, NULL, 10); break;
		case 'd': opt_disk = optarg; break;
		case 'f': opt_file = optarg; break;
		default:
			say("MIGBENCH-ERROR usage: mig-load [-b MS] [-r MIB_S -w MIB] [-d DISK] [-f FILE]");
			return 2;
		}
	}
	if (beat_ms < 1 || beat_ms > 1000 || !opt_wss || opt_wss > 1 << 20) {
		say("MIGBENCH-ERROR mig-load: -b takes 1-1000 ms, -w 1 MiB or more");
		return 2;
	}
	if (opt_rate && spawn(run_dirtier) > 0)
		children++;
	if (opt_disk && spawn(run_disk) > 0)
		children++;
	if (opt_file && spawn(run_file) > 0)
		children++;
	say("MIGBENCH-READY beat=%ld dirty=%llu wss=%llu disk=%s file=%s children=%d", beat_ms,
	    (unsigned long long)opt_rate, (unsigned long long)opt_wss, opt_disk ? opt_disk : "-",
	    opt_file ? opt_file : "-", children);
	for (;;) {
		int status;
		pid_t gone = waitpid(-1, &status, WNOHANG);

		if (gone > 0)
			say("MIGBENCH-ERROR a load (pid %d) ended with status %d", (int)gone,
			    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		say("H%llu;", ++seq);
		sleep_ms(beat_ms);
	}
}
