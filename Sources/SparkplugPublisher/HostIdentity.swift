import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What NBIRTH says about the box the agent runs on (`Properties/Hardware Make`, `Hardware Model`, `OS`,
/// `OS Version`), the node properties MQTT Engine shows for an edge node. Read once at start: none of it changes
/// while the agent runs, and a rebirth must not differ from the birth before it.
///
/// Every field is empty-safe: a container or a board without DMI has no `/sys/class/dmi/id`, a minimal image may
/// lack `/etc/os-release`; the metric is then an empty string, never absent, so the NBIRTH's metric set does not
/// depend on the box.
package struct HostIdentity: Sendable, Equatable {
    package var hardwareMake: String
    package var hardwareModel: String
    package var os: String
    package var osVersion: String

    package init(hardwareMake: String, hardwareModel: String, os: String, osVersion: String) {
        self.hardwareMake = hardwareMake
        self.hardwareModel = hardwareModel
        self.os = os
        self.osVersion = osVersion
    }

    /// Reads the box under `root` (a test passes a directory laid out like `/`): DMI vendor and product name,
    /// os-release's PRETTY_NAME and VERSION_ID, falling back to the kernel's name and release (uname) when
    /// os-release says nothing.
    package static func read(root: String = "") -> HostIdentity {
        func file(_ path: String) -> String {
            guard let text = try? String(contentsOfFile: root + path, encoding: .utf8) else { return "" }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        var release = parseOSRelease(file("/etc/os-release"))
        if release.isEmpty { release = parseOSRelease(file("/usr/lib/os-release")) }
        var os = release["PRETTY_NAME"] ?? release["NAME"] ?? ""
        var version = release["VERSION_ID"] ?? ""
        if os.isEmpty || version.isEmpty {
            let kernel: (name: String, release: String) =
                root.isEmpty ? uname() : (file("/proc/sys/kernel/ostype"), file("/proc/sys/kernel/osrelease"))
            if os.isEmpty { os = kernel.name }
            if version.isEmpty { version = kernel.release }
        }
        return HostIdentity(
            hardwareMake: file("/sys/class/dmi/id/sys_vendor"), hardwareModel: file("/sys/class/dmi/id/product_name"),
            os: os, osVersion: version)
    }

    /// os-release's `KEY=value` lines; values may be quoted (shell rules, only the quoting this file uses).
    package static func parseOSRelease(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let l = line.trimmingCharacters(in: .whitespaces)
            guard !l.hasPrefix("#"), let eq = l.firstIndex(of: "=") else { continue }
            var value = String(l[l.index(after: eq)...])
            if value.count >= 2, let q = value.first, q == "\"" || q == "'", value.last == q {
                value = String(value.dropFirst().dropLast())
                if q == "\"" {
                    value = value.replacingOccurrences(of: "\\\"", with: "\"").replacingOccurrences(
                        of: "\\\\", with: "\\")
                }
            }
            out[String(l[..<eq])] = value
        }
        return out
    }

    private static func uname() -> (name: String, release: String) {
        var u = utsname()
        guard Glibc.uname(&u) == 0 else { return ("", "") }
        func text<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
        return (text(u.sysname), text(u.release))
    }
}
