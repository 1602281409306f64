// SPDX-License-Identifier: GPL-2.0
/* Thin layer over libbpf 1.1 (Debian 12). See include/hoptrace_bpf.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "hoptrace_bpf.h"
#include "hoptrace.skel.h"

/* Attach types of tcx links (kernel 6.6+). Debian's libbpf 1.1 headers predate
 * them, but bpf_link_create passes unknown attach types through unchanged. */
#define HT_BPF_TCX_INGRESS 46
#define HT_BPF_TCX_EGRESS 47
/* Handle and priority of our clsact filters, fixed so a later run can find and
 * remove what a killed one left ("HT" and a priority no tool picks by default). */
#define HT_TC_HANDLE 0x4854
#define HT_TC_PRIORITY 0x4854

#define HT_MAX_LINKS 1024

struct ht_clsact {
	char netns_path[256];
	char ifname[IF_NAMESIZE];
};

/* One CPU's ring: consumer page (rw), producer page + data mapped twice (ro). */
struct ht_ring {
	int fd;
	unsigned long *consumer_pos;
	unsigned long *producer_pos;
	unsigned char *data;
};

struct ht_tracer {
	struct hoptrace_bpf *skel;
	struct bpf_link *tp_links[16];
	int ntp_links;
	int links[HT_MAX_LINKS]; /* tcx link fds */
	int nlinks;
	struct ht_clsact clsact[HT_MAX_LINKS];
	int nclsact;
	/* ring buffer readers, one ring per CPU (BPF writes to its CPU's ring) */
	struct ht_ring *rings;
	int nrings;
	int next_ring;   /* where the next drain starts: no ring waits behind a busy one */
	int epoll_fd;
	size_t ring_size;
	size_t page_size;
};

static int fail(struct ht_error *err, int code, const char *call)
{
	if (code > 0)
		code = -code;
	if (code == 0)
		code = -EINVAL;
	if (err) {
		err->code = code;
		snprintf(err->call, sizeof(err->call), "%s", call);
	}
	return code;
}

static void ok(struct ht_error *err)
{
	if (err) {
		err->code = 0;
		err->call[0] = '\0';
	}
}

size_t ht_record_size(void)
{
	return sizeof(struct ht_hop_record);
}

/* Before load: one ring buffer per CPU; the first is the template of the
 * `rings` array's values (its size is what the verifier checks against). */
static int rings_create(struct ht_tracer *t, struct ht_error *err)
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
static int rings_install(struct ht_tracer *t, struct ht_error *err)
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

