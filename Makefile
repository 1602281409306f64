# hoptrace: make deps | bpf | build | release | install | test | demo | bench
SWIFT ?= /opt/swift/usr/bin/swift
CLANG ?= /opt/swift/usr/bin/clang
BPFTOOL ?= bpftool
CONFIG ?= release
BIN := .build/$(CONFIG)/hoptrace
ABI := Sources/CHoptraceABI/include
SKEL ?= Sources/CHoptraceBPF/hoptrace.skel.h
BPF_OUT ?= bpf
# -fdebug-compilation-dir: no checkout path in the object, so it is the same from any clone
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_x86 -fdebug-compilation-dir=.
# one compilation unit, hoptrace.bpf.c, and the parts it includes (bpf/*.bpf.h)
BPF_SRC := bpf/hoptrace.bpf.c $(wildcard bpf/*.bpf.h) bpf/vmlinux.h $(ABI)/hoptrace_abi.h
# the C module as SwiftPM builds it (every .c of the target and of CHoptraceNetns), for the bench's C consumer
CMODULE_SRC := $(wildcard Sources/CHoptraceBPF/*.c Sources/CHoptraceNetns/*.c)

.PHONY: all deps bpf bpf-check vmlinux build release install test unit integration demo bench clean

all: build

# Installs what is missing; does nothing when everything is there.
deps:
	@scripts/deps.sh

# Compile the BPF programs (CO-RE, against the committed vmlinux.h) and embed the
# object in the C module as a libbpf skeleton. Both outputs are committed.
bpf: $(SKEL)

$(SKEL): $(BPF_SRC)
	$(CLANG) $(BPF_CFLAGS) -I bpf -I $(ABI) -c bpf/hoptrace.bpf.c -o $(BPF_OUT)/hoptrace.tmp.o
	$(BPFTOOL) gen object $(BPF_OUT)/hoptrace.bpf.o $(BPF_OUT)/hoptrace.tmp.o
	rm -f $(BPF_OUT)/hoptrace.tmp.o
	$(BPFTOOL) gen skeleton $(BPF_OUT)/hoptrace.bpf.o name hoptrace_bpf > $@.tmp && mv $@.tmp $@

# Fails when the committed skeleton does not match the sources.
bpf-check:
	@scripts/bpf-check.sh

# Regenerate bpf/vmlinux.h from this kernel's BTF (rarely needed: CO-RE relocates).
vmlinux:
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux.h

build: deps
	$(SWIFT) build -c $(CONFIG)

# The binary to ship (deploy/Containerfile, deploy/systemd): the Swift runtime and
# Foundation linked in statically, so a node needs only glibc, libstdc++, libbpf,
# libelf, zlib and libzstd. Fails if any Swift library is still linked dynamically.
RELEASE_BIN := .build/release/hoptrace
# prints the binary's libraries; fails if one of them is the Swift runtime's
STATIC_CHECK = ldd $(RELEASE_BIN); \
	if ldd $(RELEASE_BIN) | grep -E 'libswift|libFoundation|lib_Foundation|libdispatch|libBlocksRuntime'; then \
		echo "$(RELEASE_BIN): links the Swift runtime dynamically: run 'make release'" >&2; exit 1; fi
release: deps
	$(SWIFT) build -c release --static-swift-stdlib --product hoptrace
	@$(STATIC_CHECK); echo "release: $(RELEASE_BIN), $$(stat -c %s $(RELEASE_BIN)) bytes, no Swift library linked dynamically"

# The binary `make release` made, and the systemd unit. Builds nothing and installs no
# packages (a node needs no toolchain); refuses a binary that is not statically linked
# (`make build` makes one that needs the toolchain's libraries). The unit runs
# /usr/local/bin/hoptrace, so the path is fixed; DESTDIR stages into a package root.
install:
	@test -x $(RELEASE_BIN) || { echo "install: no $(RELEASE_BIN): run 'make release' first" >&2; exit 1; }
	@{ $(STATIC_CHECK); } >/dev/null
	install -D -m 0755 $(RELEASE_BIN) $(DESTDIR)/usr/local/bin/hoptrace
	install -D -m 0644 deploy/systemd/hoptrace.service $(DESTDIR)/etc/systemd/system/hoptrace.service
	@echo "install: done; start it with: systemctl daemon-reload && systemctl enable --now hoptrace"

# Unit tests (no root) and integration tests (root, real BPF, namespace labs).
test: deps bpf-check
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-swift-testing

unit: deps
	$(SWIFT) test --filter 'HoptraceCoreTests|HoptraceNodeTests'

integration: deps
	$(SWIFT) test --filter HoptraceIntegrationTests

demo: build
	$(BIN) demo

# BENCH_ARGS=--pinned-only: only the per-packet cost of each observer (about 4 minutes; ROUNDS=5).
bench: build bench/c_consumer.c bench/udp_pps.c bench/bare_tc.c bench/bare_tc.bpf.c
	mkdir -p .build/bench
	cc -O2 -o .build/bench/c_consumer bench/c_consumer.c $(CMODULE_SRC) \
		-I Sources/CHoptraceBPF -I Sources/CHoptraceBPF/include -I Sources/CHoptraceNetns/include -I $(ABI) \
		-lbpf -lelf -lz -lpthread
	cc -O2 -Wall -o .build/bench/udp_pps bench/udp_pps.c -lpthread
	cc -O2 -Wall -o .build/bench/bare_tc bench/bare_tc.c -lbpf -lelf -lz
	$(CLANG) $(BPF_CFLAGS) -I bpf -c bench/bare_tc.bpf.c -o .build/bench/bare_tc.bpf.o
	.build/$(CONFIG)/hoptrace-bench --repeats $${REPEATS:-7} --seconds $${SECONDS_PER_RUN:-4} \
		--rounds $${ROUNDS:-5} $(BENCH_ARGS)

clean:
	rm -rf .build bpf/*.o
