/// How one check, or the agent as a whole, is doing; the raw values are what monitoring systems print.
public enum HealthStatus: String, Codable, Sendable, Comparable {
    case ok = "OK"
    case warn = "WARN"
    case crit = "CRIT"
    /// Only the CLI uses it: the agent could not be asked.
    case unknown = "UNKNOWN"

    /// The Nagios plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    public var exitCode: Int32 {
        switch self {
        case .ok: return 0
        case .warn: return 1
        case .crit: return 2
        case .unknown: return 3
        }
    }

    /// CRIT outranks UNKNOWN: a check that the agent could evaluate and found critical says more than one it could not.
    var severity: Int {
        switch self {
        case .ok: return 0
        case .warn: return 1
        case .unknown: return 2
        case .crit: return 3
        }
    }

    public static func < (a: HealthStatus, b: HealthStatus) -> Bool { a.severity < b.severity }
}

/// One check's verdict with its one-line reason and the figures it was decided on (seconds, percent, days).
public struct HealthCheck: Codable, Sendable, Equatable {
    /// device, history, sparkplug, loop, clock or certificate.
    public var component: String
    /// The device, loop, broker or file the check is about.
    public var name: String
    public var status: HealthStatus
    public var reason: String
    public var ageSeconds: Double?
    public var periodSeconds: Double?
    public var freePercent: Double?
    public var freeBytes: Int64?
    public var offlineSeconds: Double?
    public var stepSeconds: Double?
    public var daysLeft: Double?

    public init(component: String, name: String, status: HealthStatus, reason: String) {
        self.component = component
        self.name = name
        self.status = status
        self.reason = reason
    }
}

/// What `edgepilot health` prints: the worst status of the checks, and the checks.
public struct HealthReport: Codable, Sendable, Equatable {
    public var status: HealthStatus
    public var checks: [HealthCheck]

    public init(checks: [HealthCheck]) {
        self.checks = checks
        status = checks.map(\.status).max() ?? .ok
    }
}

/// The limits the checks are judged against. The defaults are the documented behaviour (README, "When something is
/// wrong"); they are not configurable because no site has needed other values yet.
public struct HealthThresholds: Sendable {
    /// A device is stale (CRIT) when its newest good sample is older than this many of its fastest poll period plus
    /// `staleGraceSeconds` (the grace keeps a 50 ms poll group from flapping on one slow reply).
    public var staleAfterPeriods = 3.0
    public var staleGraceSeconds = 2.0
    /// A device error within this window is a WARN even when the device is connected and fresh.
    public var recentErrorSeconds = 60.0
    /// History: changes waiting longer than these since the last commit are WARN and CRIT.
    public var historyWarnSeconds = 10.0
    public var historyCritSeconds = 60.0
    /// Free space of the history volume, percent.
    public var diskWarnPercent = 10.0
    public var diskCritPercent = 2.0
    /// Sparkplug not online (broker lost, or waiting for the Primary Host) for longer than this is CRIT, WARN before.
    public var sparkplugCritSeconds = 120.0
    /// The wall clock jumped against the boot-time clock by more than this since the agent started: WARN.
    public var clockStepWarnSeconds = 5.0
    /// Certificates expiring within this many days: WARN.
    public var certificateWarnDays = 30.0

    public init() {}
}

/// Turns what the agent knows into OK/WARN/CRIT verdicts. Pure: every input, the current time included, is passed
/// in, so each rule's edges are unit-tested without an agent.
public struct HealthEvaluator: Sendable {
    public var thresholds: HealthThresholds

    public init(thresholds: HealthThresholds = HealthThresholds()) { self.thresholds = thresholds }

    /// One device as the agent sees it. `state` is the driver's (`connected`, `connecting`, `backing_off`, …).
    public struct Device: Sendable {
        public var name: String
        public var enabled: Bool
        public var state: String
        /// The fastest poll period of its polled tags; nil when it has none (OPC UA subscriptions only), so freshness
        /// is not judged.
        public var pollPeriodSeconds: Double?
        /// Unix µs of its newest good-quality sample; nil when it has none yet.
        public var lastGoodSample: Int64?
        public var lastError: String?
        public var lastErrorTime: Int64?

        public init(
            name: String, enabled: Bool = true, state: String, pollPeriodSeconds: Double?, lastGoodSample: Int64?,
            lastError: String? = nil, lastErrorTime: Int64? = nil
        ) {
            self.name = name
            self.enabled = enabled
            self.state = state
            self.pollPeriodSeconds = pollPeriodSeconds
            self.lastGoodSample = lastGoodSample
            self.lastError = lastError
            self.lastErrorTime = lastErrorTime
        }
    }

