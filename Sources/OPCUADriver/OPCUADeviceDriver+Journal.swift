import Foundation
import Logging
import OPCUA
import Synchronization

/// What the journal has been told about the current outage of one OPC UA device, so that an outage with many
/// retries is a handful of lines: the loss, each distinct reason once, a reminder at most once a minute, the return.
struct OPCUAOutageJournal {
    /// When the outage began (monotonic seconds) and whether the device had been connected before it.
    var since: Double
    var wasConnected: Bool
    var failures = 0
    var suppressed = 0
    var lastLogged: Double
    /// Reasons already told, so that a reason flapping with another one is not repeated every retry.
    var reasons: Set<String> = []

    /// Bounds the reasons kept per outage: past it, new texts (errno details, thumbprints) count as reminders.
    static let maximumReasons = 16
    /// Time between two reminders that a device is still unreachable.
    static let reminderSeconds = 60.0
}

/// A connect failure in the technician's terms, and whether someone must act (trust a certificate, fix a login).
struct OPCUAFailureExplanation {
    var text: String
    var needsOperator: Bool
}

extension OPCUADeviceDriver {
    /// The status and journal text of a failed connect or reconnect, with the command or setting that fixes it: an
    /// untrusted server certificate gives the `edgepilot opcua trust` command, a refused user points at `user` and
    /// `password_file`, a refused client certificate at the server's trust list.
    func explain(_ error: Error, verb: String = "connect to") -> OPCUAFailureExplanation {
        let url = settings.endpointURL
        guard let e = error as? OPCUAError else {
            return OPCUAFailureExplanation(text: "\(verb) \(url) failed: \(error)", needsOperator: false)
        }
        if case .certificateUntrusted(let thumbprint, let path) = e {
            guard let path else {
                return OPCUAFailureExplanation(
                    text: "server certificate \(thumbprint) of \(url) does not match the pinned thumbprint; if the "
                        + "server's certificate was renewed, check it and put its thumbprint in the device's trust:",
                    needsOperator: true)
            }
            return OPCUAFailureExplanation(
                text: "server certificate \(thumbprint) of \(url) is not trusted; it was saved to \(path). "
                    + "Check it, then run: edgepilot opcua trust \(thumbprint) --pki-dir \(settings.pkiDirectory)",
                needsOperator: true)
        }
        let code: UInt32?
        switch e {
        case .serviceFault(_, let status), .serverError(let status, _): code = status.rawValue & 0xFFFF_0000
        default: code = nil
        }
        switch code {
        case StatusCode.badUserAccessDenied.rawValue, StatusCode.badIdentityTokenRejected.rawValue,
            StatusCode.badIdentityTokenInvalid.rawValue:
            return OPCUAFailureExplanation(
                text: "\(url) refused the user \(settings.userName ?? "(anonymous)") (\(e.statusCode!)): check the "
                    + "device's user and password_file\(settings.passwordFile.map { " (\($0))" } ?? "")",
                needsOperator: true)
        case StatusCode.badCertificateUntrusted.rawValue, StatusCode.badSecurityChecksFailed.rawValue,
            StatusCode.badCertificateInvalid.rawValue:
            return OPCUAFailureExplanation(
                text: "\(url) does not trust this client's certificate (\(e.statusCode!)); trust "
                    + "\(settings.pkiDirectory)/own/cert.der on the server (most servers put it in their rejected "
                    + "list first)",
                needsOperator: true)
        default:
            return OPCUAFailureExplanation(text: "\(verb) \(url) failed: \(e)", needsOperator: false)
        }
    }

    /// Journals the loss of an established connection; the outage it starts ends with `journalBack()`.
    func journalLost(_ reason: String) {
        let now = monotonicNow()
        journal.withLock {
            $0 = OPCUAOutageJournal(since: now, wasConnected: true, failures: 0, lastLogged: now)
        }
        logger.warning(
            "OPC UA device \(device.name) lost: \(reason); reconnecting with backoff",
            metadata: ["device": "\(device.name)", "endpoint": "\(settings.endpointURL)"])
    }

