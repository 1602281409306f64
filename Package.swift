// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "hoptrace",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "hoptrace", targets: ["hoptrace"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // The shared ABI header (records, segments, counters), used by BPF, C and the tests.
        .target(name: "CHoptraceABI"),
        // The only code that touches libbpf; embeds the precompiled BPF object (skeleton).
        .target(
            name: "CHoptraceBPF",
            dependencies: ["CHoptraceABI", "CHoptraceNetns"],
            linkerSettings: [.linkedLibrary("bpf"), .linkedLibrary("elf"), .linkedLibrary("z")]
        ),
        // setns() for Swift (Glibc hides it behind _GNU_SOURCE), and sockets made inside a
        // network namespace (for discovery over rtnetlink).
        .target(name: "CHoptraceNetns"),
        // Pure Swift: records, flows, hops, histograms, name tables, reports. No C, no CLI.
        .target(name: "HoptraceCore"),
        // Node discovery: namespaces (/proc, /run/netns), devices and veth peers, device
        // selection, and the process runner. Swift over the setns shim; no libbpf, no CLI.
        .target(name: "HoptraceNode", dependencies: ["HoptraceCore", "CHoptraceNetns"]),
        // zlib (chunk checksums, version 1 chunks) and zstd (chunk payloads) for recordings.
        .systemLibrary(name: "CZlib"),
        .systemLibrary(name: "CZstd"),
        // Recordings: the chunked, checksummed, compressed trace file; windows; comparison.
        .target(name: "HoptraceRecording", dependencies: ["HoptraceCore", "CZlib", "CZstd"]),
        // Owns the loaded BPF object, its links and the drain thread; a trace session
        // (windows, recording, flight recorder) shared by every command and the agent.
        .target(name: "HoptraceTracer", dependencies: ["HoptraceCore", "HoptraceNode", "HoptraceRecording", "CHoptraceBPF"]),
        // Prometheus exposition (text 0.0.4, OpenMetrics, native histograms over protobuf)
        // of the agent's snapshot. Pure Swift over Core: tested without root.
        .target(name: "HoptraceMetrics", dependencies: ["HoptraceCore"]),
        // prctl and capset for Swift: the agent keeps only the capabilities it needs.
        .target(name: "CHoptracePrivileges"),
        // The node agent (`hoptrace serve`): a session that follows the node's devices,
        // a CPU budget, triggers, incident files and the metrics snapshot it serves.
        .target(name: "HoptraceAgent",
                dependencies: ["HoptraceCore", "HoptraceNode", "HoptraceTracer", "HoptraceRecording", "HoptraceMetrics",
                               "CHoptracePrivileges"]),
        // The agent's HTTP server (/metrics, /healthz, /report, /incidents, POST /trigger):
        // one thread polling non-blocking sockets, bounded per client. Foundation and Glibc only.
        .target(name: "HoptraceHTTP"),
        // What people look at: the live view of `hoptrace top` (interval figures, the
        // screen as lines, JSON lines) and the self-contained HTML of `report --html` and
        // `compare --html` (inline SVG). Pure Swift over Core and Recording: tested without root.
        .target(name: "HoptraceViews", dependencies: ["HoptraceCore", "HoptraceRecording"]),
        // Namespace labs and built-in traffic for demo, tests and benchmarks.
        .target(name: "HoptraceLab", dependencies: ["HoptraceCore", "HoptraceNode", "CHoptraceNetns"]),
        .target(
            name: "HoptraceCLI",
            dependencies: [
                "HoptraceCore", "HoptraceNode", "HoptraceTracer", "HoptraceLab", "HoptraceRecording",
                "HoptraceAgent", "HoptraceHTTP", "HoptraceMetrics", "HoptraceViews",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "hoptrace", dependencies: ["HoptraceCLI"]),
        // `make bench`: overhead and consumer speed, as ratios against baselines in one run.
        .executableTarget(name: "hoptrace-bench",
                         dependencies: ["HoptraceCore", "HoptraceNode", "HoptraceTracer", "HoptraceLab", "HoptraceRecording",
                                        "HoptraceMetrics", "HoptraceHTTP", "HoptraceViews"]),
        // What every test target shares: the rule for a test that cannot run here.
        .target(name: "HoptraceTestSupport", path: "Tests/HoptraceTestSupport"),
        .testTarget(name: "HoptraceCoreTests", dependencies: ["HoptraceCore", "CHoptraceABI"]),
        .testTarget(name: "HoptraceNodeTests", dependencies: ["HoptraceCore", "HoptraceNode"], resources: [.copy("Fixtures")]),
        .testTarget(name: "HoptraceAgentTests", dependencies: ["HoptraceAgent"]),
        .testTarget(name: "HoptraceMetricsTests", dependencies: ["HoptraceCore", "HoptraceMetrics", "HoptraceTestSupport"]),
        // The views: the live screen and its keys, interval figures, the HTML pages
        // (a golden test of chart geometry; headless Chromium opens them, network off).
        // Golden/: the pages of the fixture, read by path (#filePath), not bundled.
        .testTarget(name: "HoptraceViewsTests",
                    dependencies: ["HoptraceCore", "HoptraceRecording", "HoptraceViews", "HoptraceTestSupport", "CZlib"],
                    exclude: ["Golden"]),
        .testTarget(name: "HoptraceRecordingTests", dependencies: ["HoptraceCore", "HoptraceRecording", "HoptraceTestSupport"]),
        // The HTTP server over loopback (no root): parsing, limits, slow clients, stop.
        .testTarget(name: "HoptraceHTTPTests", dependencies: ["HoptraceHTTP"]),
        // The deployment files (deploy/): the DaemonSet against the Kubernetes schemas,
        // the systemd unit through systemd-analyze, both against deploy/capabilities.
        // Reads files and runs those tools only: it needs no other target.
        .testTarget(name: "HoptraceDeployTests", dependencies: ["HoptraceTestSupport"]),
        .testTarget(
            name: "HoptraceIntegrationTests",
            dependencies: ["HoptraceCore", "HoptraceNode", "HoptraceTracer", "HoptraceLab", "HoptraceRecording", "HoptraceTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
