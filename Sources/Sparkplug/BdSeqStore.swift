import Foundation

/// Keeps the last bdSeq used in a CONNECT across restarts, so that the next session's NBIRTH/NDEATH pair is
/// told apart from the previous one's by the host (a stale NDEATH from an old session must not kill a new one).
public protocol BdSeqStore: Sendable {
    /// The last bdSeq written, or nil if none (the first session then uses 0).
    func load() -> UInt8?
    func save(_ bdSeq: UInt8) throws
}

/// Stores bdSeq as a decimal line in a small file, replaced atomically (write to a temp file, fsync, rename) so a
/// power cut leaves either the old or the new value, never a torn one.
public struct FileBdSeqStore: BdSeqStore {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// An unreadable or corrupt file reads as "no value": the node then starts again at 0, which hosts accept.
    public func load() -> UInt8? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return UInt8(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    public func save(_ bdSeq: UInt8) throws {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: tmp, "errno": errno])
        }
        let line = Array("\(bdSeq)\n".utf8)
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == line.count, synced == 0, rename(tmp, path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path, "errno": errno])
        }
    }
}
