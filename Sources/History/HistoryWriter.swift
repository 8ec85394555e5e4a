import Foundation
import Synchronization
import Tags

/// Moves tag changes from a `ChangeFeed` consumer queue into the history database on a thread of its own.
///
/// Pollers only ever push into the feed's bounded queue; this thread drains it into a preallocated buffer, commits
/// a batch every `commitIntervalMilliseconds` (or as soon as `maxBatchRows` are waiting) in one transaction, and
/// between batches runs retention one bounded chunk at a time, so neither disk latency nor a large delete can stall
/// a poller. If the database cannot be written the batch is kept and retried; once it is full the feed drops the
/// oldest changes and counts them, so memory stays bounded.
///
/// Audit records may be submitted from any thread with `record(audit:)`; they are committed by this thread in the
/// next batch. `stop()` commits everything pending, then closes the database.
public final class HistoryWriter: @unchecked Sendable {
    /// When and how much the writer commits, and what it keeps.
    public struct Configuration: Sendable {
        public var commitIntervalMilliseconds: Int
        /// A batch is committed early once this many rows wait; also the most rows held while the disk fails.
        public var maxBatchRows: Int
        /// Samples older than this are deleted; nil keeps them until the size limit.
        public var retentionSeconds: Int?
        /// The database (plus WAL) is kept under this many bytes by deleting the oldest samples; nil means no limit.
        public var maxBytes: Int64?
        public var retentionIntervalMilliseconds: Int
        /// How long the thread sleeps when the feed is empty.
        public var idlePollMilliseconds: Int
        /// Audit records waiting beyond this many are dropped (and counted) rather than grow memory.
        public var maxPendingAudit: Int
        /// The audit trail's own retention (count and age), applied before the size limit.
        public var audit = AuditRetention()

        public init(
            commitIntervalMilliseconds: Int = 500, maxBatchRows: Int = 10_000, retentionSeconds: Int? = nil,
            maxBytes: Int64? = nil, retentionIntervalMilliseconds: Int = 10_000, idlePollMilliseconds: Int = 10,
            maxPendingAudit: Int = 10_000
        ) {
            self.commitIntervalMilliseconds = commitIntervalMilliseconds
            self.maxBatchRows = maxBatchRows
            self.retentionSeconds = retentionSeconds
            self.maxBytes = maxBytes
            self.retentionIntervalMilliseconds = retentionIntervalMilliseconds
            self.idlePollMilliseconds = idlePollMilliseconds
            self.maxPendingAudit = maxPendingAudit
        }

        /// The configuration the agent's history settings ask for.
        public init(_ settings: HistorySettings) {
            self.init(
                commitIntervalMilliseconds: settings.commitIntervalMilliseconds,
                retentionSeconds: settings.retentionSeconds,
                maxBytes: settings.maxBytes)
            audit = AuditRetention(maxRows: settings.auditMaxRows, maxAgeSeconds: settings.auditRetentionSeconds)
        }
    }

    /// What the writer has done so far.
    public struct Statistics: Sendable, Equatable {
        public var rowsWritten: UInt64 = 0
        public var auditWritten: UInt64 = 0
        public var commits: UInt64 = 0
        /// Failed commits (each is retried with the same rows).
        public var errors: UInt64 = 0
        /// Changes the feed dropped because this writer fell behind (or the database could not be written).
        public var feedDropped: UInt64 = 0
        public var auditDropped: UInt64 = 0
        public var retentionDeletedSamples: UInt64 = 0
        /// Audit rows deleted by the audit trail's own retention, and (apart) by the size limit once no plant history
        /// was left to delete.
        public var retentionDeletedAudit: UInt64 = 0
        public var auditDeletedForSize: UInt64 = 0
        public var retentionPasses: UInt64 = 0
        public var lastError: String?
        /// Unix microseconds of the last successful commit and of the last failed one (`edgepilot health`: writing
        /// is failing while the failure is the newer of the two).
        public var lastCommitTime: Int64?
        public var lastCommitErrorTime: Int64?
        /// How long each successful commit (the whole transaction) took.
        public var commitDurations = DurationHistogram()
    }

    private struct PendingRow {
        var tag: Int32
        var timestamp: Int64
        var value: HistoryValue
        var quality: Quality
    }

