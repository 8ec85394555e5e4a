import Foundation

/// How the client got its session back after a lost connection.
public enum SessionRecovery: String, Sendable, Hashable {
    /// The server still had the session: it was activated on the new channel, its subscriptions continued and the
    /// notifications sent into the outage were republished.
    case reactivated
    /// The session was gone (or never reactivatable): a new one was made with new subscriptions, whose first
    /// notifications carry the current values; changes during the outage are lost.
    case recreated
}

/// One recovery after a lost connection, as `OPCUAClient.lastRecovery` tells it.
public struct RecoveryReport: Sendable, Hashable {
    public var path: SessionRecovery
    /// NotificationMessages the server sent again (Republish) whose values were delivered, in order, before any new
    /// one.
    public var republished: Int
    /// Messages missed that the server no longer had, or beyond `maxRepublishPerRecovery`: their changes are lost.
    public var unavailable: Int
    /// Subscriptions made again: all of them for a new session; for a reactivated one, those the server had dropped.
    public var recreatedSubscriptions: Int
    /// Why the session was made again (for `.recreated`), e.g. `ActivateSession refused (BadSessionIdInvalid)`.
    public var reason: String?
    /// The status a reactivated session's TransferSubscriptions was refused with (e.g. BadServiceUnsupported), the
    /// missed messages then found by asking Republish for each next one; nil when it answered.
    public var transferRefused: StatusCode? = nil
}

/// Recoveries since the client was created, by path, and the notification messages they republished or lost.
public struct RecoveryCounters: Sendable, Hashable {
    public var reactivated = 0
    public var recreated = 0
    public var republished = 0
    public var unavailable = 0

    mutating func record(_ r: RecoveryReport) {
        if r.path == .reactivated { reactivated += 1 } else { recreated += 1 }
        republished += r.republished
        unavailable += r.unavailable
    }
}

extension OPCUAClient {
    /// The last recovery after a lost connection; nil before the first.
    public var lastRecovery: RecoveryReport? {
        lock.lock()
        defer { lock.unlock() }
        return lastRecoveryReport
    }

    /// Recoveries by path since creation.
    public var recoveries: RecoveryCounters {
        lock.lock()
        defer { lock.unlock() }
        return recoveryCounters
    }

    /// Whether values handed to `onValues` now are current: the client is connected, or it is delivering the
    /// notifications a reactivated session republished (in order, just before it reports `.connected`). A value
    /// delivered while this is false arrived from a channel already given up.
    public var isDeliveringValues: Bool {
        lock.lock()
        defer { lock.unlock() }
        return currentState == .connected || republishing
    }

    /// The server's id of the current session; nil while disconnected.
    public var sessionId: NodeId? {
        lock.lock()
        defer { lock.unlock() }
        return link?.sessionId
    }

    /// Puts the subscriptions on the session of a new link. A new session gets them made again. A reactivated one
    /// keeps them: TransferSubscriptions (sendInitialValues false) confirms each and tells which messages the server
    /// keeps; those after the last delivered are republished, oldest first, before any Publish is sent, so their
    /// values arrive in order. A subscription the server no longer has is made again. Runs on the client thread.
    func restoreSubscriptions(link l: Link, reactivated: Bool, reason: String?) throws -> RecoveryReport {
        lock.lock()
        let subs = subscriptions.sorted { $0.key < $1.key }.map(\.value)
        lock.unlock()
        var report = RecoveryReport(
            path: reactivated ? .reactivated : .recreated, republished: 0, unavailable: 0, recreatedSubscriptions: 0,
            reason: reason)
        guard reactivated else {
            for s in subs { _ = try createOnServer(s, link: l) }
            report.recreatedSubscriptions = subs.count
            return report
        }
        let lost = subs.filter { $0.lostServerId != nil }
        var results: [TransferSubscriptionsRequest.TransferResult]?
        if !lost.isEmpty {
            var transfer = TransferSubscriptionsRequest(
                subscriptionIds: lost.map { $0.lostServerId! }, sendInitialValues: false)
            transfer.header.authenticationToken = l.authToken
            do {
                let r = try l.channel.call(transfer, timeout: configuration.requestTimeout).results
                guard r.count == lost.count else {
                    throw OPCUAError.protocolViolation("TransferSubscriptions returned \(r.count) of \(lost.count)")
                }
                results = r
            } catch let e as OPCUAError {
                // A server without the service (BadServiceUnsupported) still has the subscriptions on the reactivated
                // session; Republish is then asked for each next message until the server has no more.
                guard case .serviceFault(_, let status) = e, !OPCUAClient.isSessionLoss(e) else { throw e }
                report.transferRefused = status
            }
        }
        var budget = max(0, configuration.maxRepublishPerRecovery)
        for s in subs {
            guard let serverId = s.lostServerId,
                let k = lost.firstIndex(where: { $0 === s })
            else {
                _ = try createOnServer(s, link: l)
                report.recreatedSubscriptions += 1
                continue
            }
            if let result = results?[k], result.statusCode.isBad {
                _ = try createOnServer(s, link: l)
                report.recreatedSubscriptions += 1
                continue
            }
            lock.lock()
            s.serverId = serverId
            s.lostServerId = nil
            byServerId[serverId] = s
            let last = s.lastSequence
            lock.unlock()
            let outcome = try republishMissed(
                s, serverId: serverId, after: last, available: results?[k].availableSequenceNumbers, link: l,
                budget: &budget)
            if outcome.gone {
                _ = try createOnServer(s, link: l)
                report.recreatedSubscriptions += 1
            }
            report.republished += outcome.republished
            report.unavailable += outcome.unavailable
        }
        return report
    }

