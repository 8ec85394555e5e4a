import Foundation

// Test hooks: faults injected and internals exposed.
extension OPCUAClient {
    /// Closes the session on the server behind the client's back (tests the BadSessionIdInvalid path).
    func closeSessionBehindClientsBack() throws {
        let l = try currentLink()
        var c = CloseSessionRequest()
        c.deleteSubscriptions = false
        c.header.authenticationToken = l.authToken
        _ = try l.channel.call(c)
    }

    /// Drops the TCP connection without CLO, as a network loss would.
    func dropConnection() throws {
        try currentLink().channel.fail(.connectionClosed("dropped by test"), notify: true)
    }

    /// Makes the next token renewal of the current channel fail.
    func injectRenewalFault() throws {
        try currentLink().channel.injectRenewalFault(
            .serviceFault(service: "OpenSecureChannel", status: .badSecurityChecksFailed))
    }

    /// The current link's channel, for tests that check it is released.
    var currentChannel: SecureChannel? {
        lock.lock()
        defer { lock.unlock() }
        return link?.channel
    }

    var channelTokenInfo: (id: UInt32, age: Double, lifetime: Double)? {
        lock.lock()
        defer { lock.unlock() }
        return link?.channel.tokenInfo
    }
}