    /// What the writer tells its owner when the database starts refusing commits (a full disk, an I/O error) and when
    /// it takes them again: once each, not once per retried batch.
    public enum WriteHealthEvent: Sendable, Equatable {
        /// The first failed commit after a successful one. Up to `maxHeldRows` changes are kept in memory and retried;
        /// beyond that the feed drops the oldest and counts them.
        case failing(error: String, maxHeldRows: Int)
        /// A commit succeeded after failing ones for `seconds`; `dropped` changes were lost meanwhile.
        case resumed(seconds: Double, dropped: UInt64)
    }

    private enum RunState { case created, running, stopped }

    public let configuration: Configuration
    private let store: HistoryStore
    private let feed: ChangeFeed
    /// Resolves change ids to tags; swapped by `use(directory:)` when the agent reloads its configuration.
    private let directory: Mutex<TagDirectory>
    private let consumer: Int
    private let stopRequested = Atomic<Bool>(false)
    private let runState = Mutex(RunState.created)
    private let stats = Mutex(Statistics())
    private let auditQueue = Mutex<[AuditRecord]>([])
    /// Audit records the writer thread holds for its next commit; they count toward `maxPendingAudit` with those
    /// still queued, so the bound holds between commits (and while commits fail), not just between drains.
    private let auditHeld = Atomic<Int>(0)
    private let finished = DispatchSemaphore(value: 0)
    /// Told (on the writer thread) when audit records were dropped: once when it starts, then at most once a minute
    /// while it goes on; set before `start()`.
    public var journal: (@Sendable (String) -> Void)?
    private let onWriteHealth: @Sendable (WriteHealthEvent) -> Void

    /// Takes ownership of `store`: from `start()` on only the writer's thread may use it.
    ///
    /// `feed` may carry changes of several tag tables (one per device); `directory` tells which tag each change id is.
    /// `onWriteHealth` is called on the writer's thread (see `WriteHealthEvent`).
    public init(
        store: HistoryStore, feed: ChangeFeed, consumer: Int, directory: TagDirectory, configuration: Configuration,
        onWriteHealth: @escaping @Sendable (WriteHealthEvent) -> Void = { _ in }
    ) {
        precondition(consumer >= 0 && consumer < feed.consumerCount, "no such change feed consumer")
        self.onWriteHealth = onWriteHealth
        self.store = store
        self.feed = feed
        self.directory = Mutex(directory)
        self.consumer = consumer
        self.configuration = configuration
    }

    /// A writer for the changes of one tag table.
    public convenience init(store: HistoryStore, table: TagTable, consumer: Int, configuration: Configuration) {
        self.init(
            store: store, feed: table.changes, consumer: consumer, directory: TagDirectory(tables: [table]),
            configuration: configuration)
    }

    /// Resolves change ids with `directory` from now on. The agent passes the tables of the new configuration plus
    /// the ones it replaced, so changes still queued from those are stored under their own names.
    public func use(directory: TagDirectory) {
        self.directory.withLock { $0 = directory }
    }

    /// Opens (creating or upgrading) the database at `settings.path` and configures the writer from `settings`.
    public convenience init(settings: HistorySettings, table: TagTable, consumer: Int) throws {
        self.init(
            store: try HistoryStore(path: settings.path), table: table, consumer: consumer,
            configuration: Configuration(settings))
    }

    /// Starts the writer thread; calling it again does nothing.
    public func start() {
        let shouldStart = runState.withLock { state -> Bool in
            guard state == .created else { return false }
            state = .running
            return true
        }
        guard shouldStart else { return }
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "history-writer"
        thread.start()
    }

    /// Queues an audit record for the next commit; safe from any thread.
    public func record(audit: AuditRecord) {
        let accepted = auditQueue.withLock { queue -> Bool in
            guard queue.count + auditHeld.load(ordering: .acquiring) < configuration.maxPendingAudit else {
                return false
            }
            queue.append(audit.bounded())
            return true
        }
        if !accepted { stats.withLock { $0.auditDropped += 1 } }
    }

    /// Commits everything pending (changes still in the feed included), stops the thread and closes the database.
    public func stop() {
        let wasRunning = runState.withLock { state -> Bool in
            defer { state = .stopped }
            return state == .running
        }
        if wasRunning {
            stopRequested.store(true, ordering: .releasing)
            finished.wait()
        }
        store.close()
    }

