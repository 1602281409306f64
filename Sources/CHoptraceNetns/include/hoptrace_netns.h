/* CHoptraceNetns: network namespaces (and netlink multicast) for Swift.
 *
 * This shim exists because Glibc's setns() is declared only under _GNU_SOURCE,
 * which Swift's Glibc module does not define; and because a thread that enters a
 * namespace to make a socket must come back before any Swift code runs on it.
 * CHoptraceBPF's attach thread enters namespaces with it too: one way in, for
 * Swift and C. */
#ifndef HOPTRACE_NETNS_H
#define HOPTRACE_NETNS_H

/* Moves the calling thread into the network namespace at `path`.
 * Returns 0, or a negative errno. */
int ht_enter_netns(const char *path);

/* Creates a socket (as socket(2)) in the network namespace at `path` and returns
 * the calling thread to the namespace it was in. A socket stays in the namespace
 * it was made in, so the caller can then use it from any thread.
 * Returns the socket, or a negative errno. */
int ht_socket_in_netns(const char *path, int domain, int type, int protocol);

/* Joins a netlink socket to the multicast groups `groups` (a bitmask of RTMGRP_*,
 * as in sockaddr_nl.nl_groups), which Swift's Glibc cannot spell.
 * Returns 0, or a negative errno. */
int ht_netlink_join(int fd, unsigned int groups);

#endif