static void rings_destroy(struct ht_tracer *t)
{
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

/* libbpf prints kernel netlink notes (e.g. from sweeping a device without our
 * filters) and verifier logs on stderr; failures reach the caller as errors, so
 * show libbpf's own output only when asked. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG || !getenv("HOPTRACE_LIBBPF_LOG"))
		return 0;
	return vfprintf(stderr, fmt, args);
}

static int is_power_of_two(uint64_t v)
{
	return v && !(v & (v - 1));
}

int ht_open(const struct ht_knobs *knobs, struct ht_tracer **out, struct ht_error *err)
{
	struct ht_tracer *t;
	int rc;

	*out = NULL;
	if (!knobs->sample_every)
		return fail(err, EINVAL, "ht_open(sample_every)");
	if (!is_power_of_two(knobs->packet_sets) || knobs->packet_sets > (1u << 24))
		return fail(err, EINVAL, "ht_open(packet_sets)");
	if (!is_power_of_two(knobs->ring_bytes_per_cpu) || knobs->ring_bytes_per_cpu < (1u << 20))
		return fail(err, EINVAL, "ht_open(ring_bytes_per_cpu)");
	if (!knobs->wakeup_bytes || knobs->wakeup_bytes > knobs->ring_bytes_per_cpu)
		return fail(err, EINVAL, "ht_open(wakeup_bytes)");
	if (!knobs->max_state_age_ns)
		return fail(err, EINVAL, "ht_open(max_state_age_ns)");
	t = calloc(1, sizeof(*t));
	if (!t)
		return fail(err, ENOMEM, "calloc");
	t->epoll_fd = -1;
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	libbpf_set_print(libbpf_print);
	t->skel = hoptrace_bpf__open();
	if (!t->skel) {
		rc = fail(err, errno, "bpf_object__open(embedded)");
		goto fail;
	}
	t->skel->rodata->sample_every = knobs->sample_every;
	t->skel->rodata->min_latency_ns = knobs->min_latency_ns;
	t->skel->rodata->wakeup_bytes = knobs->wakeup_bytes;
	t->skel->rodata->max_state_age_ns = knobs->max_state_age_ns;
	t->skel->rodata->pkt_set_mask = knobs->packet_sets - 1;
	t->skel->rodata->hooks_only = knobs->hooks_only;
	if ((rc = bpf_map__set_max_entries(t->skel->maps.pkts, knobs->packet_sets))) {
		rc = fail(err, rc, "bpf_map__set_max_entries(pkts)");
		goto fail;
	}
	t->nrings = libbpf_num_possible_cpus();
	if (t->nrings <= 0) {
		rc = fail(err, t->nrings, "libbpf_num_possible_cpus");
		goto fail;
	}
	t->ring_size = knobs->ring_bytes_per_cpu;
	if ((rc = rings_create(t, err)))
		goto fail;
	if ((rc = hoptrace_bpf__load(t->skel))) {
		rc = fail(err, rc, "bpf_object__load");
		goto fail;
	}
	if ((rc = rings_install(t, err)))
		goto fail;
	*out = t;
	ok(err);
	return 0;
fail:
	/* the one cleanup path: ht_close frees whatever was made so far */
	ht_close(t);
	return rc;
}

int ht_attach_program(struct ht_tracer *t, const char *name, struct ht_error *err)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(t->skel->obj, name);
	struct bpf_link *link;
	char call[64];

	if (!prog)
		return fail(err, ENOENT, "bpf_object__find_program_by_name");
	if (t->ntp_links >= (int)(sizeof(t->tp_links) / sizeof(t->tp_links[0])))
		return fail(err, E2BIG, "attach(too many links)");
	link = bpf_program__attach(prog);
	if (!link) {
		snprintf(call, sizeof(call), "bpf_program__attach(%s)", name);
		return fail(err, errno, call);
	}
	t->tp_links[t->ntp_links++] = link;
	ok(err);
	return 0;
}

int ht_num_cpus(void)
{
	return libbpf_num_possible_cpus();
}

int ht_read_softirq(struct ht_tracer *t, struct ht_softirq_cpu *out, int max_cpus, struct ht_error *err)
{
	int ncpu = libbpf_num_possible_cpus();
	__u32 zero = 0;

	if (ncpu <= 0)
		return fail(err, ncpu, "libbpf_num_possible_cpus");
	if (ncpu > max_cpus)
		return fail(err, ENOSPC, "ht_read_softirq(buffer too small)");
	if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.softirqs), &zero, out))
		return fail(err, errno, "bpf_map_lookup_elem(softirqs)");
	ok(err);
	return ncpu;
}

struct attach_job {
	const char *netns_path;
	const char *ifname;
	int prog_fd[2];   /* ingress, egress */
	int directions;   /* HT_DIR_* */
	int mode;
	int sweep_only;
	int link_fd[2];
	int ifindex;
	int used_mode;
	int swept;
	int code;
	const char *call;
};

static int tc_attach_one(int ifindex, int prog_fd, int ingress)
{
	DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
			    .attach_point = ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS);
	DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = HT_TC_HANDLE, .priority = HT_TC_PRIORITY,
			    .prog_fd = prog_fd);
	int rc = bpf_tc_hook_create(&hook);

	if (rc && rc != -EEXIST)
		return rc;
	return bpf_tc_attach(&hook, &opts);
}

