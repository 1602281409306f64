/* Compile-time checks of the ABI layout the Swift decoder relies on. */
#include <stddef.h>
#include "hoptrace_abi.h"

_Static_assert(sizeof(struct ht_flow_key) == 40, "ht_flow_key layout");
_Static_assert(sizeof(struct ht_hop_record) == 96, "ht_hop_record layout");
_Static_assert(offsetof(struct ht_hop_record, flow) == 56, "ht_hop_record.flow offset");
