import Testing

@testable import OPCUA

/// Issue 15, Medium 9: the endpoints CreateSession returns are compared with those of discovery; a discovery answer
/// stripped of its secure endpoints (a downgrade on the unsecured discovery channel) aborts the connection.
@Suite struct EndpointDowngradeTests {
    static let basic = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
    static let none = "http://opcfoundation.org/UA/SecurityPolicy#None"

    static func endpoint(_ policy: String, _ mode: MessageSecurityMode, url: String = "opc.tcp://plc:4840/")
        -> EndpointDescription
    {
        EndpointDescription(
            endpointUrl: url, securityMode: mode, securityPolicyUri: policy,
            userIdentityTokens: [
                UserTokenPolicy(policyId: "anon", tokenType: .anonymous, securityPolicyUri: nil),
                UserTokenPolicy(policyId: "user", tokenType: .userName, securityPolicyUri: basic),
            ])
    }

    static let offered = [endpoint(none, .none), endpoint(basic, .sign), endpoint(basic, .signAndEncrypt)]

    @Test func theSameEndpointsPass() {
        // Order and host name may differ between the two answers.
        let session = Self.offered.reversed().map {
            var e = $0
            e.endpointUrl = "opc.tcp://192.0.2.5:4840/"
            return e
        }
        #expect(EndpointDowngradeCheck.mismatch(discovered: Self.offered, session: session) == nil)
        #expect(EndpointDowngradeCheck.mismatch(discovered: Self.offered, session: []) == nil, "nothing to compare")
    }

    @Test func aDiscoveryStrippedOfItsSecureEndpointsIsRefused() throws {
        let stripped = [Self.endpoint(Self.none, .none)]
        let why = try #require(EndpointDowngradeCheck.mismatch(discovered: stripped, session: Self.offered))
        #expect(why.contains("missing from discovery: Basic256Sha256/Sign, Basic256Sha256/SignAndEncrypt"), "\(why)")
        #expect(why.contains("downgrade"))
    }

    @Test func aChangedUserTokenPolicyIsRefused() {
        var weakened = Self.offered
        // The user token's password would go in clear text: the token policy was changed to None.
        weakened[2].userIdentityTokens[1].securityPolicyUri = Self.none
        #expect(EndpointDowngradeCheck.mismatch(discovered: weakened, session: Self.offered) != nil)
    }
}
