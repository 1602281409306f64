// SPDX-License-Identifier: GPL-2.0
/* What the files of CHoptraceBPF share: the tracer's state, the error helpers and
 * the calls one file makes into another. Private to the target (not under
 * include/): Swift sees only hoptrace_bpf.h.
 *
 *   tracer.c  open, knobs, load, tracepoint links, counters, stats, close
 *   attach.c  tcx and clsact on devices, in any network namespace; the sweep
 *   rings.c   the per-CPU ring buffers: create, install, drain, destroy
 */
#ifndef HOPTRACE_BPF_INTERNAL_H
#define HOPTRACE_BPF_INTERNAL_H

#include <errno.h>
#include <net/if.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <bpf/libbpf.h>

#include "hoptrace_bpf.h"

#define HT_MAX_TP_LINKS 16

/* One attached device: its tcx links, or (on kernels without tcx) the place of
 * its clsact filters, which closing nothing removes. */
struct ht_device {
	int in_use;
	int link_fd[2];  /* ingress, egress; -1 when none */
	int clsact;
	char netns_path[256];
	char ifname[IF_NAMESIZE];
};

struct ht_tracer {
	struct hoptrace_bpf *skel;
	struct bpf_link *tp_links[HT_MAX_TP_LINKS];
	struct bpf_program *tp_progs[HT_MAX_TP_LINKS]; /* the program of each link */
	int ntp_links;
	struct ht_device *devices; /* indexed by ht_attachment.id; grown as needed */
	int ndevices;
	int devices_cap;
	/* ring buffer readers, one ring per CPU (BPF writes to its CPU's ring) */
	struct ht_ring *rings;
	int nrings;
	int next_ring;   /* where the next drain starts: no ring waits behind a busy one */
	int epoll_fd;
	size_t ring_size;
	size_t page_size;
};

static inline int fail(struct ht_error *err, int code, const char *call)
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

static inline void ok(struct ht_error *err)
{
	if (err) {
		err->code = 0;
		err->call[0] = '\0';
	}
}

/* tracer.c: libbpf's own output, shown only when asked (HOPTRACE_LIBBPF_LOG). */
int ht_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args);

/* attach.c: detach every device (close the tcx links, sweep the clsact filters). */
void ht_detach_devices(struct ht_tracer *t);

/* rings.c: before load, one ring buffer per CPU and the `rings` map sized for
 * them; after load, each ring in its slot, mapped and watched; at close, all of
 * it undone (safe on a partly made set). */
int ht_rings_create(struct ht_tracer *t, struct ht_error *err);
int ht_rings_install(struct ht_tracer *t, struct ht_error *err);
void ht_rings_destroy(struct ht_tracer *t);

#endif /* HOPTRACE_BPF_INTERNAL_H */
