import Foundation

// Losing the connection and getting it back: reconnects with exponential backoff and jitter; the session is
// reactivated on the new channel when the server still has it (its subscriptions continue and the notifications sent
// into the outage are republished), and made again with its subscriptions when it does not (decision record 0025).
extension OPCUAClient {
    func connectionLost(gen: Int, _ error: OPCUAError) {
        lock.lock()
        guard gen == generation, let l = link, target != nil else {
            lock.unlock()
            return
        }
        link = nil
        lastLossError = error
        // Kept for the reactivation: a session the server closed (BadSessionIdInvalid and the like) is refused there
        // and made again, so there is no need to tell the two losses apart here.
        lostSession = l
        for s in subscriptions.values {
            if let id = s.serverId { s.lostServerId = id }
            s.serverId = nil
        }
        byServerId = [:]
        lock.unlock()
        publishCompletion = nil
        l.channel.fail(error, notify: false)
        outstandingPublish = 0
        pendingAcks = []
        keepAliveSentAt = nil
        publishTarget = 2
        reconnectAttempt = 0
        nextReconnectAt = monotonicSeconds()
        setState(.reconnecting(attempt: 0))
    }

    func reconnect() {
        lock.lock()
        generation += 1
        let gen = generation
        lock.unlock()
        do {
            let (target, channel, endpoint, discovered) = try openChannel(gen: gen)
            let report: RecoveryReport
            do {
                let (l, reason) = try sessionOnNewChannel(
                    channel, endpoint: endpoint, discovered: discovered, target: target, gen: gen)
                lock.lock()
                link = l
                lock.unlock()
                report = try restoreSubscriptions(link: l, reactivated: reason == nil, reason: reason)
            } catch {
                // Subscriptions already back on the session are lost with it again, for the next attempt to restore.
                lock.lock()
                link = nil
                for s in subscriptions.values {
                    if let id = s.serverId { s.lostServerId = id }
                    s.serverId = nil
                }
                byServerId = [:]
                lock.unlock()
                channel.fail(error as? OPCUAError ?? .transport("\(error)"), notify: false)
                throw error
            }
            lock.lock()
            lostSession = nil
            lastRecoveryReport = report
            recoveryCounters.record(report)
            lock.unlock()
            reconnectAttempt = 0
            lastKeepAlive = monotonicSeconds()
            lastPublishActivity = monotonicSeconds()
            reconnectCounter.increment()
            setState(.connected)
            pumpPublish()
        } catch {
            // Kept for every attempt, not only the loss: a server that comes back with a new certificate or refuses
            // the user must be reported as that, not as the loss that started the outage.
            lock.lock()
            lastLossError = error as? OPCUAError ?? .transport("\(error)")
            lock.unlock()
            reconnectAttempt += 1
            let base = min(
                configuration.reconnectMaxDelay,
                configuration.reconnectMinDelay * pow(2, Double(min(reconnectAttempt - 1, 20))))
            // Jitter spreads the reconnects of many clients after a server restart.
            nextReconnectAt = monotonicSeconds() + base * Double.random(in: 0.5...1.0)
            setState(.reconnecting(attempt: reconnectAttempt))
        }
    }

    /// The session on a new channel: the lost one reactivated if the server still has it, else a new one. Returns
    /// the link and, for a new session, why the old one could not be reactivated.
    private func sessionOnNewChannel(
        _ channel: SecureChannel, endpoint: EndpointDescription, discovered: [EndpointDescription], target: Target,
        gen: Int
    ) throws -> (Link, reason: String?) {
        lock.lock()
        let lost = lostSession
        lock.unlock()
        var reason = "no session to reactivate"
        if let lost {
            do {
                return (try reactivate(lost, channel: channel, endpoint: endpoint, target: target, gen: gen), nil)
            } catch let e as OPCUAError {
                // A transport failure says nothing of the session: the next attempt tries to reactivate it again.
                // An answer refusing it (BadSessionIdInvalid, BadSessionClosed, …) means it is gone.
                guard case .serviceFault(_, let status) = e else { throw e }
                reason = "ActivateSession refused (\(status))"
                lock.lock()
                lostSession = nil
                lock.unlock()
            }
        }
        let link = try createSession(
            channel: channel, endpoint: endpoint, discovered: discovered, target: target, gen: gen)
        return (link, reason)
    }

    /// ActivateSession of the lost session on a new channel (OPC 10000-4 §5.6.3, §6.7): the same authentication
    /// token, the client signature over the server certificate and the nonce of the session's last activation.
    private func reactivate(
        _ lost: Link, channel: SecureChannel, endpoint: EndpointDescription, target: Target, gen: Int
    ) throws -> Link {
        let sec = target.security
        var act = ActivateSessionRequest(userIdentityToken: .null)
        act.header.authenticationToken = lost.authToken
        if sec.policy != .none, let identity = sec.identity {
            let ctx = try AsymmetricContext(identity: identity, serverCertificate: endpoint.serverCertificate)
            act.clientSignature = SignatureData(
                algorithm: SecurityPolicy.asymmetricSignatureUri,
                signature: try ctx.sign((endpoint.serverCertificate + lost.serverNonce)[...]))
        }
        act.userIdentityToken = try identityToken(target.identity, endpoint: endpoint, serverNonce: lost.serverNonce)
        let activated = try channel.call(act, timeout: configuration.requestTimeout)
        var l = lost
        l.channel = channel
        l.generation = gen
        l.serverNonce = activated.serverNonce
        l.serverCertificate = endpoint.serverCertificate
        return l
    }
}
