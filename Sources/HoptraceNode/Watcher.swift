import CHoptraceNetns
import Glibc

/// Tells when the node's devices or namespaces may have changed, without polling
/// them: link notifications (RTM_NEWLINK, RTM_DELLINK) from a NETLINK_ROUTE socket
/// joined to RTNLGRP_LINK inside each namespace it is given, and inotify on
/// `<root>/run/netns` for namespaces named or removed by `ip netns` and CNI plugins.
/// A pod's veth appears in the host namespace (or the namespace of its bridge),
/// which is watched, before the pod's own namespace is known; the agent reads the
/// node again on any change and watches the namespaces it then finds.
///
/// One thread uses it (the agent's): `watch` and `wait` are not synchronised.
public final class NodeWatcher {
    private var sockets: [String: Int32] = [:]  // namespace path -> socket
    private var inotify: Int32 = -1
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 8)

    /// Watches `<root>/run/netns` if it exists (it is made by the first `ip netns add`;
    /// until then new namespaces are seen by the links that join them).
    public init(root: String = "/") {
        let dir = (root.hasSuffix("/") ? root : root + "/") + "run/netns"
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        if fd >= 0 {
            if inotify_add_watch(fd, dir, UInt32(IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM)) >= 0 {
                inotify = fd
            } else {
                close(fd)
            }
        }
    }

    deinit {
        for fd in sockets.values { close(fd) }
        if inotify >= 0 { close(inotify) }
        buffer.deallocate()
    }

    /// Namespaces watched now (their paths).
    public var watched: [String] { Array(sockets.keys) }

    /// Watches the links of `namespaces` (by the path that opens each) and stops
    /// watching those no longer listed. One that cannot be entered is left out.
    public func watch(namespaces: [NetnsInfo]) {
        let wanted = Set(namespaces.map(\.path))
        for (path, fd) in sockets where !wanted.contains(path) {
            close(fd)
            sockets[path] = nil
        }
        for path in wanted where sockets[path] == nil {
            if let fd = Self.linkNotifications(in: path) { sockets[path] = fd }
        }
    }

    /// A NETLINK_ROUTE socket in the namespace at `path` that receives link changes.
    private static func linkNotifications(in path: String) -> Int32? {
        let type = Int32(SOCK_RAW.rawValue | SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), netlinkRoute: Int32 = 0
        let fd = ht_socket_in_netns(path, AF_NETLINK, type, netlinkRoute)
        guard fd >= 0 else { return nil }
        let rtmgrpLink: UInt32 = 1 // RTM_NEWLINK and RTM_DELLINK of every device
        guard ht_netlink_join(fd, rtmgrpLink) == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Waits up to `timeoutMs` for a change; true when one came (every notification
    /// waiting is read, so one change wakes the caller once). A socket that overran
    /// (ENOBUFS: changes were lost) counts as a change.
    public func wait(timeoutMs: Int32) -> Bool {
        var fds = sockets.values.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        if inotify >= 0 { fds.append(pollfd(fd: inotify, events: Int16(POLLIN), revents: 0)) }
        guard !fds.isEmpty else {
            usleep(useconds_t(max(0, timeoutMs)) * 1000)
            return false
        }
        let n = poll(&fds, nfds_t(fds.count), timeoutMs)
        guard n > 0 else { return false }
        var changed = false
        for p in fds where p.revents != 0 {
            while true {
                let got = read(p.fd, buffer.baseAddress, buffer.count)
                if got > 0 { changed = true; continue }
                if got < 0 && errno == ENOBUFS { changed = true; continue }
                break
            }
        }
        return changed
    }
}
