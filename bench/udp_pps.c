// SPDX-License-Identifier: GPL-2.0
/* The CPU-bound per-packet measure of `make bench`: 64-byte UDP datagrams from a
 * sender in one network namespace to a receiver in another, counted over a fixed
 * window after a warm-up. Run it under `taskset -c CPU`: both threads inherit the
 * CPU, and on veth the NET_RX softirq runs on the CPU that sent, so the sender,
 * the whole path between the namespaces and the receiver share that one CPU and
 * every nanosecond added to the path is one less for the next datagram.
 *   udp_pps SENDER_NETNS RECEIVER_NETNS ADDRESS PORT WARMUP SECONDS
 * prints one line:
 *   window_sent window_received window_seconds window_cpu_seconds total_sent total_received
 * window_cpu_seconds: CPU time of the two threads in the window, softirq included
 * (it runs in the sender's context); time other tasks took from the CPU is not in
 * it. total_*: the whole run, warm-up and drain included (what bpf_stats counts
 * over). Exit status 1 when nothing was received in the window. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD 64
/* Neither thread ever sleeps in the kernel: the sender yields the CPU while this
 * many datagrams sit unread, the receiver reads without blocking and yields when
 * the socket is empty. A blocking receiver would be woken, and would preempt the
 * sender, for almost every datagram: the figure would then be mostly context
 * switches, and how often they happen changes with the cost of the path. */
#define AHEAD 256

static atomic_ulong sent, received;
static atomic_int stopping, sender_done;
static struct sockaddr_in dest;

static double clock_seconds(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "udp_pps: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* Moves the calling thread into the network namespace at `path` (a socket stays
 * in the namespace it was made in). */
static void enter_netns(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die(path);
	if (setns(fd, CLONE_NEWNET))
		die("setns");
	close(fd);
}

struct receiver {
	const char *netns;
	int ready;		/* bound: the sender may start */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void *receive(void *arg)
{
	struct receiver *r = arg;
	char buf[2048];
	int fd, size = 8 << 20, empty = 0;

	enter_netns(r->netns);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	if (bind(fd, (struct sockaddr *)&dest, sizeof(dest)))
		die("bind");
	pthread_mutex_lock(&r->lock);
	r->ready = 1;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	for (;;) {
		if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) == PAYLOAD) {
			atomic_fetch_add_explicit(&received, 1, memory_order_relaxed);
			continue;
		}
		if (!atomic_load(&sender_done)) {
			sched_yield();
		} else if (++empty < 3) {
			/* a softirq deferred to ksoftirqd may still deliver */
			usleep(20000);
		} else {
			break;
		}
	}
	close(fd);
	return NULL;
}

static void *send_all(void *arg)
{
	char buf[PAYLOAD];
	int fd;

	enter_netns(arg);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&dest, sizeof(dest)))
		die("connect");
	memset(buf, 0x42, sizeof(buf));
	while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
		if (atomic_load_explicit(&sent, memory_order_relaxed) -
		    atomic_load_explicit(&received, memory_order_relaxed) >= AHEAD) {
			sched_yield();
			continue;
		}
		if (send(fd, buf, sizeof(buf), 0) == sizeof(buf))
			atomic_fetch_add_explicit(&sent, 1, memory_order_relaxed);
	}
	atomic_store(&sender_done, 1);
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	struct receiver r = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	unsigned long s0, r0, s1, r1;
	double warmup, seconds, t0, t1, c0, c1;
	pthread_t rt, st;

	if (argc != 7) {
		fprintf(stderr, "usage: udp_pps SENDER_NETNS RECEIVER_NETNS ADDRESS PORT WARMUP SECONDS\n");
		return 2;
	}
	r.netns = argv[2];
	dest.sin_family = AF_INET;
	dest.sin_port = htons(atoi(argv[4]));
	if (inet_pton(AF_INET, argv[3], &dest.sin_addr) != 1) {
		fprintf(stderr, "udp_pps: bad address %s\n", argv[3]);
		return 2;
	}
	warmup = atof(argv[5]);
	seconds = atof(argv[6]);
	/* an interrupted bench removes the namespaces: no sender left running in them */
	prctl(PR_SET_PDEATHSIG, SIGKILL);

	pthread_create(&rt, NULL, receive, &r);
	pthread_mutex_lock(&r.lock);
	while (!r.ready)
		pthread_cond_wait(&r.cond, &r.lock);
	pthread_mutex_unlock(&r.lock);
	pthread_create(&st, NULL, send_all, argv[1]);

	usleep(warmup * 1e6);
	t0 = clock_seconds(CLOCK_MONOTONIC);
	c0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
	s0 = atomic_load(&sent);
	r0 = atomic_load(&received);
	usleep(seconds * 1e6);
	t1 = clock_seconds(CLOCK_MONOTONIC);
	c1 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
	s1 = atomic_load(&sent);
	r1 = atomic_load(&received);
	atomic_store(&stopping, 1);
	pthread_join(st, NULL);
	pthread_join(rt, NULL);

	printf("%lu %lu %.6f %.6f %lu %lu\n", s1 - s0, r1 - r0, t1 - t0, c1 - c0, atomic_load(&sent),
	       atomic_load(&received));
	return r1 > r0 ? 0 : 1;
}
