import Foundation
import TestSupport
import Testing

/// Long-lived test peers (agent, broker, simulators) are started while other tests run commands in parallel. A peer
/// that inherits another test's pipe keeps that pipe open until the peer exits, so the other test waits for an EOF
/// that cannot come; two such tests wait for each other for ever (seen as a hung parallel run).
@Suite struct SpawnedProcessTests {
    @Test func aSpawnedPeerInheritsNoDescriptorBeyondItsStandardStreams() throws {
        let dir = try TemporaryDirectory("edgepilot-spawn")
        defer { dir.remove() }
        let pipe = Pipe()  // as runCommand's pipes are: not close-on-exec
        defer {
            try? pipe.fileHandleForReading.close()
            try? pipe.fileHandleForWriting.close()
        }
        let peer = try SpawnedProcess("/bin/sleep", ["30"], output: dir.path + "/sleep.log")
        defer { peer.terminate(grace: 1) }
        // The peer may hold a descriptor of its own for a moment while it starts (sleep reads its locale), so
        // the check waits for the set to settle; an inherited descriptor never goes away while the peer runs.
        func fds() -> [Int32] {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(peer.pid)/fd")) ?? []).compactMap(
                Int32.init
            ).sorted()
        }
        #expect(eventually(timeout: 5) { fds() == [0, 1, 2] }, "descriptors the peer holds: \(fds())")
    }
}