    public func device(_ d: Device, now: Int64) -> HealthCheck {
        var check = HealthCheck(component: "device", name: d.name, status: .ok, reason: "")
        check.periodSeconds = d.pollPeriodSeconds
        check.ageSeconds = d.lastGoodSample.map { seconds(now - $0) }
        guard d.enabled else {
            check.reason = "disabled in the configuration"
            return check
        }
        let error = d.lastError.map { ": \($0)" } ?? ""
        if d.state == "not_answering" {
            check.status = .crit
            check.reason = "connected but not answering\(error)"
            return check
        }
        guard d.state == "connected" else {
            check.status = .crit
            check.reason = "not connected (\(d.state.replacingOccurrences(of: "_", with: " ")))\(error)"
            return check
        }
        if let period = d.pollPeriodSeconds {
            let limit = thresholds.staleAfterPeriods * period + thresholds.staleGraceSeconds
            guard let age = check.ageSeconds else {
                check.status = .crit
                check.reason = "connected but no good value read yet\(error)"
                return check
            }
            if age > limit {
                check.status = .crit
                check.reason = "stale: newest good value \(format(age)) s old, poll period \(format(period)) s\(error)"
                return check
            }
        }
        if let at = d.lastErrorTime, d.lastError != nil, seconds(now - at) <= thresholds.recentErrorSeconds {
            check.status = .warn
            check.reason = "error \(format(seconds(now - at))) s ago\(error)"
            return check
        }
        check.reason =
            check.ageSeconds.map { "connected, newest good value \(format($0)) s old" } ?? "connected"
        return check
    }

    /// The history writer and its volume.
    public struct History: Sendable {
        public var path: String
        /// Changes waiting to be committed.
        public var pending: Int
        /// Unix µs of the last successful commit (nil: none yet) and of the last failed one.
        public var lastCommit: Int64?
        public var lastCommitError: Int64?
        public var lastError: String?
        /// When the writer started, for "no commit yet".
        public var startedAt: Int64
        /// The volume holding the database: bytes available to the agent and its size; nil when unknown.
        public var volumeAvailableBytes: Int64?
        public var volumeTotalBytes: Int64?

        public init(
            path: String, pending: Int, lastCommit: Int64?, lastCommitError: Int64? = nil, lastError: String? = nil,
            startedAt: Int64, volumeAvailableBytes: Int64?, volumeTotalBytes: Int64?
        ) {
            self.path = path
            self.pending = pending
            self.lastCommit = lastCommit
            self.lastCommitError = lastCommitError
            self.lastError = lastError
            self.startedAt = startedAt
            self.volumeAvailableBytes = volumeAvailableBytes
            self.volumeTotalBytes = volumeTotalBytes
        }
    }

    /// Two checks: writing (commits succeed and keep up) and disk (free space of the volume).
    public func history(_ h: History, now: Int64) -> [HealthCheck] {
        var writing = HealthCheck(component: "history", name: "writing", status: .ok, reason: "")
        let age = seconds(now - (h.lastCommit ?? h.startedAt))
        writing.ageSeconds = h.lastCommit.map { seconds(now - $0) }
        if let failed = h.lastCommitError, failed > (h.lastCommit ?? .min) {
            writing.status = .crit
            writing.reason = "writes fail: \(h.lastError ?? "unknown error")"
        } else if h.pending > 0 && age > thresholds.historyCritSeconds {
            writing.status = .crit
            writing.reason = "\(h.pending) changes waiting, no commit for \(format(age)) s"
        } else if h.pending > 0 && age > thresholds.historyWarnSeconds {
            writing.status = .warn
            writing.reason = "\(h.pending) changes waiting, no commit for \(format(age)) s"
        } else {
            writing.reason =
                h.lastCommit == nil ? "nothing to write yet" : "last commit \(format(age)) s ago"
        }
        var disk = HealthCheck(component: "history", name: "disk", status: .ok, reason: "")
        guard let available = h.volumeAvailableBytes, let total = h.volumeTotalBytes, total > 0 else {
            disk.status = .warn
            disk.reason = "cannot read the free space of the volume holding \(h.path)"
            return [writing, disk]
        }
        let percent = Double(available) / Double(total) * 100
        disk.freePercent = (percent * 100).rounded() / 100
        disk.freeBytes = available
        let text = "\(format(percent)) % free on the volume holding \(h.path)"
        if percent < thresholds.diskCritPercent {
            disk.status = .crit
            disk.reason = "\(text) (below \(format(thresholds.diskCritPercent)) %)"
        } else if percent < thresholds.diskWarnPercent {
            disk.status = .warn
            disk.reason = "\(text) (below \(format(thresholds.diskWarnPercent)) %)"
        } else {
            disk.reason = text
        }
        return [writing, disk]
    }

