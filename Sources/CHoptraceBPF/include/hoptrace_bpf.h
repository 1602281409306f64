/* CHoptraceBPF: the only code that touches libbpf.
 *
 * Thin and policy-free: open the embedded BPF object, set its knobs, load, attach,
 * drain the ring buffer into flat batches, read counters. Every failure returns a
 * negative errno and names the call that failed in `struct ht_error`; Swift turns
 * that into a typed error with a human message. The functions prefixed ht_ exist
 * because Swift cannot use libbpf's skeleton macros, its variadic opts structs or
 * a pthread that enters another network namespace.
 */
#ifndef HOPTRACE_BPF_H
#define HOPTRACE_BPF_H

#include <stddef.h>
#include <stdint.h>
#include "hoptrace_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ht_tracer; /* opaque: the loaded object, its links and the ring reader */

struct ht_error {
	int code;        /* negative errno, 0 on success */
	char call[64];   /* the call that failed, e.g. "bpf_link_create(tcx)" */
};

/* Every knob of the BPF side, assigned as given (the caller owns the defaults:
 * TracerOptions in Swift); a value out of range fails ht_open with EINVAL. */
struct ht_knobs {
	uint32_t sample_every;       /* follow 1 packet in N (>= 1) */
	uint32_t packet_sets;        /* sets of HT_PKT_WAYS packets in the per-packet table (a power of two) */
	uint64_t min_latency_ns;     /* emit hops whose total is at least this */
	uint64_t wakeup_bytes;       /* force a consumer wake-up past this backlog (1 .. ring_bytes_per_cpu) */
	uint64_t max_state_age_ns;   /* per-packet state untouched for longer is dead (> 0) */
	uint32_t ring_bytes_per_cpu; /* one ring buffer per CPU of this size (a power of two, >= 1 MiB) */
	uint32_t hooks_only;         /* benchmarks: every program returns at once (the hooks' own cost) */
};

enum ht_attach_mode {
	HT_ATTACH_AUTO = 0,   /* tcx, clsact where the kernel has no tcx */
	HT_ATTACH_TCX = 1,
	HT_ATTACH_CLSACT = 2,
};

/* Which of a device's hooks to attach. */
enum ht_direction {
	HT_DIR_INGRESS = 1,
	HT_DIR_EGRESS = 2,
};

/* How a device ended up attached. */
struct ht_attachment {
	int ifindex;
	int mode;    /* HT_ATTACH_TCX or HT_ATTACH_CLSACT */
	int id;      /* for ht_detach_device */
};

struct ht_prog_stat {
	char name[32];
	uint64_t run_cnt;
	uint64_t run_time_ns;
};

/* Open the embedded object, apply knobs, load it. */
int ht_open(const struct ht_knobs *knobs, struct ht_tracer **out, struct ht_error *err);

/* Attach the tp_btf program called `name` (e.g. "ht_netif_rx"); which ones a
 * trace needs is the caller's choice. Detached programs cost nothing. */
int ht_attach_program(struct ht_tracer *t, const char *name, struct ht_error *err);

/* Detach the tp_btf program called `name`; ENOENT when it is not attached. */
int ht_detach_program(struct ht_tracer *t, const char *name, struct ht_error *err);

/* Pause (1) or resume (0) the tcx programs on every attached device: paused, they
 * return at once. The links stay. */
void ht_pause_devices(struct ht_tracer *t, int paused);

/* Possible CPUs (the per-CPU maps' width). */
int ht_num_cpus(void);

/* Per-CPU softirq statistics since load into `out[cpu]` (room for max_cpus).
 * Returns ncpu. */
int ht_read_softirq(struct ht_tracer *t, struct ht_softirq_cpu *out, int max_cpus, struct ht_error *err);

/* Attach the tcx programs (`directions`: HT_DIR_*) to `ifname` inside the network
 * namespace at `netns_path` (NULL: the caller's). Runs on a short-lived thread that
 * enters the namespace, so the caller's namespace never changes. */
int ht_attach_device(struct ht_tracer *t, const char *netns_path, const char *ifname, int mode,
		     int directions, struct ht_attachment *out, struct ht_error *err);

/* One device to attach (ht_attach_devices). */
struct ht_device_request {
	const char *netns_path; /* NULL: the caller's namespace */
	const char *ifname;
	int mode;               /* HT_ATTACH_* */
	int directions;         /* HT_DIR_* */
	int sweep_first;        /* remove clsact filters a killed hoptrace left first */
};

/* Attach many devices at once (their jobs run in parallel: a tcx attach waits for
 * an RCU grace period, which attaches in flight share). out[i] and errs[i] say how
 * request i went (errs[i].code 0: attached). Returns how many were attached. */
int ht_attach_devices(struct ht_tracer *t, const struct ht_device_request *reqs, int n,
		      struct ht_attachment *out, struct ht_error *errs);

/* Detach the device attached as `id` (ht_attachment.id): its tcx links closed or
 * its clsact filters removed. A device that is gone already is fine. */
int ht_detach_device(struct ht_tracer *t, int id, struct ht_error *err);

/* Remove clsact filters a killed hoptrace may have left on `ifname` (tcx links die
 * with their process; clsact filters do not). Returns the number removed. */
int ht_sweep_clsact(const char *netns_path, const char *ifname, struct ht_error *err);

/* Copy up to `cap` bytes of whole records into `buf`, waiting up to `timeout_ms`
 * for data if none is ready. Returns bytes copied (a multiple of the record size). */
long ht_drain(struct ht_tracer *t, void *buf, size_t cap, int timeout_ms, struct ht_error *err);

/* The per-CPU ring buffers' map fds (for a libbpf ring_buffer consumer: the
 * benchmark's baseline). Returns how many were written. */
int ht_ring_fds(struct ht_tracer *t, int *fds, int max);

/* Sum of the per-CPU counters, `out` has HT_CTR_COUNT entries. */
int ht_read_counters(struct ht_tracer *t, uint64_t *out, struct ht_error *err);

/* Turn on kernel run-time accounting of BPF programs; the returned fd keeps it on. */
int ht_enable_stats(struct ht_error *err);

/* Run counts and run time of each loaded program; returns how many were written. */
int ht_prog_stats(struct ht_tracer *t, struct ht_prog_stat *out, int max, struct ht_error *err);

/* Benchmarks and self-tests: the never-attached ht_bench_fill program writes
 * `records` synthetic records into the ring buffer (fewer if it fills). */
int ht_bench_fill(struct ht_tracer *t, uint32_t records, struct ht_error *err);

/* Detach everything and free. Safe on NULL. */
void ht_close(struct ht_tracer *t);

/* The size of one record as compiled into the embedded object's ABI. */
size_t ht_record_size(void);

#ifdef __cplusplus
}
#endif

#endif /* HOPTRACE_BPF_H */
