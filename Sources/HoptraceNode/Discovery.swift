import Foundation
import HoptraceCore

/// Reads the node's namespaces and devices (needs root to enter other namespaces).
public enum Discovery {
    /// Every network namespace we can see, with the devices in each (`ip -json -details link`).
    public static func topology(root: String = "/") -> NodeTopology {
        let namespaces = NamespaceScanner(root: root).scan()
        var links: [UInt32: [IPLink]] = [:]
        for ns in namespaces {
            let args: [String] = ns.kind == .named
                ? ["ip", "-n", ns.name, "-json", "-details", "link", "show"]
                : ["nsenter", "--net=\(ns.path)", "ip", "-json", "-details", "link", "show"]
            guard let text = try? Command.run(args),
                  let parsed = try? JSONDecoder().decode([IPLink].self, from: Data(text.utf8)) else { continue }
            links[ns.inode] = parsed
        }
        return NodeTopology(namespaces: namespaces, links: links)
    }
}
