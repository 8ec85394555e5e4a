import Foundation

/// A small tmpfs of its own, so a test can fill a real filesystem to the last byte under a running agent. Mounting
/// needs root, as the test command has (CI runs it as root); `unmount()` detaches it lazily, so a file still open in a
/// stopped agent cannot keep it mounted.
public final class SmallVolume {
    public let path: String
    private let dir: TemporaryDirectory
    private var filler: String { path + "/filler" }

    public init(megabytes: Int = 4, prefix: String = "edgepilot-volume") throws {
        dir = try TemporaryDirectory(prefix)
        path = dir.path + "/volume"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let mount = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path])
        guard mount.status == 0 else {
            dir.remove()
            throw PeerError("mounting a tmpfs needs root: \(mount.stderr)")
        }
    }

    /// Writes one file until the volume has no byte left.
    public func fill() throws {
        FileManager.default.createFile(atPath: filler, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: filler) else { throw PeerError("cannot open \(filler)") }
        // Large writes first, then small ones for what a large one could not take.
        for size in [64 * 1024, 512] {
            let chunk = Data(count: size)
            while (try? handle.write(contentsOf: chunk)) != nil {}
        }
        try? handle.close()
    }

    /// Gives back the space `fill()` took.
    public func free() throws { try FileManager.default.removeItem(atPath: filler) }

    public func unmount() {
        _ = try? runCommand("/bin/umount", ["-l", path])
        dir.remove()
    }
}
