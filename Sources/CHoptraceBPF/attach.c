// SPDX-License-Identifier: GPL-2.0
/* tcx (clsact where the kernel has no tcx) on devices in any network namespace,
 * from a short-lived thread that enters the namespace, so the caller's threads
 * never change namespace. */
#include <errno.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "internal.h"
#include "hoptrace.skel.h"
#include "hoptrace_netns.h"

/* Attach types of tcx links (kernel 6.6+). Debian's libbpf 1.1 headers predate
 * them, but bpf_link_create passes unknown attach types through unchanged. */
#define HT_BPF_TCX_INGRESS 46
#define HT_BPF_TCX_EGRESS 47
/* Handle and priority of our clsact filters, fixed so a later run can find and
 * remove what a killed one left ("HT" and a priority no tool picks by default). */
#define HT_TC_HANDLE 0x4854
#define HT_TC_PRIORITY 0x4854

struct attach_job {
	const char *netns_path;
	const char *ifname;
	int prog_fd[2];   /* ingress, egress */
	int directions;   /* HT_DIR_* */
	int mode;
	int sweep_only;
	int sweep_first;  /* remove clsact filters a killed hoptrace left, then attach */
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
		/* setns on this thread only: the caller's threads stay where they are */
		int rc = ht_enter_netns(j->netns_path);

