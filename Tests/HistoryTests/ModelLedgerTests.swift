import Foundation
import History
import TestSupport
import Testing

/// The model ledger on a real SQLite file: versions by content hash, activations in order, rollback walking back,
/// and everything still there after the file is closed and opened again.
@Suite struct ModelLedgerTests {
    func candidate(_ loop: String, _ hash: String, source: String = "file", fit: Double? = nil) -> ModelVersion {
        ModelVersion(
            loop: loop, hash: hash, source: source, content: "{\"hash\":\"\(hash)\"}", window: fit == nil ? nil : "w",
            dataHash: fit == nil ? nil : "d", fitPercent: fit, fitDetail: fit.map { "cv \($0) %" },
            createdAt: 1_000, createdBy: "cli:uid=1000,user=op", note: "n")
    }

    @Test("The same content registered twice is one version; other loops and other content are new versions")
    func registersByHash() throws {
        let dir = try TemporaryDirectory("ledger-tests")
        defer { dir.remove() }
        let ledger = try ModelLedger(path: dir.path + "/history.db")
        let (a, createdA) = try ledger.register(candidate("tanks", "aaaa"))
        let (again, createdAgain) = try ledger.register(candidate("tanks", "aaaa", source: "identify", fit: 90))
        let (b, createdB) = try ledger.register(candidate("tanks", "bbbb", source: "identify", fit: 91.5))
        let (other, createdOther) = try ledger.register(candidate("boiler", "aaaa"))
        #expect(createdA && !createdAgain && createdB && createdOther)
        #expect(again == a, "the first registration's provenance is kept")
        #expect(Set([a.id, b.id, other.id]).count == 3)
        #expect(try ledger.versions(loop: "tanks").map(\.id) == [a.id, b.id])
        let stored = try #require(try ledger.version(id: b.id))
        #expect(stored.source == "identify" && stored.fitPercent == 91.5 && stored.fitDetail == "cv 91.5 %")
        #expect(stored.window == "w" && stored.dataHash == "d" && stored.createdBy == "cli:uid=1000,user=op")
        #expect(try ledger.version(id: 999) == nil)
    }

    @Test("Activations are kept newest first; rollback walks back through them; all survive reopening the file")
    func activationsAndRollback() throws {
        let dir = try TemporaryDirectory("ledger-tests")
        defer { dir.remove() }
        let path = dir.path + "/history.db"
        var ledger = try ModelLedger(path: path)
        #expect(try ledger.active(loop: "tanks") == nil)
        #expect(try ledger.rollbackTarget(loop: "tanks") == nil, "nothing to roll back to")
        let v1 = try ledger.register(candidate("tanks", "1")).version.id
        let v2 = try ledger.register(candidate("tanks", "2")).version.id
        let v3 = try ledger.register(candidate("tanks", "3")).version.id
        try ledger.recordActivation(loop: "tanks", version: v1, previous: nil, by: "config", action: "config", at: 1)
        try ledger.recordActivation(loop: "tanks", version: v2, previous: v1, by: "cli", action: "activate", at: 2)
        try ledger.recordActivation(
            loop: "tanks", version: v3, previous: v2, by: "cli", action: "activate", forced: true, note: "try", at: 3)
        #expect(try ledger.active(loop: "tanks")?.version == v3)

        // First rollback: back to v2; the one after that must go to v1, not toggle back to v3.
        let first = try #require(try ledger.rollbackTarget(loop: "tanks"))
        #expect(first.version == v2 && first.previous == v1)
        try ledger.recordActivation(
            loop: "tanks", version: first.version, previous: first.previous, by: "cli", action: "rollback", at: 4)
        let second = try #require(try ledger.rollbackTarget(loop: "tanks"))
        #expect(second.version == v1 && second.previous == nil)
        try ledger.recordActivation(
            loop: "tanks", version: second.version, previous: second.previous, by: "cli", action: "rollback", at: 5)
        #expect(try ledger.rollbackTarget(loop: "tanks") == nil, "back at the first model")

        try ledger.setConfigVersion(loop: "tanks", version: v1)
        try ledger.setConfigVersion(loop: "tanks", version: v2)
        ledger.close()

        ledger = try ModelLedger(path: path)
        let history = try ledger.activations(loop: "tanks")
        #expect(history.map(\.version) == [v1, v2, v3, v2, v1])
        #expect(history.map(\.action) == ["rollback", "rollback", "activate", "activate", "config"])
        #expect(history[2].forced && history[2].note == "try" && !history[3].forced)
        #expect(try ledger.configVersion(loop: "tanks") == v2)
        #expect(try ledger.configVersion(loop: "boiler") == nil)
        #expect(try ledger.activations(loop: "boiler").isEmpty)
    }

