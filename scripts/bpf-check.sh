#!/usr/bin/env bash
# Rebuilds the BPF skeleton from the sources into a scratch folder (the Makefile's
# own rule) and compares it with the committed one: the embedded object must be
# what the sources compile to.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s --always-make bpf BPF_OUT="$tmp" SKEL="$tmp/skel.h" >/dev/null
if ! cmp -s "$tmp/skel.h" Sources/CHoptraceBPF/hoptrace.skel.h; then
  echo "bpf-check: Sources/CHoptraceBPF/hoptrace.skel.h does not match bpf/ (hoptrace.bpf.c and its parts); run 'make bpf' and commit" >&2
  exit 1
fi
echo "bpf-check: embedded BPF object matches the sources"
