/* CHoptraceNetns: enter a network namespace from Swift.
 *
 * This shim exists because Glibc's setns() is declared only under _GNU_SOURCE,
 * which Swift's Glibc module does not define. CHoptraceBPF's attach thread
 * enters namespaces with it too: one way in, for Swift and C. */
#ifndef HOPTRACE_NETNS_H
#define HOPTRACE_NETNS_H

/* Moves the calling thread into the network namespace at `path`.
 * Returns 0, or a negative errno. */
int ht_enter_netns(const char *path);

#endif
