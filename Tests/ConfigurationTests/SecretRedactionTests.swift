import Configuration
import Testing

/// What `diag bundle` does to a configuration before it leaves the box.
@Suite struct SecretRedactionTests {
    @Test func inlineSecretsAreReplacedAndPathsKept() {
        let text = """
            sparkplug:
              brokers:
                - url: mqtt://ignition:Hunter2@10.0.0.5:8883
                  username: edge
                  password: "s3cr3t pw"
                  password_file: /etc/edgepilot/broker.password
                  tls: {ca_file: /etc/ca.pem, key_file: /etc/key.pem, passphrase: pp1}
            devices:
              - name: plc  # api_key: not-a-key-this-is-a-comment
                api_key: abc123
                secret_token: tok-9
            """
        let (out, count) = SecretRedaction.redact(text)
        for secret in ["Hunter2", "s3cr3t pw", "pp1", "abc123", "tok-9"] {
            #expect(!out.contains(secret), "\(secret) left in:\n\(out)")
        }
        #expect(out.contains("mqtt://ignition:<redacted>@10.0.0.5:8883"))
        #expect(out.contains("password_file: /etc/edgepilot/broker.password"))
        #expect(out.contains("key_file: /etc/key.pem"))
        #expect(out.contains("username: edge"))
        #expect(out.contains("- name: plc"))
        // Comments are text like any other: a secret pasted into one goes too.
        #expect(out.contains("# api_key: <redacted>"))
        #expect(count == 6)
    }

    @Test func privateKeyBlocksAreRemovedWhole() {
        let text = """
            tls:
              key: |
                -----BEGIN EC PRIVATE KEY-----
                MHcCAQEEIBxyz
                -----END EC PRIVATE KEY-----
              ca_file: /etc/ca.pem
            """
        let (out, count) = SecretRedaction.redact(text)
        #expect(!SecretRedaction.containsPrivateKey(out))
        #expect(!out.contains("MHcCAQEEIBxyz"))
        #expect(out.contains("ca_file: /etc/ca.pem"))
        #expect(count == 1)
    }

    @Test func aFileWithoutSecretsIsUnchanged() {
        let text = "devices:\n  - name: plc\n    host: 10.0.0.2\n    url: opc.tcp://plc:4840\n"
        let (out, count) = SecretRedaction.redact(text)
        #expect(out == text)
        #expect(count == 0)
    }
}