    /// Republishes the messages of one subscription after `last`: those of `available` (the server's list, acking
    /// the ones already delivered), or, without a list, each next number until the server has no more. At most
    /// `budget` requests; the newest are kept when there are more, the rest counted unavailable. `gone` when the
    /// server answered that the subscription does not exist.
    private func republishMissed(
        _ s: SubscriptionState, serverId: UInt32, after last: UInt32?, available: [UInt32]?, link l: Link,
        budget: inout Int
    ) throws -> (republished: Int, unavailable: Int, gone: Bool) {
        /// Serial number order (sequence numbers wrap): is `a` after `b`?
        func isAfter(_ a: UInt32, _ b: UInt32?) -> Bool {
            guard let b else { return true }
            return Int32(bitPattern: a &- b) > 0
        }
        var republished = 0
        var unavailable = 0
        if let available {
            for n in available where !isAfter(n, last) {
                pendingAcks.append(SubscriptionAcknowledgement(subscriptionId: serverId, sequenceNumber: n))
            }
            var missing = available.filter { isAfter($0, last) }.sorted { isAfter($1, $0) }
            if missing.count > budget {
                unavailable += missing.count - budget
                missing.removeFirst(missing.count - budget)
            }
            for n in missing {
                budget -= 1
                switch try republishOne(s, serverId: serverId, sequenceNumber: n, link: l) {
                case .delivered: republished += 1
                case .notAvailable:
                    // Acknowledged all the same, so that a server without Republish does not keep it for ever.
                    unavailable += 1
                    pendingAcks.append(SubscriptionAcknowledgement(subscriptionId: serverId, sequenceNumber: n))
                case .subscriptionGone: return (republished, unavailable, true)
                }
            }
        } else {
            var n = (last ?? 0) &+ 1
            if n == 0 { n = 1 }
            while budget > 0 {
                budget -= 1
                switch try republishOne(s, serverId: serverId, sequenceNumber: n, link: l) {
                case .delivered: republished += 1
                case .notAvailable: return (republished, unavailable, false)
                case .subscriptionGone: return (republished, unavailable, true)
                }
                n = n &+ 1
                if n == 0 { n = 1 }
            }
        }
        return (republished, unavailable, false)
    }

    private enum RepublishOutcome {
        case delivered, notAvailable, subscriptionGone
    }

    /// One Republish; its values go to the subscription as a Publish response's would, on this (the client's) thread
    /// while no Publish is outstanding, so nothing is delivered concurrently.
    private func republishOne(_ s: SubscriptionState, serverId: UInt32, sequenceNumber n: UInt32, link l: Link) throws
        -> RepublishOutcome
    {
        var req = RepublishRequest(subscriptionId: serverId, retransmitSequenceNumber: n)
        req.header.authenticationToken = l.authToken
        let body = try l.channel.callForBody(req, timeout: configuration.requestTimeout)
        let target = PublishTarget(handleBase: s.handleBase, itemCount: s.items.count, deliver: s.deliver)
        lock.lock()
        republishing = true
        lock.unlock()
        defer {
            lock.lock()
            republishing = false
            lock.unlock()
        }
        do {
            let (got, count) = try InPlaceResponses.republish(
                BinaryReader(body, limits: configuration.decodingLimits), expected: n, target: target)
            guard got == n, count > 0 else { return .notAvailable }
        } catch let e as OPCUAError {
            guard case .serviceFault(_, let status) = e, !OPCUAClient.isSessionLoss(e) else { throw e }
            if status.rawValue & 0xFFFF_0000 == StatusCode.badSubscriptionIdInvalid.rawValue {
                return .subscriptionGone
            }
            return .notAvailable
        }
        lock.lock()
        s.lastSequence = n
        lock.unlock()
        pendingAcks.append(SubscriptionAcknowledgement(subscriptionId: serverId, sequenceNumber: n))
        return .delivered
    }
}
