// SPDX-License-Identifier: GPL-2.0
/* Thin layer over libbpf 1.1 (Debian 12). See include/hoptrace_bpf.h; the files
 * of this target are listed in internal.h. Here: open, knobs and load, the
 * tracepoint programs, counters and run-time stats, the bench producer, close. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "internal.h"
#include "hoptrace.skel.h"

size_t ht_record_size(void)
{
	return sizeof(struct ht_hop_record);
}

/* libbpf prints kernel netlink notes (e.g. from sweeping a device without our
 * filters) and verifier logs on stderr; failures reach the caller as errors, so
 * show libbpf's own output only when asked. */
int ht_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
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
	libbpf_set_print(ht_libbpf_print);
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
	if ((rc = ht_rings_create(t, err)))
		goto fail;
	if ((rc = hoptrace_bpf__load(t->skel))) {
		rc = fail(err, rc, "bpf_object__load");
		goto fail;
	}
	if ((rc = ht_rings_install(t, err)))
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
	for (int i = 0; i < t->ntp_links; i++)
		if (t->tp_progs[i] == prog)
			return fail(err, EEXIST, "attach(already attached)");
	if (t->ntp_links >= HT_MAX_TP_LINKS)
		return fail(err, E2BIG, "attach(too many links)");
	link = bpf_program__attach(prog);
	if (!link) {
		snprintf(call, sizeof(call), "bpf_program__attach(%s)", name);
		return fail(err, errno, call);
	}
	t->tp_progs[t->ntp_links] = prog;
	t->tp_links[t->ntp_links++] = link;
	ok(err);
	return 0;
}

int ht_detach_program(struct ht_tracer *t, const char *name, struct ht_error *err)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(t->skel->obj, name);

	if (!prog)
		return fail(err, ENOENT, "bpf_object__find_program_by_name");
	for (int i = 0; i < t->ntp_links; i++) {
		if (t->tp_progs[i] != prog)
			continue;
		bpf_link__destroy(t->tp_links[i]);
		t->ntp_links--;
		t->tp_links[i] = t->tp_links[t->ntp_links];
		t->tp_progs[i] = t->tp_progs[t->ntp_links];
		ok(err);
		return 0;
	}
	return fail(err, ENOENT, "detach(not attached)");
}

void ht_pause_devices(struct ht_tracer *t, int paused)
{
	t->skel->bss->tcx_paused = paused ? 1 : 0;
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
	ht_detach_devices(t);
	ht_rings_destroy(t);
	if (t->skel)
		hoptrace_bpf__destroy(t->skel);
	free(t);
}