    public var statistics: Statistics {
        var s = stats.withLock { $0 }
        s.feedDropped = feed.dropped(consumer: consumer)
        return s
    }

    // MARK: - Writer thread

    private func run() {
        let maxBatch = max(1, configuration.maxBatchRows)
        let drainBuffer = UnsafeMutableBufferPointer<TagChange>.allocate(capacity: min(maxBatch, 4096))
        drainBuffer.initialize(repeating: TagChange(tag: 0, sample: .initial))
        defer { drainBuffer.deallocate() }
        var pending: [PendingRow] = []
        pending.reserveCapacity(maxBatch)
        var pendingAudit: [AuditRecord] = []
        // Database ids of tags by change id; a dictionary because ids of reloaded tables are not dense.
        var tagIDs: [Int32: Int64] = [:]
        var names: [Int32: String] = [:]
        let clock = ContinuousClock()
        let commitInterval = Duration.milliseconds(max(1, configuration.commitIntervalMilliseconds))
        let retentionInterval = Duration.milliseconds(max(1, configuration.retentionIntervalMilliseconds))
        let retains =
            configuration.retentionSeconds != nil || configuration.maxBytes != nil
            || configuration.audit.maxRows != nil || configuration.audit.maxAgeSeconds != nil
        var auditDropsReported: UInt64 = 0
        var lastDropReport: ContinuousClock.Instant?

        // A flood of commands overflows the audit queue: say so once, then at most once a minute with the total,
        // rather than one line per dropped record.
        func reportAuditDrops(now: ContinuousClock.Instant) {
            let dropped = stats.withLock { $0.auditDropped }
            guard dropped > auditDropsReported, let journal else { return }
            if let last = lastDropReport, now - last < .seconds(60) { return }
            let first = auditDropsReported == 0
            journal(
                first
                    ? "audit queue full (\(configuration.maxPendingAudit) records waiting): \(dropped) audit records "
                        + "dropped; the count is in edgepilot status"
                    : "audit records still being dropped: \(dropped) so far (\(dropped - auditDropsReported) in the "
                        + "last minute)")
            auditDropsReported = dropped
            lastDropReport = now
        }
        var lastCommit = clock.now
        // The first pass runs right away: the file may have outgrown a limit that was lowered since the last run.
        var lastRetention = clock.now - retentionInterval
        var retentionActive = false
        var retention = RetentionResult()
        // Since when commits fail, and the feed's drop count then: the owner hears of an outage once.
        var failingSince: ContinuousClock.Instant?
        var droppedAtFailure: UInt64 = 0

        func drain() -> Int {
            var total = 0
            while pending.count < maxBatch {
                let room = min(drainBuffer.count, maxBatch - pending.count)
                let n = feed.drain(
                    consumer: consumer, into: UnsafeMutableBufferPointer(rebasing: drainBuffer[0..<room]))
                if n == 0 { break }
                let directory = self.directory.withLock { $0 }
                for change in drainBuffer[0..<n] {
                    // A change whose table is no longer known (removed two reloads ago) has no name to go under.
                    guard let (table, index) = directory.locate(id: change.tag) else { continue }
                    if names[change.tag] == nil { names[change.tag] = table.definitions[index].name }
                    pending.append(
                        PendingRow(
                            tag: change.tag, timestamp: change.sample.timestamp,
                            value: HistoryValue(
                                change.sample.value, text: feed.text(of: change) ?? table.text(of: index)),
                            quality: change.sample.quality))
                }
                total += n
            }
            let audits = auditQueue.withLock { queue -> [AuditRecord] in
                guard !queue.isEmpty else { return [] }
                // Under the lock, so `record(audit:)` never sees the records in neither place.
                auditHeld.add(queue.count, ordering: .releasing)
                defer { queue = [] }
                return queue
            }
            pendingAudit.append(contentsOf: audits)
            return total
        }

        func commit() -> Bool {
            guard !pending.isEmpty || !pendingAudit.isEmpty else { return true }
            let started = clock.now
            do {
                try store.transaction {
                    let insert = try store.insertStatement()
                    for row in pending {
                        var id = tagIDs[row.tag] ?? 0
                        if id == 0 {
                            id = try store.tagID(for: names[row.tag] ?? "?")
                            tagIDs[row.tag] = id
                        }
                        try store.insertSample(
                            insert, tagID: id, timestamp: row.timestamp, value: row.value, quality: row.quality)
                    }
                    try store.addToCounter("sample_rows", Int64(pending.count))
                    for record in pendingAudit { try store.recordAudit(record) }
                }
                let rows = UInt64(pending.count)
                let audits = UInt64(pendingAudit.count)
                let took = started.duration(to: clock.now).components
                let nanoseconds = took.seconds * 1_000_000_000 + took.attoseconds / 1_000_000_000
                stats.withLock {
                    $0.commitDurations.record(nanoseconds: nanoseconds)
                    $0.rowsWritten += rows
                    $0.auditWritten += audits
                    $0.commits += 1
                    $0.lastCommitTime = HistoryClock.now()
                }
                pending.removeAll(keepingCapacity: true)
                auditHeld.subtract(pendingAudit.count, ordering: .releasing)
                pendingAudit.removeAll(keepingCapacity: true)
                if let since = failingSince {
                    failingSince = nil
                    let took = since.duration(to: clock.now).components
                    let seconds = Double(took.seconds) + Double(took.attoseconds) / 1e18
                    let dropped = feed.dropped(consumer: consumer) - droppedAtFailure
                    onWriteHealth(.resumed(seconds: seconds, dropped: dropped))
                }
                return true
            } catch {
                // The rollback may have discarded tags this batch created, so their cached ids are void.
                tagIDs.removeAll(keepingCapacity: true)
                let message = "\(error)"
                stats.withLock {
                    $0.errors += 1
                    $0.lastError = message
                    $0.lastCommitErrorTime = HistoryClock.now()
                }
                if failingSince == nil {
                    failingSince = clock.now
                    droppedAtFailure = feed.dropped(consumer: consumer)
                    onWriteHealth(.failing(error: message, maxHeldRows: maxBatch))
                }
                return false
            }
        }

        while !stopRequested.load(ordering: .acquiring) {
            let drained = drain()
            let now = clock.now
            reportAuditDrops(now: now)
            if pending.count >= maxBatch || now - lastCommit >= commitInterval {
                _ = commit()
                lastCommit = now
            }
            if retains && !retentionActive && now - lastRetention >= retentionInterval {
                retentionActive = true
                retention = RetentionResult()
                lastRetention = now
            }
            if retentionActive {
                do {
                    let more = try store.retentionStep(
                        maxAgeSeconds: configuration.retentionSeconds, maxBytes: configuration.maxBytes,
                        audit: configuration.audit, now: HistoryClock.now(), result: &retention)
                    if !more {
                        retentionActive = false
                        if retention.deletedSamples + retention.deletedAudit > 0 { try store.finishRetention() }
                        let deleted = UInt64(retention.deletedSamples)
                        let audit = UInt64(retention.deletedAudit)
                        let forSize = UInt64(retention.deletedAuditForSize)
                        if forSize > 0 {
                            journal?(
                                "history max_size reached with no plant history left: deleted \(forSize) oldest audit "
                                    + "rows (raise max_size or lower audit_max_rows)")
                        }
                        stats.withLock {
                            $0.retentionDeletedAudit += audit
                            $0.auditDeletedForSize += forSize
                            $0.retentionDeletedSamples += deleted
                            $0.retentionPasses += 1
                        }
                    }
                } catch {
                    retentionActive = false
                    let message = "retention: \(error)"
                    stats.withLock {
                        $0.errors += 1
                        $0.lastError = message
                    }
                }
            }
            if drained == 0 && !retentionActive {
                var ts = timespec(tv_sec: 0, tv_nsec: max(1, configuration.idlePollMilliseconds) * 1_000_000)
                nanosleep(&ts, nil)
            }
        }
        // Final flush: everything the feed still holds, in as many batches as it takes; give up only if the
        // database refuses a commit, since retrying forever would hang shutdown.
        while true {
            _ = drain()
            if pending.isEmpty && pendingAudit.isEmpty { break }
            if !commit() { break }
        }
    }
}
