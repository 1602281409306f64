/* CZstd: zstd for the recording format's chunk payloads (Debian's libzstd-dev).
 * The shim exists because SwiftPM needs a header to build a system library module from. */
#include <zstd.h>