    /// The Sparkplug edge node, when configured.
    public struct Sparkplug: Sendable {
        public var edgeNode: String
        public var broker: String?
        public var connected: Bool
        /// disconnected, waiting_for_primary_host or online.
        public var sessionState: String
        public var primaryHostID: String?
        /// Unix µs since when the session has not been online; nil while online.
        public var notOnlineSince: Int64?

        public init(
            edgeNode: String, broker: String?, connected: Bool, sessionState: String, primaryHostID: String?,
            notOnlineSince: Int64?
        ) {
            self.edgeNode = edgeNode
            self.broker = broker
            self.connected = connected
            self.sessionState = sessionState
            self.primaryHostID = primaryHostID
            self.notOnlineSince = notOnlineSince
        }
    }

    public func sparkplug(_ s: Sparkplug, now: Int64) -> HealthCheck {
        var check = HealthCheck(component: "sparkplug", name: s.edgeNode, status: .ok, reason: "")
        if s.connected && s.sessionState == "online" {
            check.reason =
                "online on \(s.broker ?? "the broker")"
                + (s.primaryHostID.map { ", primary host \($0) online" } ?? "")
            return check
        }
        let offline = s.notOnlineSince.map { seconds(now - $0) }
        check.offlineSeconds = offline
        let what =
            s.connected
            ? "connected, waiting for primary host \(s.primaryHostID ?? "?") to be online"
            : "not connected to \(s.broker ?? "any broker"), reconnecting"
        let duration = offline.map { " for \(format($0)) s" } ?? ""
        check.status = (offline ?? 0) > thresholds.sparkplugCritSeconds ? .crit : .warn
        check.reason = what + duration
        return check
    }

    /// One control loop: in its requested mode, or shed to its fallback and why.
    public func loop(name: String, mode: String, requestedMode: String, reason: String?) -> HealthCheck {
        var check = HealthCheck(component: "loop", name: name, status: .ok, reason: "in \(mode) as requested")
        if mode != requestedMode {
            check.status = .warn
            // No transition yet: the loop has not started (it waits for healthy inputs), nothing was shed.
            check.reason =
                reason.map { "shed from \(requestedMode) to \(mode): \($0)" }
                ?? "in \(mode), \(requestedMode) requested: not started yet"
        }
        return check
    }

    /// The wall clock: not before this build's date (a box without RTC battery boots in 1970 until NTP answers, and
    /// every timestamp it writes is wrong), and not stepped since the agent started: `step` is the wall time elapsed
    /// minus the boot-time clock elapsed (which no one can set), in µs.
    public func clock(now: Int64, notBefore: Int64, step: Int64) -> HealthCheck {
        var check = HealthCheck(component: "clock", name: "wall clock", status: .ok, reason: "")
        check.stepSeconds = seconds(step)
        if now < notBefore {
            check.status = .crit
            check.reason = "the wall clock is before this version's build date: set the time or check NTP"
        } else if abs(seconds(step)) > thresholds.clockStepWarnSeconds {
            check.status = .warn
            check.reason =
                "the wall clock jumped \(format(seconds(step))) s since the agent started; "
                + "history timestamps around the jump are unreliable"
        } else {
            check.reason = "after the build date, no jump since the agent started"
        }
        return check
    }

    /// A certificate the agent uses (OPC UA application instance, MQTT TLS client or CA).
    public func certificate(name: String, subject: String?, notAfter: Int64?, now: Int64) -> HealthCheck {
        var check = HealthCheck(component: "certificate", name: name, status: .ok, reason: "")
        guard let notAfter else {
            check.status = .warn
            check.reason = "cannot read the certificate"
            return check
        }
        let days = seconds(notAfter - now) / 86400
        check.daysLeft = (days * 10).rounded(.down) / 10
        let who = subject.map { "\($0) " } ?? ""
        if days < 0 {
            check.status = .crit
            check.reason = "\(who)expired \(format(-days)) days ago"
        } else if days < thresholds.certificateWarnDays {
            check.status = .warn
            check.reason = "\(who)expires in \(format(days)) days"
        } else {
            check.reason = "\(who)valid for \(format(days)) more days"
        }
        return check
    }

    func seconds(_ microseconds: Int64) -> Double { Double(microseconds) / 1_000_000 }

    /// One decimal below 100, whole numbers above: enough for a one-line reason.
    func format(_ value: Double) -> String {
        if abs(value) >= 100 { return String(Int(value.rounded())) }
        let tenths = Int((value * 10).rounded())
        let sign = tenths < 0 ? "-" : ""
        return "\(sign)\(abs(tenths) / 10).\(abs(tenths) % 10)"
    }
}
