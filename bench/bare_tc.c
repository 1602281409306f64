// SPDX-License-Identifier: GPL-2.0
/* Loads bench/bare_tc.bpf.o once and attaches its two programs with clsact
 * (egress and ingress) to each device given, until SIGINT or SIGTERM; then removes
 * the clsact qdiscs it made. One loader rather than `tc filter add ... obj`: tc
 * loads the object again for every filter, so egress and ingress would each get a
 * map of their own unless it were pinned in bpffs (which a killed run leaves).
 *   bare_tc OBJECT NETNS_PATH IFACE [NETNS_PATH IFACE ...]
 * prints "attached" on stdout once every device is hooked. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <bpf/libbpf.h>

#define MAX_DEVICES 16

struct device {
	int netns;		/* fd: ifindexes are per namespace */
	struct bpf_tc_hook hook;
};

static struct device devices[MAX_DEVICES];
static int ndevices;

static int enter(int netns, const char *what)
{
	if (setns(netns, CLONE_NEWNET)) {
		fprintf(stderr, "bare_tc: setns %s: %s\n", what, strerror(errno));
		return -1;
	}
	return 0;
}

/* Hooks egress and ingress of IFACE in the namespace at PATH. */
static int attach(const char *path, const char *iface, int egress, int ingress)
{
	struct device *d = &devices[ndevices];
	LIBBPF_OPTS(bpf_tc_opts, out, .prog_fd = egress);
	LIBBPF_OPTS(bpf_tc_opts, in, .prog_fd = ingress);
	int err;

	d->netns = open(path, O_RDONLY | O_CLOEXEC);
	if (d->netns < 0) {
		fprintf(stderr, "bare_tc: open %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (enter(d->netns, path))
		return -1;
	d->hook.sz = sizeof(d->hook);
	d->hook.ifindex = if_nametoindex(iface);
	if (!d->hook.ifindex) {
		fprintf(stderr, "bare_tc: no device %s in %s\n", iface, path);
		return -1;
	}
	d->hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
	err = bpf_tc_hook_create(&d->hook);
	if (err) {
		/* an existing clsact is someone else's: leave it, and fail */
		fprintf(stderr, "bare_tc: bpf_tc_hook_create %s: %s\n", iface, strerror(-err));
		return -1;
	}
	ndevices++;
	d->hook.attach_point = BPF_TC_EGRESS;
	err = bpf_tc_attach(&d->hook, &out);
	d->hook.attach_point = BPF_TC_INGRESS;
	if (!err)
		err = bpf_tc_attach(&d->hook, &in);
	if (err) {
		fprintf(stderr, "bare_tc: bpf_tc_attach %s: %s\n", iface, strerror(-err));
		return -1;
	}
	return 0;
}

/* Removes the clsact qdiscs made (their filters go with them). */
static void detach_all(void)
{
	for (int i = 0; i < ndevices; i++) {
		struct device *d = &devices[i];

		d->hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
		if (!enter(d->netns, "back"))
			bpf_tc_hook_destroy(&d->hook);
		close(d->netns);
	}
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	sigset_t stop;
	int sig, egress, ingress, err = 1;

	if (argc < 4 || argc % 2 || (argc - 2) / 2 > MAX_DEVICES) {
		fprintf(stderr, "usage: bare_tc OBJECT NETNS_PATH IFACE [NETNS_PATH IFACE ...]\n");
		return 2;
	}
	/* block them before anything is attached, so no signal can skip the cleanup */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	/* a bench killed outright still gets its devices back */
	prctl(PR_SET_PDEATHSIG, SIGTERM);

	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		fprintf(stderr, "bare_tc: bpf_object__open_file %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "bare_tc: bpf_object__load: %s\n", strerror(errno));
		goto out;
	}
	egress = bpf_program__fd(bpf_object__find_program_by_name(obj, "bare_egress"));
	ingress = bpf_program__fd(bpf_object__find_program_by_name(obj, "bare_ingress"));
	for (int i = 2; i < argc; i += 2) {
		if (attach(argv[i], argv[i + 1], egress, ingress))
			goto out;
	}
	printf("attached\n");
	fflush(stdout);
	sigwait(&stop, &sig);
	err = 0;
out:
	detach_all();
	bpf_object__close(obj);
	return err;
}
