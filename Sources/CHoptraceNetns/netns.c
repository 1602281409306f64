#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <unistd.h>
#include "hoptrace_netns.h"

/* The one setns() of this module: moves the calling thread into the network
 * namespace `fd` refers to. Returns 0, or a negative errno. */
static int enter_netns_fd(int fd)
{
	return setns(fd, CLONE_NEWNET) ? -errno : 0;
}

int ht_enter_netns(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -errno;
	rc = enter_netns_fd(fd);
	close(fd);
	return rc;
}

int ht_socket_in_netns(const char *path, int domain, int type, int protocol)
{
	/* this thread's own namespace, to come back to (the process's may differ) */
	int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int fd, rc;

	if (home < 0)
		return -errno;
	rc = ht_enter_netns(path);
	if (rc) {
		close(home);
		return rc;
	}
	fd = socket(domain, type, protocol);
	if (fd < 0)
		fd = -errno;
	/* Going back cannot fail: we hold the namespace open and have the rights
	 * that let us leave it. Were it to, every later socket of this thread would
	 * silently live in the wrong namespace: stop rather than go on. */
	if (enter_netns_fd(home))
		abort();
	close(home);
	return fd;
}

int ht_netlink_join(int fd, unsigned int groups)
{
	struct sockaddr_nl address = { .nl_family = AF_NETLINK, .nl_groups = groups };

	return bind(fd, (struct sockaddr *)&address, sizeof(address)) ? -errno : 0;
}
