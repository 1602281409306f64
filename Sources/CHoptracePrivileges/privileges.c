// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include "hoptrace_privileges.h"

static int failed(char *call, const char *what)
{
	int e = errno;

	if (call)
		snprintf(call, 32, "%s", what);
	return -e;
}

int ht_keep_capabilities(uint64_t keep, char *call)
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	int last = CAP_LAST_CAP;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "r");

	/* the running kernel may know more capabilities than these headers */
	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = CAP_LAST_CAP;
		fclose(f);
	}
	for (int cap = 0; cap <= last && cap < 64; cap++) {
		if (keep & (1ULL << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && errno != EPERM && errno != EINVAL)
			return failed(call, "prctl(PR_CAPBSET_DROP)");
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		return failed(call, "prctl(PR_CAP_AMBIENT)");
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &header, data))
		return failed(call, "capget");
	/* never more than we have: permitted only ever shrinks */
	data[0].effective = data[0].permitted = data[0].permitted & (uint32_t)keep;
	data[1].effective = data[1].permitted = data[1].permitted & (uint32_t)(keep >> 32);
	data[0].inheritable = data[1].inheritable = 0;
	if (syscall(SYS_capset, &header, data))
		return failed(call, "capset");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return failed(call, "prctl(PR_SET_NO_NEW_PRIVS)");
	return 0;
}

uint64_t ht_effective_capabilities(int *err)
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &header, data)) {
		*err = -errno;
		return 0;
	}
	*err = 0;
	return (uint64_t)data[1].effective << 32 | data[0].effective;
}
