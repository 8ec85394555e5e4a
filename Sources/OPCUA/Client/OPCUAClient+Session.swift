import Foundation

// Opening a connection: endpoint discovery, the secure channel, CreateSession/ActivateSession and the user
// identity token.
extension OPCUAClient {
    /// Lists the endpoints a server offers, over an unsecured channel used only for discovery.
    public static func getEndpoints(endpointURL: String, configuration: ClientConfiguration = ClientConfiguration())
        throws -> [EndpointDescription]
    {
        let ch = try SecureChannel.open(channelConfig(configuration, url: endpointURL, security: .none)) { _ in }
        defer { ch.close() }
        return try ch.call(GetEndpointsRequest(endpointUrl: endpointURL)).endpoints
    }

    private static func channelConfig(
        _ c: ClientConfiguration, url: String, security: SecurityConfiguration, serverCertificate: [UInt8]? = nil
    ) -> ChannelConfiguration {
        var cfg = ChannelConfiguration(
            endpointURL: url, policy: security.policy, mode: security.mode, identity: security.identity,
            serverCertificate: serverCertificate)
        cfg.requestedLifetimeMs = UInt32(c.channelLifetime * 1000)
        cfg.timeout = c.requestTimeout
        cfg.decodingLimits = c.decodingLimits
        cfg.maxMessageSize = c.maxMessageSize
        cfg.loopProbe = c.loopProbe
        return cfg
    }

    func establish(gen: Int) throws -> Link {
        let (target, channel, endpoint, discovered) = try openChannel(gen: gen)
        do {
            return try createSession(
                channel: channel, endpoint: endpoint, discovered: discovered, target: target, gen: gen)
        } catch {
            channel.close()
            throw error
        }
    }

    /// Discovers the endpoint and opens the secure channel to it, without a session; also returns every endpoint
    /// discovery offered, for CreateSession's answer to be checked against.
    func openChannel(gen: Int) throws -> (Target, SecureChannel, EndpointDescription, [EndpointDescription]) {
        lock.lock()
        guard let target else {
            lock.unlock()
            throw OPCUAError.notConnected
        }
        lock.unlock()
        let sec = target.security
        let onClose: @Sendable (OPCUAError) -> Void = { [weak self] e in
            self?.post { self?.connectionLost(gen: gen, e) }
        }
        var discoveryConfig = OPCUAClient.channelConfig(configuration, url: target.url, security: .none)
        discoveryConfig.initialSequenceNumber = initialSequenceNumber
        let discovery = try SecureChannel.open(discoveryConfig, onClose: onClose)
        var channel = discovery
        do {
            let endpoints = try discovery.call(GetEndpointsRequest(endpointUrl: target.url)).endpoints
            let candidates = endpoints.filter { $0.securityPolicyUri == sec.policy.uri && $0.securityMode == sec.mode }
            guard let endpoint = candidates.max(by: { $0.securityLevel < $1.securityLevel }) else {
                let offered = endpoints.map {
                    "\($0.securityPolicyUri.split(separator: "#").last ?? "?")/\($0.securityMode)"
                }
                throw OPCUAError.invalidArgument(
                    "server offers no endpoint with \(sec.policy)/\(sec.mode); it offers \(offered.joined(separator: ", "))"
                )
            }
            if sec.policy != .none {
                try sec.trust!.verify(endpoint.serverCertificate)
                discovery.close()
                var cfg = OPCUAClient.channelConfig(
                    configuration, url: target.url, security: sec, serverCertificate: endpoint.serverCertificate)
                cfg.initialSequenceNumber = initialSequenceNumber
                channel = try SecureChannel.open(cfg, onClose: onClose)
            }
            return (target, channel, endpoint, endpoints)
        } catch {
            channel.close()
            discovery.close()
            throw error
        }
    }

