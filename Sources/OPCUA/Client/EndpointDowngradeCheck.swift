/// Downgrade protection at session creation (OPC UA Part 4, 5.6.2; issue 15, Medium 9): GetEndpoints runs over an
/// unsecured discovery channel, so someone on the path could strip the strong endpoints from its answer and steer
/// the client to a weak one. CreateSession repeats the server's endpoint list over the channel the client chose; a
/// list that differs from discovery's means the discovery answer was tampered with, and the connection is aborted.
enum EndpointDowngradeCheck {
    /// What is compared of an endpoint: its security and the user tokens it accepts. Not its URL (a server may
    /// name itself by another host name) nor the certificate bytes (checked on their own) nor the security level.
    private struct Offer: Hashable, CustomStringConvertible {
        var policyUri: String
        var mode: MessageSecurityMode
        var tokens: [String]

        init(_ e: EndpointDescription) {
            policyUri = e.securityPolicyUri
            mode = e.securityMode
            tokens = e.userIdentityTokens.map { "\($0.tokenType)/\($0.securityPolicyUri ?? "")" }.sorted()
        }

        var description: String { "\(policyUri.split(separator: "#").last ?? "?")/\(mode)" }
    }

    /// Why the endpoints CreateSession returned do not match those discovery returned; nil when they match, or when
    /// the server returned none (then there is nothing to compare with).
    static func mismatch(discovered: [EndpointDescription], session: [EndpointDescription]) -> String? {
        guard !session.isEmpty else { return nil }
        let before = Set(discovered.map(Offer.init))
        let after = Set(session.map(Offer.init))
        guard before != after else { return nil }
        let hidden = after.subtracting(before).map(\.description).sorted()
        let extra = before.subtracting(after).map(\.description).sorted()
        var parts: [String] = []
        if !hidden.isEmpty { parts.append("missing from discovery: \(hidden.joined(separator: ", "))") }
        if !extra.isEmpty { parts.append("not offered by the session: \(extra.joined(separator: ", "))") }
        if parts.isEmpty { parts.append("their user tokens differ") }
        return "the endpoints CreateSession returned differ from those GetEndpoints returned ("
            + parts.joined(separator: "; ") + "): discovery may have been tampered with (downgrade); not connecting"
    }
}

extension EndpointDescription {
    /// An endpoint built in code (tests); real ones are decoded.
    init(
        endpointUrl: String, serverCertificate: [UInt8] = [], securityMode: MessageSecurityMode,
        securityPolicyUri: String, userIdentityTokens: [UserTokenPolicy], securityLevel: UInt8 = 0
    ) {
        self.endpointUrl = endpointUrl
        self.server = ApplicationDescription(applicationUri: "urn:test", productUri: "urn:test", name: "test", type: 0)
        self.serverCertificate = serverCertificate
        self.securityMode = securityMode
        self.securityPolicyUri = securityPolicyUri
        self.userIdentityTokens = userIdentityTokens
        self.securityLevel = securityLevel
    }
}

extension UserTokenPolicy {
    init(policyId: String?, tokenType: UserTokenType, securityPolicyUri: String?) {
        self.policyId = policyId
        self.tokenType = tokenType
        self.securityPolicyUri = securityPolicyUri
    }
}
