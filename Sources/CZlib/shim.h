/* CZlib: zlib for the recording format (Debian's zlib1g-dev). The shim exists
 * because SwiftPM needs a header to build a system library module from. */
#include <zlib.h>