    /// A new session on `channel`; `discovered` are the endpoints GetEndpoints returned, which CreateSession's
    /// must match (downgrade protection).
    func createSession(
        channel: SecureChannel, endpoint: EndpointDescription, discovered: [EndpointDescription], target: Target,
        gen: Int
    ) throws -> Link {
        let sec = target.security
        let clientNonce = secureRandomBytes(32)
        let cs = CreateSessionRequest(
            clientDescription: ApplicationDescription(
                applicationUri: configuration.applicationUri, productUri: configuration.productUri,
                name: configuration.applicationName, type: 1),
            endpointUrl: target.url, sessionName: "\(configuration.applicationName) \(UUID().uuidString.prefix(8))",
            clientNonce: clientNonce, clientCertificate: sec.identity?.certificateDER,
            requestedSessionTimeout: configuration.sessionTimeout * 1000, maxResponseMessageSize: 0)
        let session = try channel.call(cs)
        if let mismatch = EndpointDowngradeCheck.mismatch(discovered: discovered, session: session.serverEndpoints) {
            throw OPCUAError.security(mismatch)
        }

        var act = ActivateSessionRequest(userIdentityToken: .null)
        act.header.authenticationToken = session.authenticationToken
        if sec.policy != .none, let identity = sec.identity {
            guard session.serverCertificate == endpoint.serverCertificate else {
                throw OPCUAError.security("CreateSession returned a different server certificate than GetEndpoints")
            }
            let ctx = try AsymmetricContext(identity: identity, serverCertificate: session.serverCertificate)
            guard let sig = session.serverSignature.signature,
                ctx.verify(sig[...], for: (identity.certificateDER + clientNonce)[...])
            else {
                throw OPCUAError.security(
                    "server signature in CreateSession does not verify (BadApplicationSignatureInvalid)")
            }
            act.clientSignature = SignatureData(
                algorithm: SecurityPolicy.asymmetricSignatureUri,
                signature: try ctx.sign((session.serverCertificate + session.serverNonce)[...]))
        }
        act.userIdentityToken = try identityToken(target.identity, endpoint: endpoint, serverNonce: session.serverNonce)
        let activated = try channel.call(act)
        return Link(
            channel: channel, authToken: session.authenticationToken, sessionId: session.sessionId, generation: gen,
            revisedSessionTimeout: session.revisedSessionTimeout / 1000, serverNonce: activated.serverNonce,
            serverCertificate: session.serverCertificate)
    }

    func identityToken(_ identity: UserIdentity, endpoint: EndpointDescription, serverNonce: [UInt8]) throws
        -> ExtensionObject
    {
        switch identity {
        case .anonymous:
            guard let p = endpoint.userIdentityTokens.first(where: { $0.tokenType == .anonymous }) else {
                throw OPCUAError.invalidArgument("the endpoint does not accept anonymous sessions")
            }
            return ExtensionObject(
                typeId: AnonymousIdentityToken.typeId, encoding: AnonymousIdentityToken(policyId: p.policyId))
        case .userName(let user, let password):
            guard let p = endpoint.userIdentityTokens.first(where: { $0.tokenType == .userName }) else {
                throw OPCUAError.invalidArgument("the endpoint does not accept user names")
            }
            var policyUri = p.securityPolicyUri ?? ""
            if policyUri.isEmpty { policyUri = endpoint.securityPolicyUri }
            var token = UserNameIdentityToken(policyId: p.policyId, userName: user, password: Array(password.utf8))
            if policyUri != SecurityPolicy.none.uri {
                guard SecurityPolicy(rawValue: policyUri) != nil else {
                    throw OPCUAError.invalidArgument("user token policy \(policyUri) is not supported")
                }
                token.password = try AsymmetricContext.encryptSecret(
                    Array(password.utf8), nonce: serverNonce, serverCertificate: endpoint.serverCertificate)
                token.encryptionAlgorithm = SecurityPolicy.oaepEncryptionUri
            }
            return ExtensionObject(typeId: UserNameIdentityToken.typeId, encoding: token)
        }
    }
}
