import Glibc

/// Reads the node's namespaces and devices (needs root to enter other namespaces).
public enum Discovery {
    /// Every network namespace we can see, with the devices in each, read over
    /// rtnetlink from a socket made inside each namespace (no process per namespace).
    /// Runs on the calling thread, which is back in its own namespace on return. A
    /// namespace that goes away during the scan is left out; one we may not enter
    /// (not root) is listed without devices.
    public static func topology(root: String = "/") -> NodeTopology {
        let here = NamespaceScanner.inode(ofNetnsFile: "/proc/thread-self/ns/net")
        var namespaces: [NetnsInfo] = [], links: [UInt32: [LinkMessage]] = [:]
        for ns in NamespaceScanner(root: root).scan() {
            do throws(NetlinkError) {
                // our own namespace needs no setns (nor the rights for it); asked of the
                // file itself, which may have gone since the scan
                let isOurs = here != nil && NamespaceScanner.inode(ofNetnsFile: ns.path) == here
                let socket = try RouteSocket(netnsPath: isOurs ? nil : ns.path)
                links[ns.inode] = try socket.links()
            } catch where [ENOENT, ESRCH].contains(error.code) {
                continue // its process exited, or its name was deleted
            } catch {
                // not ours to enter (not root): listed by name, without devices
            }
            namespaces.append(ns)
        }
        return NodeTopology(namespaces: namespaces, links: links)
    }
}
