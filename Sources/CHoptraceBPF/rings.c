// SPDX-License-Identifier: GPL-2.0
/* The per-CPU ring buffers, read by hand rather than with libbpf's ring_buffer:
 * records are copied in batches into the caller's flat buffer (one call drains
 * many records, no callback per record), and every ring is read in turn. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "internal.h"
#include "hoptrace.skel.h"

/* One CPU's ring: consumer page (rw), producer page + data mapped twice (ro). */
struct ht_ring {
	int fd;
	unsigned long *consumer_pos;
	unsigned long *producer_pos;
	unsigned char *data;
};

/* Before load: one ring buffer per CPU; the first is the template of the
 * `rings` array's values (its size is what the verifier checks against). */
int ht_rings_create(struct ht_tracer *t, struct ht_error *err)
{
	int rc;

	t->rings = calloc((size_t)t->nrings, sizeof(*t->rings));
	if (!t->rings)
		return fail(err, ENOMEM, "calloc(rings)");
	for (int i = 0; i < t->nrings; i++)
		t->rings[i].fd = -1;
	for (int i = 0; i < t->nrings; i++) {
		t->rings[i].fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "ht_ring", 0, 0, (uint32_t)t->ring_size, NULL);
		if (t->rings[i].fd < 0)
			return fail(err, errno, "bpf_map_create(ringbuf)");
	}
	if ((rc = bpf_map__set_max_entries(t->skel->maps.rings, (uint32_t)t->nrings)) ||
	    (rc = bpf_map__set_inner_map_fd(t->skel->maps.rings, t->rings[0].fd)))
		return fail(err, rc, "bpf_map__set_inner_map_fd(rings)");
	return 0;
}

/* After load: each CPU's ring in its slot of `rings`, mapped, and watched by
 * one epoll set. */
int ht_rings_install(struct ht_tracer *t, struct ht_error *err)
{
	int rings_fd = bpf_map__fd(t->skel->maps.rings);

	t->page_size = (size_t)sysconf(_SC_PAGESIZE);
	t->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (t->epoll_fd < 0)
		return fail(err, errno, "epoll_create1");
	for (int i = 0; i < t->nrings; i++) {
		struct ht_ring *r = &t->rings[i];
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
		uint32_t key = (uint32_t)i;
		void *p;

		if (bpf_map_update_elem(rings_fd, &key, &r->fd, BPF_ANY))
			return fail(err, errno, "bpf_map_update_elem(rings)");
		p = mmap(NULL, t->page_size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
		if (p == MAP_FAILED)
			return fail(err, errno, "mmap(ringbuf consumer)");
		r->consumer_pos = p;
		/* the data area is mapped twice in a row, so a record never wraps */
		p = mmap(NULL, t->page_size + 2 * t->ring_size, PROT_READ, MAP_SHARED, r->fd, (off_t)t->page_size);
		if (p == MAP_FAILED)
			return fail(err, errno, "mmap(ringbuf producer)");
		r->producer_pos = p;
		r->data = (unsigned char *)p + t->page_size;
		if (epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, r->fd, &ev) < 0)
			return fail(err, errno, "epoll_ctl(ringbuf)");
	}
	return 0;
}

void ht_rings_destroy(struct ht_tracer *t)
{
	if (t->epoll_fd >= 0)
		close(t->epoll_fd);
	for (int i = 0; t->rings && i < t->nrings; i++) {
		struct ht_ring *r = &t->rings[i];

		if (r->consumer_pos)
			munmap(r->consumer_pos, t->page_size);
		if (r->producer_pos)
			munmap(r->producer_pos, t->page_size + 2 * t->ring_size);
		if (r->fd >= 0)
			close(r->fd);
	}
	free(t->rings);
	t->rings = NULL;
}

static inline unsigned long load_acquire(unsigned long *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* The kernel's ring buffer protocol (kernel/bpf/ringbuf.c): an 8-byte header whose
 * length word carries BUSY while the producer writes and DISCARD for dropped
 * records; records are 8-byte aligned. */
#define RB_BUSY (1U << 31)
#define RB_DISCARD (1U << 30)
#define RB_HDR 8

static size_t consume_ring(struct ht_tracer *t, struct ht_ring *r, unsigned char *buf, size_t cap)
{
	unsigned long cons = *r->consumer_pos;
	unsigned long prod = load_acquire(r->producer_pos);
	size_t mask = t->ring_size - 1, n = 0;

	while (cons < prod) {
		unsigned char *hdr = r->data + (cons & mask);
		uint32_t len = __atomic_load_n((uint32_t *)hdr, __ATOMIC_ACQUIRE);
		uint32_t size;

		if (len & RB_BUSY)
			break;
		size = len & ~(RB_BUSY | RB_DISCARD);
		if (!(len & RB_DISCARD)) {
			if (n + size > cap)
				break;
			memcpy(buf + n, hdr + RB_HDR, size);
			n += size;
		}
		cons += (size + RB_HDR + 7) & ~7UL;
	}
	__atomic_store_n(r->consumer_pos, cons, __ATOMIC_RELEASE);
	return n;
}

/* Every ring in turn, starting one further each call. */
static long consume(struct ht_tracer *t, unsigned char *buf, size_t cap)
{
	size_t n = 0;

	for (int k = 0; k < t->nrings && n < cap; k++)
		n += consume_ring(t, &t->rings[(t->next_ring + k) % t->nrings], buf + n, cap - n);
	t->next_ring = (t->next_ring + 1) % t->nrings;
	return (long)n;
}

long ht_drain(struct ht_tracer *t, void *buf, size_t cap, int timeout_ms, struct ht_error *err)
{
	struct epoll_event ev[64];
	long n = consume(t, buf, cap);

	ok(err);
	if (n > 0 || timeout_ms == 0)
		return n;
	if (epoll_wait(t->epoll_fd, ev, 64, timeout_ms) < 0 && errno != EINTR)
		return fail(err, errno, "epoll_wait(ringbuf)");
	return consume(t, buf, cap);
}

int ht_ring_fds(struct ht_tracer *t, int *fds, int max)
{
	int n = 0;

	for (; n < t->nrings && n < max; n++)
		fds[n] = t->rings[n].fd;
	return n;
}
