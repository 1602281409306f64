#!/usr/bin/env bash
# Installs the Debian packages hoptrace builds, tests and benchmarks with.
# Idempotent: packages already installed are left alone, and apt is not touched
# when nothing is missing.
set -euo pipefail
# systemd: systemd-analyze, for the test that verifies deploy/systemd/hoptrace.service
# chromium and fonts-dejavu-core: the tests that open report/compare --html headless
# tmux: the test that drives `hoptrace top` full-screen
pkgs=(libbpf-dev libelf-dev zlib1g-dev libzstd-dev bpftool iproute2 iperf3 sockperf util-linux
      nftables bpftrace tcpdump ethtool python3-pip prometheus systemd chromium fonts-dejavu-core tmux)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${missing[*]}; run 'sudo make deps'" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# HdrHistogram's Python port: the test that hdrlog exports read back in HdrHistogram
python3 -c 'import hdrh.histogram' 2>/dev/null || {
  echo "deps: installing the hdrhistogram Python package"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore hdrhistogram
}
# the Kubernetes schemas, offline: the test that validates deploy/kubernetes/hoptrace.yaml
command -v kubernetes-validate >/dev/null || {
  echo "deps: installing the kubernetes-validate Python package"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore kubernetes-validate
}
[ -x /opt/swift/usr/bin/swift ] || command -v swift >/dev/null || {
  echo "deps: no Swift toolchain (expected /opt/swift/usr/bin/swift)" >&2; exit 1; }
