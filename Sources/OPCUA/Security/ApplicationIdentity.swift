import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// The client's application instance certificate and private key.
///
/// OPC UA servers check that the certificate's SubjectAltName URI equals the ApplicationUri the client
/// sends in CreateSession, and that its key usages allow signing and key encipherment.
public struct ApplicationIdentity: Sendable {
    public let applicationUri: String
    public let certificateDER: [UInt8]
    let privateKey: _RSA.Signing.PrivateKey

    /// SHA-1 thumbprint of the certificate, lower-case hex (how OPC UA names certificates).
    public var thumbprint: String { hex(Array(Insecure.SHA1.hash(data: certificateDER))) }

    /// Generates a self-signed RSA-2048 SHA-256 certificate valid for `validDays`.
    public static func generate(
        applicationUri: String, applicationName: String, hostName: String = "localhost", validDays: Int = 365 * 5
    ) throws -> ApplicationIdentity {
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let name = try DistinguishedName {
            CommonName(applicationName)
            OrganizationName("EdgePilot")
        }
        let now = Date()
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(
                KeyUsage(digitalSignature: true, nonRepudiation: true, keyEncipherment: true, dataEncipherment: true))
            try ExtendedKeyUsage([.clientAuth, .serverAuth])
            SubjectAlternativeNames([.uniformResourceIdentifier(applicationUri), .dnsName(hostName)])
            SubjectKeyIdentifier(hash: Certificate.PublicKey(key.publicKey))
        }
        let cert = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(Double(validDays) * 86400),
            issuer: name, subject: name, signatureAlgorithm: .sha256WithRSAEncryption, extensions: extensions,
            issuerPrivateKey: Certificate.PrivateKey(key))
        var serializer = DER.Serializer()
        try serializer.serialize(cert)
        return ApplicationIdentity(
            applicationUri: applicationUri, certificateDER: serializer.serializedBytes, privateKey: key)
    }

    /// Loads `own/cert.der` and `own/private/key.pem` from a PKI directory, creating them on first use.
    public static func loadOrCreate(
        pkiDirectory: String, applicationUri: String, applicationName: String, hostName: String = "localhost"
    ) throws -> ApplicationIdentity {
        let fm = FileManager.default
        let certPath = pkiDirectory + "/own/cert.der"
        let keyPath = pkiDirectory + "/own/private/key.pem"
        if fm.fileExists(atPath: certPath), fm.fileExists(atPath: keyPath) {
            let der = [UInt8](try Data(contentsOf: URL(fileURLWithPath: certPath)))
            let key = try _RSA.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: keyPath, encoding: .utf8))
            let cert = try Certificate(derEncoded: der)
            let uris =
                (try? cert.extensions.subjectAlternativeNames)??.compactMap { name -> String? in
                    if case .uniformResourceIdentifier(let u) = name { return u }
                    return nil
                } ?? []
            guard uris.contains(applicationUri) else {
                throw OPCUAError.invalidArgument(
                    "certificate \(certPath) is for \(uris), not ApplicationUri \(applicationUri); delete it to regenerate"
                )
            }
            return ApplicationIdentity(applicationUri: applicationUri, certificateDER: der, privateKey: key)
        }
        let id = try generate(applicationUri: applicationUri, applicationName: applicationName, hostName: hostName)
        try fm.createDirectory(atPath: pkiDirectory + "/own", withIntermediateDirectories: true)
        try makePrivateDirectory(pkiDirectory + "/own/private")
        try Data(id.certificateDER).write(to: URL(fileURLWithPath: certPath))
        try writePrivateFile(Array(id.privateKey.pemRepresentation.utf8), to: keyPath)
        return id
    }

    /// `private/` only for the agent's user (0700), whatever the umask; an existing one is narrowed to that too.
    static func makePrivateDirectory(_ path: String) throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw OPCUAError.invalidArgument("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        chmod(path, 0o700)
    }

    /// Writes a secret so that no one else can read it at any moment: a new file created 0600 (O_EXCL, so nothing
    /// planted there is reused), filled, flushed and renamed over `path`.
    static func writePrivateFile(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".new-\(getpid())"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw OPCUAError.invalidArgument("cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let message = String(cString: strerror(errno))
                close(fd)
                unlink(temporary)
                throw OPCUAError.invalidArgument("cannot write \(temporary): \(message)")
            }
            offset += n
        }
        fsync(fd)
        close(fd)
        guard rename(temporary, path) == 0 else {
            let message = String(cString: strerror(errno))
            unlink(temporary)
            throw OPCUAError.invalidArgument("cannot rename \(temporary) to \(path): \(message)")
        }
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

/// How the client decides whether to trust the server's certificate.
public enum ServerTrust: Sendable, Hashable {
    /// Trust certificates whose DER file is in `<pki>/trusted/`; an unknown one is copied to
    /// `<pki>/rejected/<thumbprint>.der` and the connection fails, so an operator can move it to trusted/.
    case trustList(pkiDirectory: String)
    /// Trust exactly the certificate with this SHA-1 thumbprint (hex, case and colons ignored).
    case pinnedThumbprint(String)
    /// Trust any certificate. Only for tests and first commissioning; it gives no protection against impostors.
    case trustAnyForTesting
}

extension ServerTrust {
    /// Throws `certificateUntrusted` unless the certificate is trusted; checks validity dates too.
    func verify(_ der: [UInt8]) throws {
        let thumb = hex(Array(Insecure.SHA1.hash(data: der)))
        let cert: Certificate
        do { cert = try Certificate(derEncoded: der) } catch {
            throw OPCUAError.security("server certificate \(thumb) does not parse: \(error)")
        }
        let now = Date()
        if now < cert.notValidBefore || now > cert.notValidAfter {
            throw OPCUAError.security(
                "server certificate \(thumb) is valid only from \(cert.notValidBefore) to \(cert.notValidAfter)")
        }
        switch self {
        case .trustAnyForTesting: return
        case .pinnedThumbprint(let pin):
            let want = pin.lowercased().filter { $0.isHexDigit }
            if want != thumb { throw OPCUAError.certificateUntrusted(thumbprint: thumb, rejectedPath: nil) }
        case .trustList(let dir):
            let fm = FileManager.default
            let trusted = dir + "/trusted"
            try? fm.createDirectory(atPath: trusted, withIntermediateDirectories: true)
            for file in (try? fm.contentsOfDirectory(atPath: trusted)) ?? [] {
                guard let data = fm.contents(atPath: trusted + "/" + file) else { continue }
                if [UInt8](data) == der { return }
                // PEM files are accepted too, as operators often drop what a server UI exports.
                if let text = String(data: data, encoding: .utf8), text.contains("-----BEGIN CERTIFICATE"),
                    let c = try? Certificate(pemEncoded: text), c == cert
                {
                    return
                }
            }
            let rejected = dir + "/rejected"
            try? fm.createDirectory(atPath: rejected, withIntermediateDirectories: true)
            let path = rejected + "/\(thumb).der"
            try? Data(der).write(to: URL(fileURLWithPath: path))
            throw OPCUAError.certificateUntrusted(thumbprint: thumb, rejectedPath: path)
        }
    }
}
