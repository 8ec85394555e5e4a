/// The agent answers at most 10,000 rows a request (`ControlHandler.maxQueryRows`), so the CLI asks page by page.
/// Rows come oldest first; each next page starts at the last row's timestamp, and the rows of that timestamp already
/// taken are skipped, so rows sharing a timestamp across a page boundary are neither lost nor repeated.
struct TimestampPaging {
    static let pageSize = 10_000

    /// `fetch(since, limit)` asks for one page. Returns at most `limit` rows and whether more may follow.
    static func collect<Row>(
        limit: Int, since: Int64, timestamp: (Row) -> Int64, fetch: (_ since: Int64, _ limit: Int) throws -> [Row]
    ) throws -> (rows: [Row], more: Bool) {
        var rows: [Row] = []
        var from = since
        var seenAtFrom = 0  // rows stamped `from` already in `rows`
        while rows.count < limit {
            let want = min(pageSize, limit - rows.count + seenAtFrom)
            let page = try fetch(from, want)
            rows += page.dropFirst(seenAtFrom).prefix(limit - rows.count)
            guard page.count == want, let last = page.last else { return (rows, false) }
            let lastStamp = timestamp(last)
            let atLast = rows.reversed().prefix { timestamp($0) == lastStamp }.count
            if atLast >= pageSize {
                // More rows share one timestamp than a page holds: step past it rather than ask for it for ever.
                from = lastStamp + 1
                seenAtFrom = 0
            } else {
                from = lastStamp
                seenAtFrom = atLast
            }
        }
        return (rows, true)
    }
}
