import Devices
import Foundation
import History
import LoopRuntime
import Metrics
import SparkplugPublisher
import Tags

/// What the metrics thread remembers between scrapes: each loop's place in its jitter and solve-time rings and
/// the cumulative histograms filled from them. Only the metrics thread uses it (scrapes and the idle drain).
final class MetricsCollector: @unchecked Sendable {
    struct LoopState {
        let runner: LoopRunner
        var cursor = LoopSampleCursor()
        var jitter = SampleHistogram()
        var solve = SampleHistogram()
        /// The counters copied with the last samples (nil before the first drain).
        var counters: LoopCounters?
    }

    private let lock = NSLock()
    private var loops: [String: LoopState] = [:]
    /// As large as the loops' rings (8,192 samples): what one drain can take from a loop.
    private let jitterBuffer = UnsafeMutableBufferPointer<Int64>.allocate(capacity: 8192)
    private let solveBuffer = UnsafeMutableBufferPointer<Int64>.allocate(capacity: 8192)

    deinit {
        jitterBuffer.deallocate()
        solveBuffer.deallocate()
    }

    /// Moves the samples each loop recorded since the last drain into its histograms; a loop rebuilt by a reload
    /// starts new histograms (its counters start again at zero too, which Prometheus reads as a reset).
    func drain(_ runners: [String: LoopRunner]) -> [String: LoopState] {
        lock.withLock {
            for (name, runner) in runners {
                var state = loops[name].flatMap { $0.runner === runner ? $0 : nil } ?? LoopState(runner: runner)
                let (c, j, s) = runner.newSamples(since: &state.cursor, jitter: jitterBuffer, solve: solveBuffer)
                state.counters = c
                state.jitter.add(jitterBuffer, count: j)
                state.solve.add(solveBuffer, count: s)
                loops[name] = state
            }
            for name in loops.keys where runners[name] == nil { loops[name] = nil }
            return loops
        }
    }
}

/// The metrics endpoint's side of the runtime: on each scrape it reads the counters every part already keeps
/// (driver statistics, the history writer's, the publisher's, the loops' boards) and renders them; nothing is
/// recorded on a poll or a control cycle for it.
extension AgentRuntime {
    func makeMetricsServer(_ configuration: AgentConfiguration) throws -> MetricsServer? {
        guard let settings = configuration.metrics else { return nil }
        do {
            return try MetricsServer(
                host: settings.host, port: settings.port,
                respond: { [weak self] in self.map { MetricsText.render($0.metricFamilies()) } ?? "" },
                idle: { [weak self] in
                    guard let self else { return }
                    _ = metricsCollector.drain(current.loops)
                })
        } catch {
            throw AgentStartError(
                "metrics: \(error)\nchange 'metrics: listen:' in the configuration, or remove the section to turn the "
                    + "endpoint off")
        }
    }

    /// Every family, in a stable order: agent, devices, history, Sparkplug, loops.
    func metricFamilies() -> [MetricFamily] {
        let g = current
        var families: [MetricFamily] = []
        var info = MetricFamily("edgepilot_info", .gauge, help: "The agent's version (always 1).")
        info.add([("version", AgentVersion.current)], 1)
        var uptime = MetricFamily("edgepilot_uptime_seconds", .gauge, help: "Seconds since the agent started.")
        uptime.add([], Date().timeIntervalSince(startedAt))
        var reloads = MetricFamily("edgepilot_reloads_total", .counter, help: "Configuration reloads applied.")
        reloads.add([], reloadCount)
        var tags = MetricFamily("edgepilot_tags", .gauge, help: "Tags configured, loop state tags included.")
        tags.add([], g.directory.count)
        families += [info, uptime, reloads, tags]
        families += deviceFamilies(g)
        families += historyFamilies(g)
        if let report = sparkplug?.report { families += sparkplugFamilies(report) }
        families += loopFamilies(g)
        if let server = metricsServer {
            families.append(
                MetricFamily.counter(
                    "edgepilot_metrics_scrapes_total", "Scrapes answered, this one not counted.", server.answeredCount))
            families.append(
                MetricFamily.counter(
                    "edgepilot_metrics_dropped_connections_total",
                    "Connections dropped: request too slow, too large or unreadable, or the answer not taken.",
                    server.droppedCount))
        }
        return families
    }

