#!/usr/bin/env bash
# Rebuilds the BPF skeleton from the sources into a scratch folder and compares it
# with the committed one: the embedded object must be what the sources compile to.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CLANG=${CLANG:-/opt/swift/usr/bin/clang}
$CLANG -g -O2 -target bpf -D__TARGET_ARCH_x86 -I bpf -I Sources/CHoptraceABI/include \
  -c bpf/hoptrace.bpf.c -o "$tmp/raw.o"
bpftool gen object "$tmp/hoptrace.bpf.o" "$tmp/raw.o"
bpftool gen skeleton "$tmp/hoptrace.bpf.o" name hoptrace_bpf > "$tmp/skel.h"
if ! cmp -s "$tmp/skel.h" Sources/CHoptraceBPF/hoptrace.skel.h; then
  echo "bpf-check: Sources/CHoptraceBPF/hoptrace.skel.h does not match bpf/*.bpf.c; run 'make bpf' and commit" >&2
  exit 1
fi
echo "bpf-check: embedded BPF object matches the sources"