    /// Journals a failed connect or reconnect attempt: each distinct reason of an outage once (a failure someone
    /// must fix as an error, with its hint), repeats as a reminder at most once a minute with the count in between.
    func journalFailure(_ failure: OPCUAFailureExplanation) {
        let now = monotonicNow()
        enum Line {
            case first, reason
            case reminder(failures: Int, suppressed: Int)
            case nothing
        }
        let line = journal.withLock { state -> Line in
            guard var o = state else {
                var o = OPCUAOutageJournal(since: now, wasConnected: false, failures: 1, lastLogged: now)
                o.reasons.insert(failure.text)
                state = o
                return .first
            }
            o.failures += 1
            let line: Line
            if !o.reasons.contains(failure.text) && o.reasons.count < OPCUAOutageJournal.maximumReasons {
                o.reasons.insert(failure.text)
                o.lastLogged = now
                line = .reason
            } else if now - o.lastLogged >= OPCUAOutageJournal.reminderSeconds {
                line = .reminder(failures: o.failures, suppressed: o.suppressed)
                o.suppressed = 0
                o.lastLogged = now
            } else {
                o.suppressed += 1
                line = .nothing
            }
            state = o
            return line
        }
        let metadata: Logger.Metadata = ["device": "\(device.name)", "endpoint": "\(settings.endpointURL)"]
        let level: Logger.Level = failure.needsOperator ? .error : .warning
        switch line {
        case .first:
            logger.log(
                level: level, "OPC UA device \(device.name) unreachable: \(failure.text); retrying with backoff",
                metadata: metadata)
        case .reason:
            logger.log(
                level: level, "OPC UA device \(device.name) still unreachable: \(failure.text)", metadata: metadata)
        case .reminder(let failures, let suppressed):
            var m = metadata
            m["failed_attempts"] = "\(failures)"
            m["suppressed"] = "\(suppressed)"
            logger.log(level: level, "OPC UA device \(device.name) still unreachable: \(failure.text)", metadata: m)
        case .nothing:
            break
        }
    }

    /// Journals a connection made after an outage (or after failed first attempts), with how long it lasted.
    func journalBack(recovery: String? = nil) {
        let outage = journal.withLock { state in
            let o = state
            state = nil
            return o
        }
        guard let o = outage else { return }
        writeFailureLogged.withLock { for i in $0.indices { $0[i] = false } }
        let seconds = ((monotonicNow() - o.since) * 1000).rounded() / 1000
        var metadata: Logger.Metadata = [
            "device": "\(device.name)", "down_s": "\(seconds)", "failed_attempts": "\(o.failures)",
        ]
        if let recovery { metadata["session"] = "\(recovery.prefix { $0 != " " && $0 != ":" })" }
        logger.notice(
            "OPC UA device \(device.name) \(o.wasConnected ? "back" : "connected") after \(seconds) s\(recovery.map { "; session \($0)" } ?? "")",
            metadata: metadata)
    }

    /// Journals a failed write: the first for each tag until a write to it succeeds or the connection comes back, so
    /// a loop retrying its MV every cycle is one line, not one per cycle.
    func journalWriteFailure(_ index: Int, _ text: String) {
        let first = writeFailureLogged.withLock { logged in
            defer { logged[index] = true }
            return !logged[index]
        }
        guard first else { return }
        logger.warning(
            "OPC UA device \(device.name): write \(table.definitions[index].name) failed: \(text)",
            metadata: ["device": "\(device.name)", "tag": "\(table.definitions[index].name)"])
    }

    /// A write to the tag went through: its next failure is news again.
    func journalWriteSucceeded(_ index: Int) {
        writeFailureLogged.withLock { if $0[index] { $0[index] = false } }
    }
}

@inline(__always) func monotonicNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