    private func deviceFamilies(_ g: Generation) -> [MetricFamily] {
        func family(_ name: String, _ kind: MetricFamily.Kind, _ help: String) -> MetricFamily {
            MetricFamily("edgepilot_device_\(name)", kind, help: help)
        }
        var connected = family(
            "connected", .gauge, "1 while the device's connection is up and it answers (0 while not_answering).")
        var polls = family("polls_total", .counter, "Poll cycles completed (all groups).")
        var requests = family("requests_total", .counter, "Requests sent, retries included.")
        var errors = family("errors_total", .counter, "Failed requests and connects.")
        var timeouts = family("timeouts_total", .counter, "Requests that timed out.")
        var exceptions = family("exceptions_total", .counter, "Modbus exception replies.")
        var writes = family("writes_total", .counter, "Writes carried out.")
        var reconnects = family("reconnects_total", .counter, "Connections lost and made again.")
        var duration = family("poll_duration_seconds", .histogram, "How long each poll cycle took.")
        var age = family(
            "last_good_age_seconds", .gauge,
            "Seconds since the driver last vouched for a good value of the device (absent before the first).")
        let now = HistoryClock.now()
        for device in g.configuration.devices {
            guard let driver = g.drivers[device.name] else { continue }
            let s = driver.driverStatus
            let label = [("device", device.name)]
            connected.add(label, s.state == "connected" ? 1 : 0)
            polls.add(label, s.polls)
            requests.add(label, s.requests)
            errors.add(label, s.errors)
            timeouts.add(label, s.timeouts)
            exceptions.add(label, s.exceptions)
            writes.add(label, s.writes)
            reconnects.add(label, s.reconnects)
            duration.add(label, s.cycleDurations)
            if let table = g.tables[device.name], let newest = newestGoodSample(table) {
                age.add(label, max(0, Double(now - newest) / 1e6))
            }
        }
        return [connected, polls, requests, errors, timeouts, exceptions, writes, reconnects, duration, age]
    }

    private func historyFamilies(_ g: Generation) -> [MetricFamily] {
        let w = historyStatistics
        let path = g.configuration.history.path
        var bytes: Int64 = 0
        for file in [path, path + "-wal"] {
            var info = stat()
            if stat(file, &info) == 0 { bytes += Int64(info.st_size) }
        }
        return [
            MetricFamily.counter("edgepilot_history_rows_written_total", "Samples committed.", w.rowsWritten),
            MetricFamily.counter("edgepilot_history_commits_total", "Transactions committed.", w.commits),
            MetricFamily.counter(
                "edgepilot_history_commit_errors_total", "Commits that failed (retried with the same rows).", w.errors
            ),
            MetricFamily.gauge(
                "edgepilot_history_queue_depth", "Changes waiting in the writer's queue.",
                Double(feed.pending(consumer: Self.historyConsumer))
            ),
            MetricFamily.counter(
                "edgepilot_history_dropped_total", "Changes the queue dropped because the writer fell behind.",
                w.feedDropped
            ),
            MetricFamily.counter(
                "edgepilot_history_audit_dropped_total", "Audit records dropped (queue full).", w.auditDropped
            ),
            MetricFamily.counter(
                "edgepilot_history_retention_deleted_total", "Samples deleted by retention.",
                w.retentionDeletedSamples
            ),
            MetricFamily.gauge(
                "edgepilot_history_database_bytes", "Size of the history file and its write-ahead log.",
                Double(bytes)
            ),
            {
                var f = MetricFamily(
                    "edgepilot_history_commit_duration_seconds", .histogram, help: "How long each commit took.")
                f.add([], w.commitDurations)
                return f
            }(),
        ]
    }