		if (rc) {
			/* one errno for open and setns: a missing file is open's, the call
			 * Swift reports as "no such network namespace" */
			j->code = rc;
			j->call = rc == -ENOENT ? "open(netns)" : "setns(netns)";
			return NULL;
		}
	}
	j->ifindex = (int)if_nametoindex(j->ifname);
	if (!j->ifindex) {
		j->code = -ENODEV;
		j->call = "if_nametoindex";
		return NULL;
	}
	if (j->sweep_only || j->sweep_first) {
		for (int dir = 0; dir < 2; dir++)
			if (tc_detach_one(j->ifindex, dir == 0) == 0)
				j->swept++;
		if (j->sweep_only)
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

/* A free slot in t->devices (detached ones are reused), or -1. */
static int device_slot(struct ht_tracer *t)
{
	for (int i = 0; i < t->ndevices; i++)
		if (!t->devices[i].in_use)
			return i;
	if (t->ndevices == t->devices_cap) {
		int cap = t->devices_cap ? 2 * t->devices_cap : 64;
		struct ht_device *grown = realloc(t->devices, cap * sizeof(*grown));

		if (!grown)
			return -1;
		t->devices = grown;
		t->devices_cap = cap;
	}
	return t->ndevices++;
}

/* Jobs run at once, each on its own thread: a tcx attach waits for an RCU grace
 * period (milliseconds), which jobs in flight together share. */
#define HT_ATTACH_PARALLEL 64

int ht_attach_devices(struct ht_tracer *t, const struct ht_device_request *reqs, int n,
		      struct ht_attachment *out, struct ht_error *errs)
{
	struct attach_job *jobs = calloc(n > 0 ? n : 1, sizeof(*jobs));
	pthread_t *threads = calloc(n > 0 ? n : 1, sizeof(*threads));
	int attached = 0;

	if (!jobs || !threads) {
		free(jobs);
		free(threads);
		for (int i = 0; i < n; i++)
			fail(&errs[i], ENOMEM, "attach(calloc)");
		return 0;
	}
	for (int i = 0; i < n; i++)
		jobs[i] = (struct attach_job){
			.netns_path = reqs[i].netns_path, .ifname = reqs[i].ifname, .mode = reqs[i].mode,
			.directions = reqs[i].directions, .sweep_first = reqs[i].sweep_first,
			.prog_fd = { bpf_program__fd(t->skel->progs.ht_tcx_ingress),
				     bpf_program__fd(t->skel->progs.ht_tcx_egress) },
		};
	for (int from = 0; from < n; from += HT_ATTACH_PARALLEL) {
		int to = from + HT_ATTACH_PARALLEL < n ? from + HT_ATTACH_PARALLEL : n;

		for (int i = from; i < to; i++) {
			int rc = pthread_create(&threads[i], NULL, attach_thread, &jobs[i]);

			if (rc) {
				jobs[i].code = -rc;
				jobs[i].call = "pthread_create";
				threads[i] = 0;
			}
		}
		for (int i = from; i < to; i++)
			if (threads[i])
				pthread_join(threads[i], NULL);
	}
	/* the table is filled here, on the caller's thread, in request order */
	for (int i = 0; i < n; i++) {
		struct attach_job *j = &jobs[i];
		struct ht_device *d;
		int id;

		if (j->code) {
			fail(&errs[i], j->code, j->call);
			continue;
		}
		id = device_slot(t);
		if (id < 0) {
			/* no room to remember it: let it go rather than leak it */
			for (int dir = 0; dir < 2; dir++)
				if (j->link_fd[dir] >= 0)
					close(j->link_fd[dir]);
			if (j->used_mode == HT_ATTACH_CLSACT)
				ht_sweep_clsact(j->netns_path, j->ifname, NULL);
			fail(&errs[i], ENOMEM, "attach(realloc)");
			continue;
		}
		d = &t->devices[id];
		*d = (struct ht_device){ .in_use = 1, .link_fd = { j->link_fd[0], j->link_fd[1] } };
		if (j->used_mode == HT_ATTACH_CLSACT) {
			d->clsact = 1;
			snprintf(d->netns_path, sizeof(d->netns_path), "%s", j->netns_path ? j->netns_path : "");
			snprintf(d->ifname, sizeof(d->ifname), "%s", j->ifname);
		}
		out[i] = (struct ht_attachment){ .ifindex = j->ifindex, .mode = j->used_mode, .id = id };
		ok(&errs[i]);
		attached++;
	}
	free(jobs);
	free(threads);
	return attached;
}

int ht_attach_device(struct ht_tracer *t, const char *netns_path, const char *ifname, int mode,
		     int directions, struct ht_attachment *out, struct ht_error *err)
{
	struct ht_device_request req = { .netns_path = netns_path, .ifname = ifname, .mode = mode, .directions = directions };
	struct ht_attachment a;
	struct ht_error e = { 0 };

	if (ht_attach_devices(t, &req, 1, &a, &e) != 1) {
		if (err)
			*err = e;
		return e.code;
	}
	if (out)
		*out = a;
	ok(err);
	return 0;
}

int ht_detach_device(struct ht_tracer *t, int id, struct ht_error *err)
{
	struct ht_device *d;

	if (id < 0 || id >= t->ndevices || !t->devices[id].in_use)
		return fail(err, ENOENT, "detach(not attached)");
	d = &t->devices[id];
	for (int dir = 0; dir < 2; dir++)
		if (d->link_fd[dir] >= 0)
			close(d->link_fd[dir]);
	/* a device that is gone took its filters with it: nothing to sweep, no error */
	if (d->clsact)
		ht_sweep_clsact(d->netns_path[0] ? d->netns_path : NULL, d->ifname, NULL);
	d->in_use = 0;
	ok(err);
	return 0;
}

int ht_sweep_clsact(const char *netns_path, const char *ifname, struct ht_error *err)
{
	libbpf_set_print(ht_libbpf_print);
	struct attach_job j = { .netns_path = netns_path, .ifname = ifname, .sweep_only = 1 };
	int rc = run_job(&j, err);

	return rc ? rc : j.swept;
}

void ht_detach_devices(struct ht_tracer *t)
{
	for (int i = 0; i < t->ndevices; i++)
		if (t->devices[i].in_use)
			ht_detach_device(t, i, NULL);
	free(t->devices);
	t->devices = NULL;
	t->ndevices = t->devices_cap = 0;
}
