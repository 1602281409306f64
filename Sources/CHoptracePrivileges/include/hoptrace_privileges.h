/* CHoptracePrivileges: what a long-running hoptrace keeps of root's powers.
 *
 * prctl(2) is variadic and capset(2) has no libc wrapper, so Swift cannot call
 * them; this shim does, and decides nothing: the caller says what to keep. */
#ifndef HOPTRACE_PRIVILEGES_H
#define HOPTRACE_PRIVILEGES_H

#include <stdint.h>

/* Keeps only the capabilities in `keep` (bit N = capability N) in the effective
 * and permitted sets, clears the inheritable and ambient sets, drops the others
 * from the bounding set where allowed (it needs CAP_SETPCAP, which a process
 * started with a reduced set may lack: its bounding set is already the smaller
 * one), and sets no_new_privs. Returns 0, or a negative errno (and what failed in
 * `call`, at least 32 bytes). */
int ht_keep_capabilities(uint64_t keep, char *call);

/* The effective capabilities of the calling thread (bit N = capability N), or 0
 * and a negative errno in *err. */
uint64_t ht_effective_capabilities(int *err);

#endif
