import Foundation

// Losing the connection and getting it back: reconnects with exponential backoff and jitter, and the
// subscriptions recreated.
extension OPCUAClient {
    func connectionLost(gen: Int, _ error: OPCUAError) {
        lock.lock()
        guard gen == generation, let l = link, target != nil else {
            lock.unlock()
            return
        }
        link = nil
        lastLossError = error
        for s in subscriptions.values { s.serverId = nil }
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
            let l = try establish(gen: gen)
            lock.lock()
            link = l
            let subs = Array(subscriptions.values)
            lock.unlock()
            do {
                for s in subs { _ = try createOnServer(s, link: l) }
            } catch {
                lock.lock()
                link = nil
                lock.unlock()
                l.channel.fail(error as? OPCUAError ?? .transport("\(error)"), notify: false)
                throw error
            }
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
}