static int tc_detach_one(int ifindex, int ingress)
{
	DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
			    .attach_point = ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS);
	DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = HT_TC_HANDLE, .priority = HT_TC_PRIORITY);

	return bpf_tc_detach(&hook, &opts);
}

static void *attach_thread(void *arg)
{
	struct attach_job *j = arg;

	j->link_fd[0] = j->link_fd[1] = -1;
	if (j->netns_path) {
		int ns = open(j->netns_path, O_RDONLY | O_CLOEXEC);

		if (ns < 0) {
			j->code = -errno;
			j->call = "open(netns)";
			return NULL;
		}
		/* setns on this thread only: the caller's threads stay where they are */
		if (setns(ns, CLONE_NEWNET) < 0) {
			j->code = -errno;
			j->call = "setns(netns)";
			close(ns);
			return NULL;
		}
		close(ns);
	}
	j->ifindex = (int)if_nametoindex(j->ifname);
	if (!j->ifindex) {
		j->code = -ENODEV;
		j->call = "if_nametoindex";
		return NULL;
	}
	if (j->sweep_only) {
		for (int dir = 0; dir < 2; dir++)
			if (tc_detach_one(j->ifindex, dir == 0) == 0)
				j->swept++;
		return NULL;
	}
	if (j->mode != HT_ATTACH_CLSACT) {
		for (int dir = 0; dir < 2; dir++) {
			int type = dir == 0 ? HT_BPF_TCX_INGRESS : HT_BPF_TCX_EGRESS;

			if (!(j->directions & (1 << dir)))
				continue;
			j->link_fd[dir] = bpf_link_create(j->prog_fd[dir], j->ifindex, type, NULL);
			if (j->link_fd[dir] < 0) {
				j->code = j->link_fd[dir];
				j->call = "bpf_link_create(tcx)";
				j->link_fd[dir] = -1;
				if (dir == 1 && j->link_fd[0] >= 0) {
					close(j->link_fd[0]);
					j->link_fd[0] = -1;
				}
				break;
			}
		}
		if (j->code == 0) {
			j->used_mode = HT_ATTACH_TCX;
			return NULL;
		}
		/* only a kernel without tcx (EINVAL for the attach type) falls back */
		if (j->mode == HT_ATTACH_TCX || j->code != -EINVAL)
			return NULL;
		j->code = 0;
	}
	for (int dir = 0; dir < 2; dir++) {
		int rc;

		if (!(j->directions & (1 << dir)))
			continue;
		rc = tc_attach_one(j->ifindex, j->prog_fd[dir], dir == 0);
		if (rc) {
			j->code = rc;
			j->call = "bpf_tc_attach(clsact)";
			if (dir == 1)
				tc_detach_one(j->ifindex, 1);
			return NULL;
		}
	}
	j->used_mode = HT_ATTACH_CLSACT;
	return NULL;
}

static int run_job(struct attach_job *j, struct ht_error *err)
{
	pthread_t th;
	int rc = pthread_create(&th, NULL, attach_thread, j);

	if (rc)
		return fail(err, rc, "pthread_create");
	pthread_join(th, NULL);
	if (j->code)
		return fail(err, j->code, j->call);
	ok(err);
	return 0;
}

int ht_attach_device(struct ht_tracer *t, const char *netns_path, const char *ifname, int mode,
		     int directions, struct ht_attachment *out, struct ht_error *err)
{
	struct attach_job j = {
		.netns_path = netns_path, .ifname = ifname, .mode = mode, .directions = directions,
		.prog_fd = { bpf_program__fd(t->skel->progs.ht_tcx_ingress),
			     bpf_program__fd(t->skel->progs.ht_tcx_egress) },
	};
	int rc;

	if (t->nlinks + 2 > HT_MAX_LINKS || t->nclsact + 2 > HT_MAX_LINKS)
		return fail(err, E2BIG, "attach(too many devices)");
	rc = run_job(&j, err);
	if (rc)
		return rc;
	if (j.used_mode == HT_ATTACH_TCX) {
		for (int dir = 0; dir < 2; dir++)
			if (j.link_fd[dir] >= 0)
				t->links[t->nlinks++] = j.link_fd[dir];
	} else {
		/* one entry per device: closing sweeps both directions */
		struct ht_clsact *c = &t->clsact[t->nclsact++];

		snprintf(c->netns_path, sizeof(c->netns_path), "%s", netns_path ? netns_path : "");
		snprintf(c->ifname, sizeof(c->ifname), "%s", ifname);
	}
	if (out) {
		out->ifindex = j.ifindex;
		out->mode = j.used_mode;
	}
	return 0;
}

