// SPDX-License-Identifier: GPL-2.0-only
/*
 * The migration suite's guest workload (tests/integration/migrate.sh), a static
 * program run as the guest's /init worker: it keeps a counter in memory and writes
 * a numbered, checksummed record stream with O_DIRECT to a disk, one record per
 * 4 KiB block, while the VM migrates back and forth. It polls a control disk for
 * "STOP"; then it reads every record back (O_DIRECT), checks that there is no gap,
 * no duplicate and no corruption and that the counter only grew, prints the verdict
 * and exits.
 *
 * Console lines (the suite reads them):
 *   VMMTEST-BEAT <record> <counter>   every 10 records
 *   VMMTEST-RECORDS <n> <ok|bad> <detail>
 *   VMMTEST-FILE <ok|bad> <detail>    when an open file was given (-f): appended to each beat
 * Usage: mig_guest RECORD_DISK CONTROL_DISK [OPEN_FILE]
 */

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BLK 4096
#define MAX_RECORDS 200000

struct record {
	char magic[8];		/* "VMMREC01" */
	uint64_t index;
	uint64_t counter;	/* the in-memory counter when written */
	uint64_t sum;		/* FNV-1a of the payload */
	uint8_t payload[BLK - 32];
};

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

static void fill(struct record *r, uint64_t index, uint64_t counter)
{
	uint64_t x = index * 0x9e3779b97f4a7c15ULL + 1;

	memcpy(r->magic, "VMMREC01", 8);
	r->index = index;
	r->counter = counter;
	for (size_t i = 0; i < sizeof(r->payload); i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		r->payload[i] = (uint8_t)x;
	}
	r->sum = fnv(r->payload, sizeof(r->payload));
}

static void sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&t, &t) && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	static volatile uint64_t counter;
	struct record *r;
	char *ctl;
	int fd, cfd, ffd = -1;
	uint64_t n = 0, lines = 0, file_bad = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: mig_guest RECORD_DISK CONTROL_DISK [OPEN_FILE]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (posix_memalign((void **)&r, BLK, BLK) || posix_memalign((void **)&ctl, BLK, BLK))
		return 1;
	fd = open(argv[1], O_RDWR | O_DIRECT);
	cfd = open(argv[2], O_RDONLY | O_DIRECT);
	if (fd < 0 || cfd < 0) {
		printf("VMMTEST-RECORDS 0 bad cannot open the disks: %s\n", strerror(errno));
		return 1;
	}
	if (argc > 3) {
		/*
		 * A file held open across the migrations: one fixed-width line per beat, line n
		 * at offset 16 n (a restored snapshot rewrites its lines in place, as the records).
		 */
		ffd = open(argv[3], O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (ffd < 0)
			printf("VMMTEST-FILE bad cannot open %s: %s\n", argv[3], strerror(errno));
	}
	for (;;) {
		counter++;
		fill(r, n, counter);
		if (pwrite(fd, r, BLK, (off_t)(n * BLK)) != BLK) {
			printf("VMMTEST-RECORDS %llu bad write of record %llu failed: %s\n",
			       (unsigned long long)n, (unsigned long long)n, strerror(errno));
			return 1;
		}
		n++;
		if (n % 10 == 0) {
			printf("VMMTEST-BEAT %llu %llu\n", (unsigned long long)n,
			       (unsigned long long)counter);
			if (ffd >= 0) {
				char line[32];
				int len = snprintf(line, sizeof(line), "line %010llu\n",
						   (unsigned long long)lines);

				if (pwrite(ffd, line, (size_t)len, (off_t)(lines * 16)) != len)
					file_bad++;
				else
					lines++;
			}
			if (pread(cfd, ctl, BLK, 0) == BLK && !memcmp(ctl, "STOP", 4))
				break;
		}
		if (n >= MAX_RECORDS)
			break;
		sleep_ms(10);
	}
	/* Verify: every record 0..n-1 in place, checksummed, its counter growing. */
	{
		uint64_t prev = 0, bad = 0, first_bad = 0;
		char detail[160] = "";

		for (uint64_t i = 0; i < n; i++) {
			int ok = pread(fd, r, BLK, (off_t)(i * BLK)) == BLK &&
				 !memcmp(r->magic, "VMMREC01", 8) && r->index == i &&
				 r->sum == fnv(r->payload, sizeof(r->payload)) && r->counter > prev;

			if (!ok) {
				if (!bad++) {
					first_bad = i;
					snprintf(detail, sizeof(detail), "record %llu: index %llu counter "
						 "%llu after %llu", (unsigned long long)i,
						 (unsigned long long)r->index,
						 (unsigned long long)r->counter,
						 (unsigned long long)prev);
				}
			} else {
				prev = r->counter;
			}
		}
		(void)first_bad;
		printf("VMMTEST-RECORDS %llu %s %s%llu bad\n", (unsigned long long)n,
		       bad ? "bad" : "ok", detail, (unsigned long long)bad);
	}
	if (ffd >= 0) {
		/* The open file: every line there, in order, none lost. */
		char *buf = malloc(1 << 20);
		ssize_t got = buf ? pread(ffd, buf, (1 << 20) - 1, 0) : -1;
		uint64_t seen = 0;

		if (got >= 0) {
			char *p = buf, *e;

			buf[got] = '\0';
			while (seen < lines && (e = strchr(p, '\n'))) {
				unsigned long long v;

				if (sscanf(p, "line %llu", &v) != 1 || v != seen)
					break;
				seen++;
				p = e + 1;
			}
		}
		printf("VMMTEST-FILE %s %llu of %llu lines, %llu failed writes\n",
		       got >= 0 && seen == lines && !file_bad ? "ok" : "bad",
		       (unsigned long long)seen, (unsigned long long)lines,
		       (unsigned long long)file_bad);
		free(buf);
	}
	printf("VMMTEST-DONE\n");
	return 0;
}
