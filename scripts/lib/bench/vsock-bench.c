// SPDX-License-Identifier: MIT
/*
 * vsock-bench: the AF_VSOCK load of scripts/bench's vsock suite (built statically by
 * scripts/bench; the guest runs the client, the host the server).
 *
 *   vsock-bench server PORT
 *       Accepts connections on VMADDR_CID_ANY:PORT one after the other until killed. Each
 *       starts with a 16-byte request: a letter and a decimal count.
 *         "T N"  the client sends N bytes; the server reads them all, then answers 1 byte
 *         "R N"  the server sends N bytes
 *         "P N"  N round trips: the client sends 1 byte, the server echoes it
 *   vsock-bench client CID PORT tx|rx|rr COUNT
 *       One connection of the kind above (tx = "T", rx = "R", rr = "P") to CID:PORT; prints
 *       one line: "bytes=N seconds=S" (tx: until the server's answer, so every byte has
 *       arrived; rx: until the last byte arrived) or "ops=N seconds=S median_us=M p99_us=P".
 * Exit status: 0 done, 1 a failure (said on stderr), 2 usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF (64 * 1024)
#define REQ 16

static char buf[BUF];

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* write_all/read_all: 0, or -1 with errno (read_all: EPIPE on an early end of stream). */
static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t r = write(fd, c, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

static int read_all(int fd, void *p, size_t n)
{
	char *c = p;

	while (n) {
		ssize_t r = read(fd, c, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			errno = EPIPE;
		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Sends or receives n bytes in BUF-sized pieces. */
static int stream(int fd, unsigned long long n, int sending)
{
	while (n) {
		size_t k = n < BUF ? (size_t)n : BUF;

		if (sending) {
			if (write_all(fd, buf, k))
				return -1;
		} else {
			ssize_t r = read(fd, buf, k);

			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0)
				errno = EPIPE;
			if (r <= 0)
				return -1;
			k = (size_t)r;
		}
		n -= k;
	}
	return 0;
}

static void serve(int c)
{
	char req[REQ + 1] = { 0 };
	unsigned long long n;
	char b;

	if (read_all(c, req, REQ))
		return;
	n = strtoull(req + 1, NULL, 10);
	switch (req[0]) {
	case 'T':
		if (stream(c, n, 0) == 0)
			write_all(c, "k", 1);
		break;
	case 'R':
		stream(c, n, 1);
		break;
	case 'P':
		while (n-- && read_all(c, &b, 1) == 0 && write_all(c, &b, 1) == 0)
			;
		break;
	default:
		fprintf(stderr, "vsock-bench: bad request '%.16s'\n", req);
	}
}

static int server(unsigned port)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 4)) {
		fprintf(stderr, "vsock-bench: cannot listen on vsock port %u: %s (is vhost_vsock or "
				"vsock_loopback loaded?)\n", port, strerror(errno));
		return 1;
	}
	for (;;) {
		int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "vsock-bench: accept: %s\n", strerror(errno));
			return 1;
		}
		serve(c);
		close(c);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int client(unsigned cid, unsigned port, const char *what, unsigned long long n)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	char req[REQ + 1];
	char kind = !strcmp(what, "tx") ? 'T' : !strcmp(what, "rx") ? 'R' : !strcmp(what, "rr") ? 'P' : 0;
	int s;
	double t0, t;

	if (!kind) {
		fprintf(stderr, "vsock-bench: unknown job '%s' (tx, rx or rr)\n", what);
		return 2;
	}
	s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a))) {
		fprintf(stderr, "vsock-bench: cannot connect to vsock %u:%u: %s\n", cid, port, strerror(errno));
		return 1;
	}
	snprintf(req, sizeof(req), "%c%-15llu", kind, n);
	t0 = now();
	if (write_all(s, req, REQ))
		goto io;
	if (kind == 'T') {
		char b;

		if (stream(s, n, 1) || read_all(s, &b, 1))
			goto io;
		printf("bytes=%llu seconds=%.6f\n", n, now() - t0);
	} else if (kind == 'R') {
		if (stream(s, n, 0))
			goto io;
		printf("bytes=%llu seconds=%.6f\n", n, now() - t0);
	} else {
		double *rtt = calloc(n ? n : 1, sizeof(*rtt));
		unsigned long long i;
		char b = 'p';

		if (!rtt) {
			fprintf(stderr, "vsock-bench: out of memory\n");
			return 1;
		}
		t0 = now();
		for (i = 0; i < n; i++) {
			t = now();
			if (write_all(s, &b, 1) || read_all(s, &b, 1)) {
				free(rtt);
				goto io;
			}
			rtt[i] = (now() - t) * 1e6;
		}
		t = now() - t0;
		qsort(rtt, n, sizeof(*rtt), cmp_double);
		printf("ops=%llu seconds=%.6f median_us=%.1f p99_us=%.1f\n", n, t,
		       n ? rtt[n / 2] : 0.0, n ? rtt[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] : 0.0);
		free(rtt);
	}
	close(s);
	return 0;
io:
	fprintf(stderr, "vsock-bench: %s to vsock %u:%u failed: %s\n", what, cid, port, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	memset(buf, 'v', sizeof(buf));
	if (argc == 3 && !strcmp(argv[1], "server"))
		return server((unsigned)strtoul(argv[2], NULL, 10));
	if (argc == 6 && !strcmp(argv[1], "client"))
		return client((unsigned)strtoul(argv[2], NULL, 10), (unsigned)strtoul(argv[3], NULL, 10),
			      argv[4], strtoull(argv[5], NULL, 10));
	fprintf(stderr, "usage: vsock-bench server PORT | client CID PORT tx|rx|rr COUNT\n");
	return 2;
}