int ht_sweep_clsact(const char *netns_path, const char *ifname, struct ht_error *err)
{
	libbpf_set_print(libbpf_print);
	struct attach_job j = { .netns_path = netns_path, .ifname = ifname, .sweep_only = 1 };
	int rc = run_job(&j, err);

	return rc ? rc : j.swept;
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

int ht_read_counters(struct ht_tracer *t, uint64_t *out, struct ht_error *err)
{
	int ncpu = libbpf_num_possible_cpus();
	uint32_t zero = 0;
	uint64_t *vals;
	int rc;

	if (ncpu <= 0)
		return fail(err, ncpu, "libbpf_num_possible_cpus");
	vals = calloc((size_t)ncpu, sizeof(uint64_t) * HT_CTR_COUNT);
	if (!vals)
		return fail(err, ENOMEM, "calloc");
	rc = bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.counters), &zero, vals);
	if (rc) {
		free(vals);
		return fail(err, errno, "bpf_map_lookup_elem(counters)");
	}
	memset(out, 0, sizeof(uint64_t) * HT_CTR_COUNT);
	for (int cpu = 0; cpu < ncpu; cpu++)
		for (int i = 0; i < HT_CTR_COUNT; i++)
			out[i] += vals[cpu * HT_CTR_COUNT + i];
	free(vals);
	ok(err);
	return 0;
}

int ht_enable_stats(struct ht_error *err)
{
	int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);

	if (fd < 0)
		return fail(err, errno, "bpf_enable_stats");
	ok(err);
	return fd;
}

int ht_prog_stats(struct ht_tracer *t, struct ht_prog_stat *out, int max, struct ht_error *err)
{
	struct bpf_program *prog;
	int n = 0;

	bpf_object__for_each_program(prog, t->skel->obj) {
		struct bpf_prog_info info = {};
		uint32_t len = sizeof(info);

		if (n >= max)
			break;
		if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
			return fail(err, errno, "bpf_obj_get_info_by_fd");
		snprintf(out[n].name, sizeof(out[n].name), "%s", bpf_program__name(prog));
		out[n].run_cnt = info.run_cnt;
		out[n].run_time_ns = info.run_time_ns;
		n++;
	}
	ok(err);
	return n;
}

int ht_bench_fill(struct ht_tracer *t, uint32_t records, struct ht_error *err)
{
	DECLARE_LIBBPF_OPTS(bpf_test_run_opts, opts);
	int rc;

	t->skel->bss->bench_records = records;
	rc = bpf_prog_test_run_opts(bpf_program__fd(t->skel->progs.ht_bench_fill), &opts);
	if (rc)
		return fail(err, errno, "bpf_prog_test_run_opts(ht_bench_fill)");
	ok(err);
	return 0;
}

void ht_close(struct ht_tracer *t)
{
	if (!t)
		return;
	for (int i = 0; i < t->ntp_links; i++)
		bpf_link__destroy(t->tp_links[i]);
	for (int i = 0; i < t->nlinks; i++)
		close(t->links[i]);
	for (int i = 0; i < t->nclsact; i++) {
		struct ht_clsact *c = &t->clsact[i];

		ht_sweep_clsact(c->netns_path[0] ? c->netns_path : NULL, c->ifname, NULL);
	}
	if (t->epoll_fd >= 0)
		close(t->epoll_fd);
	rings_destroy(t);
	if (t->skel)
		hoptrace_bpf__destroy(t->skel);
	free(t);
}
