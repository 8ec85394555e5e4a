import Foundation
import History
import TestSupport
import Testing

/// Plant tests in the history file (schema v5, decision 0034): a row at the start, completed at the end, listed
/// newest first per loop, readable by `identify` through a read-only reader, and a v4 file upgraded in place.
@Suite struct PlantTestRecordTests {
    func started(_ loop: String, at time: Int64) -> PlantTestRecord {
        PlantTestRecord(
            loop: loop, startedAt: time, mvs: ["pump1/voltage", "pump2/voltage"], signal: "gbn",
            seed: UInt64.max - 7, startedBy: "cli:uid=1000,user=op", outcome: "running", detail: "{\"a\":1}")
    }

    @Test func aTestIsRecordedAtItsStartCompletedAtItsEndAndReadBackByAReader() throws {
        let dir = try TemporaryDirectory("plant-test-records")
        defer { dir.remove() }
        let path = dir.path + "/history.db"
        let ledger = try ModelLedger(path: path)
        let first = try ledger.recordTestStart(started("tanks", at: 1_000))
        let other = try ledger.recordTestStart(started("boiler", at: 1_500))
        let second = try ledger.recordTestStart(started("tanks", at: 2_000))
        #expect(first.id != second.id && other.id != first.id)
        try ledger.recordTestEnd(
            id: first.id, endedAt: 1_900, outcome: "aborted", reason: "plant test aborted: CV x", detail: nil)

        let tanks = try ledger.tests(loop: "tanks")
        #expect(tanks.map(\.id) == [second.id, first.id])
        let ended = try #require(try ledger.test(id: first.id))
        #expect(ended.endedAt == 1_900 && ended.outcome == "aborted" && ended.reason == "plant test aborted: CV x")
        #expect(ended.seed == UInt64.max - 7 && ended.mvs == ["pump1/voltage", "pump2/voltage"])
        #expect(ended.detail == "{\"a\":1}", "a nil detail keeps the one recorded at the start")
        #expect(try ledger.test(id: second.id)?.endedAt == nil)
        ledger.close()

        let reader = try HistoryReader(path: path)
        defer { reader.close() }
        #expect(try reader.plantTest(id: first.id) == ended)
        #expect(try reader.plantTest(id: 999) == nil)
    }

    @Test func aVersion4FileIsUpgradedInPlace() throws {
        let dir = try TemporaryDirectory("plant-test-records")
        defer { dir.remove() }
        let path = dir.path + "/history.db"
        let store = try HistoryStore(path: path)
        try store.append([HistoryRow(tag: "t", timestamp: 1, value: .real(1), quality: .good)])
        store.close()
        try RawDatabase(path).execute("DROP TABLE model_shadow; DROP TABLE plant_tests; PRAGMA user_version = 4;")
        let ledger = try ModelLedger(path: path)
        _ = try ledger.recordTestStart(started("tanks", at: 10))
        ledger.close()
        let raw = try RawDatabase(path)
        #expect(raw.int("PRAGMA user_version") == Int64(HistorySchema.currentVersion))
        #expect(raw.int("SELECT count(*) FROM samples") == 1)
        #expect(raw.int("SELECT count(*) FROM plant_tests") == 1)
    }
}