    @Test("A history file of schema version 3 is upgraded in place and keeps its samples")
    func upgradesAnOlderFile() throws {
        let dir = try TemporaryDirectory("ledger-tests")
        defer { dir.remove() }
        let path = dir.path + "/history.db"
        let store = try HistoryStore(path: path)
        try store.append([HistoryRow(tag: "t", timestamp: 1, value: .real(1), quality: .good)])
        store.close()
        // Back to version 3, as a file written by the previous release.
        try RawDatabase(path).execute(
            "DROP TABLE model_shadow; DROP TABLE plant_tests; DROP TABLE model_activations; DROP TABLE model_versions; "
                + "DROP TABLE model_config; "
                + "PRAGMA user_version = 3;")
        let ledger = try ModelLedger(path: path)
        _ = try ledger.register(candidate("tanks", "x"))
        ledger.close()
        let raw = try RawDatabase(path)
        #expect(raw.int("PRAGMA user_version") == Int64(HistorySchema.currentVersion))
        #expect(raw.int("SELECT count(*) FROM samples") == 1)
        #expect(raw.int("SELECT count(*) FROM model_versions") == 1)
    }

    @Test("The shadow version is stored per loop with the configuration's, off included, and survives a reopen")
    func storesTheShadow() throws {
        let dir = try TemporaryDirectory("ledger-tests")
        defer { dir.remove() }
        let path = dir.path + "/history.db"
        var ledger = try ModelLedger(path: path)
        let v = try ledger.register(candidate("tanks", "x")).version.id
        #expect(try ledger.shadow(loop: "tanks") == nil)
        try ledger.setShadow(loop: "tanks", version: v, configVersion: nil, by: "cli:uid=0", at: 10)
        ledger.close()
        ledger = try ModelLedger(path: path)
        defer { ledger.close() }
        var stored = try #require(try ledger.shadow(loop: "tanks"))
        #expect(stored.version == v && stored.configVersion == nil)
        try ledger.setShadow(loop: "tanks", version: nil, configVersion: v, by: "config", at: 20)
        stored = try #require(try ledger.shadow(loop: "tanks"))
        #expect(stored.version == nil && stored.configVersion == v)
        #expect(try ledger.shadow(loop: "boiler") == nil)
    }

    @Test("A history file of schema version 5 gains the shadow table and keeps its ledger")
    func upgradesALedgerFile() throws {
        let dir = try TemporaryDirectory("ledger-tests")
        defer { dir.remove() }
        let path = dir.path + "/history.db"
        var ledger = try ModelLedger(path: path)
        let v = try ledger.register(candidate("tanks", "x")).version.id
        ledger.close()
        try RawDatabase(path).execute("DROP TABLE model_shadow; PRAGMA user_version = 5;")
        ledger = try ModelLedger(path: path)
        defer { ledger.close() }
        try ledger.setShadow(loop: "tanks", version: v, configVersion: nil, by: "cli:uid=0", at: 10)
        #expect(try ledger.shadow(loop: "tanks")?.version == v)
        #expect(try ledger.versions(loop: "tanks").map(\.id) == [v])
    }
}