    private func sparkplugFamilies(_ r: MQTTStatusReport) -> [MetricFamily] {
        func counter(_ name: String, _ help: String, _ v: UInt64) -> MetricFamily {
            MetricFamily.counter("edgepilot_sparkplug_\(name)", help, v)
        }
        func gauge(_ name: String, _ help: String, _ v: Double) -> MetricFamily {
            MetricFamily.gauge("edgepilot_sparkplug_\(name)", help, v)
        }
        var state = MetricFamily(
            "edgepilot_sparkplug_session_state", .gauge, help: "1 for the edge node session's current state.")
        for s in ["disconnected", "waiting_for_primary_host", "online"] {
            state.add([("state", s)], r.sessionState == s ? 1 : 0)
        }
        var commands = MetricFamily(
            "edgepilot_sparkplug_commands_total", .counter, help: "NCMD/DCMD writes by outcome.")
        for (result, v) in [
            ("written", r.commandsWritten), ("refused", r.commandsRefused), ("failed", r.commandsFailed),
            ("rejected", r.commandsRejected), ("expired", r.commandsExpired ?? 0), ("dropped", r.commandsDropped ?? 0),
        ] {
            commands.add([("result", result)], v)
        }
        return [
            gauge("connected", "1 while connected to a broker.", r.connected ? 1 : 0), state,
            counter(
                "messages_published_total", "Messages published (births, data, deaths, replay).", r.messagesPublished),
            counter("births_total", "NBIRTH messages published (first birth and every rebirth).", r.births),
            counter("connects_total", "Broker connections made.", r.connects),
            gauge("backlog_samples", "Samples waiting in the store-and-forward queue.", Double(r.backlog)),
            gauge(
                "backlog_bytes", "Bytes the store-and-forward queue counts against its bound.", Double(r.backlogBytes)),
            counter(
                "backlog_dropped_total", "Samples dropped because the queue hit its bound.", UInt64(max(0, r.dropped))),
            gauge("replay_in_flight", "Replay messages published, not yet acknowledged.", Double(r.replayInFlight)),
            counter("replayed_metrics_total", "Metrics replayed from the queue.", r.replayedMetrics),
            counter("feed_dropped_total", "Changes the publisher's queue lost because it fell behind.", r.feedDropped),
            gauge(
                "unconfirmed_samples", "Live samples published, not yet confirmed by a broker receipt.",
                Double(r.unconfirmed)),
            counter("receipt_requests_total", "Receipt requests sent.", r.receiptRequests),
            counter("live_confirmed_total", "Live samples a broker receipt confirmed.", r.liveConfirmed),
            counter("live_requeued_total", "Live samples moved to the queue unconfirmed.", r.liveRequeued),
            gauge("command_queue", "DCMD writes waiting.", Double(r.commandQueue ?? 0)), commands,
        ]
    }

    private func loopFamilies(_ g: Generation) -> [MetricFamily] {
        let states = metricsCollector.drain(g.loops)
        func family(_ name: String, _ kind: MetricFamily.Kind, _ help: String) -> MetricFamily {
            MetricFamily("edgepilot_loop_\(name)", kind, help: help)
        }
        var mode = family("mode", .gauge, "1 for the mode driving the loop's MVs now.")
        var requested = family("requested_mode", .gauge, "1 for the mode the operator or configuration asked for.")
        var cycles = family("cycles_total", .counter, "Cycles run.")
        var missed = family("missed_deadlines_total", .counter, "Cycles that finished after the next release.")
        var skipped = family("skipped_cycles_total", .counter, "Releases skipped because a cycle overran a period.")
        var overruns = family(
            "write_overruns_total", .counter,
            "Cycles whose MVs reached the writer before the previous ones were written.")
        var limited = family("limited_moves_total", .counter, "Moves cut by the final clamp or rate limit.")
        var sheds = family("sheds_total", .counter, "Mode changes forced by a fault (input, solver, lagging writes).")
        var jitter = family("jitter_seconds", .histogram, "Wake-up lateness against the absolute schedule.")
        var solve = family("solve_duration_seconds", .histogram, "MPC solve time per cycle run in MPC.")
        for name in g.loops.keys.sorted() {
            guard let state = states[name], let c = state.counters else { continue }
            let label = [("loop", name)]
            for m in ["manual", "pid", "mpc"] {
                mode.add(label + [("mode", m)], c.mode == m ? 1 : 0)
                requested.add(label + [("mode", m)], c.requestedMode == m ? 1 : 0)
            }
            cycles.add(label, c.cycles)
            missed.add(label, c.missedDeadlines)
            skipped.add(label, c.skippedCycles)
            overruns.add(label, c.writeOverruns)
            limited.add(label, c.limitedMoves)
            sheds.add(label, c.sheds)
            jitter.add(label, state.jitter.histogram)
            solve.add(label, state.solve.histogram)
        }
        return [mode, requested, cycles, missed, skipped, overruns, limited, sheds, jitter, solve]
    }
}
