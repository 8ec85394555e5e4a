/// Finds tags by name or by change id across the per-device tables of one configuration.
///
/// Immutable: a reload builds a new directory, and consumers swap to it. Ids are never reused within a process
/// (`nextIDBase` only grows), so a change still queued from a replaced table can never be taken for another tag.
public final class TagDirectory: @unchecked Sendable {
    /// The tables, in ascending `idBase`.
    public let tables: [TagTable]
    private let byName: [String: (table: Int, index: Int)]

    public init(tables: [TagTable]) {
        self.tables = tables.sorted { $0.idBase < $1.idBase }
        var names: [String: (Int, Int)] = [:]
        for (t, table) in self.tables.enumerated() {
            for (i, d) in table.definitions.enumerated() { names[d.name] = (t, i) }
        }
        byName = names
    }

    /// Every tag, in table then index order.
    public var count: Int { tables.reduce(0) { $0 + $1.count } }

    /// The table and index of the tag named `name`.
    public func locate(name: String) -> (table: TagTable, index: Int)? {
        byName[name].map { (tables[$0.table], $0.index) }
    }

    /// The table and index of the tag that reported change id `id`.
    public func locate(id: Int32) -> (table: TagTable, index: Int)? {
        var low = 0
        var high = tables.count - 1
        while low <= high {
            let mid = (low + high) / 2
            let t = tables[mid]
            if id < t.idBase {
                high = mid - 1
            } else if id >= t.idBase + Int32(t.count) {
                low = mid + 1
            } else {
                return (t, Int(id - t.idBase))
            }
        }
        return nil
    }

    /// Every (table, index) pair, for listings.
    public func allTags() -> [(table: TagTable, index: Int)] {
        tables.flatMap { t in (0..<t.count).map { (t, $0) } }
    }
}
