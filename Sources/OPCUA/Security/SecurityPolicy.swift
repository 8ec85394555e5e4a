import Crypto
import Foundation
import X509
import _CryptoExtras

/// The security policies the client implements (OPC 10000-7 profiles).
public enum SecurityPolicy: String, Sendable, Hashable, CaseIterable {
    case none = "http://opcfoundation.org/UA/SecurityPolicy#None"
    case basic256Sha256 = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
    case aes128Sha256RsaOaep = "http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep"

    var uri: String { rawValue }

    var symmetricEncryptionKeyLength: Int { self == .aes128Sha256RsaOaep ? 16 : 32 }
    var symmetricSigningKeyLength: Int { 32 }
    var symmetricSignatureSize: Int { 32 }
    var nonceLength: Int { self == .none ? 0 : 32 }
    /// RSA-OAEP with SHA-1 (both policies) spends 2·20+2 bytes of every block on padding.
    static let oaepOverhead = 42
    static let asymmetricSignatureUri = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    static let oaepEncryptionUri = "http://www.w3.org/2001/04/xmlenc#rsa-oaep"
}

/// Symmetric keys of one direction of one channel token.
struct SymmetricKeys: Sendable {
    var signingKey: SymmetricKey
    var encryptionKey: SymmetricKey
    var iv: [UInt8]

    /// P_SHA256 of TLS 1.2 (RFC 5246 §5), which OPC 10000-6 §6.7.5 uses for key derivation.
    static func pSHA256(secret: [UInt8], seed: [UInt8], length: Int) -> [UInt8] {
        let key = SymmetricKey(data: secret)
        var out: [UInt8] = []
        out.reserveCapacity(length + 32)
        var a = Array(HMAC<SHA256>.authenticationCode(for: seed, using: key))
        while out.count < length {
            out += HMAC<SHA256>.authenticationCode(for: a + seed, using: key)
            a = Array(HMAC<SHA256>.authenticationCode(for: a, using: key))
        }
        return Array(out.prefix(length))
    }

    static func derive(secret: [UInt8], seed: [UInt8], policy: SecurityPolicy) -> SymmetricKeys {
        let s = policy.symmetricSigningKeyLength
        let e = policy.symmetricEncryptionKeyLength
        let material = pSHA256(secret: secret, seed: seed, length: s + e + 16)
        return SymmetricKeys(
            signingKey: SymmetricKey(data: material[0..<s]),
            encryptionKey: SymmetricKey(data: material[s..<s + e]),
            iv: Array(material[(s + e)...]))
    }

    func sign(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: bytes, using: signingKey))
    }

    func verify(_ signature: ArraySlice<UInt8>, for bytes: ArraySlice<UInt8>) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: bytes, using: signingKey)
    }

    func encrypt(_ bytes: ArraySlice<UInt8>) throws -> [UInt8] {
        Array(try AES._CBC.encrypt(bytes, using: encryptionKey, iv: AES._CBC.IV(ivBytes: iv), noPadding: true))
    }

    func decrypt(_ bytes: ArraySlice<UInt8>) throws -> [UInt8] {
        Array(try AES._CBC.decrypt(bytes, using: encryptionKey, iv: AES._CBC.IV(ivBytes: iv), noPadding: true))
    }
}

/// RSA operations with the client's private key and the server's public key.
struct AsymmetricContext: Sendable {
    let ownKey: _RSA.Signing.PrivateKey
    let ownCertificate: [UInt8]
    let peerCertificate: [UInt8]
    let peerKey: _RSA.Signing.PublicKey

    init(identity: ApplicationIdentity, serverCertificate: [UInt8]) throws {
        ownKey = identity.privateKey
        ownCertificate = identity.certificateDER
        peerCertificate = serverCertificate
        let cert: Certificate
        do { cert = try Certificate(derEncoded: serverCertificate) } catch {
            throw OPCUAError.security("server certificate is not valid DER X.509: \(error)")
        }
        guard let key = _RSA.Signing.PublicKey(cert.publicKey) else {
            throw OPCUAError.security("server certificate does not carry an RSA key")
        }
        peerKey = key
    }

    var ownKeyBytes: Int { ownKey.keySizeInBits / 8 }
    var peerKeyBytes: Int { peerKey.keySizeInBits / 8 }
    var peerThumbprint: [UInt8] { Array(Insecure.SHA1.hash(data: peerCertificate)) }

    func sign(_ bytes: ArraySlice<UInt8>) throws -> [UInt8] {
        Array(try ownKey.signature(for: SHA256.hash(data: bytes), padding: .insecurePKCS1v1_5).rawRepresentation)
    }

    func verify(_ signature: ArraySlice<UInt8>, for bytes: ArraySlice<UInt8>) -> Bool {
        peerKey.isValidSignature(
            _RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: bytes),
            padding: .insecurePKCS1v1_5)
    }

    /// RSA-OAEP(SHA-1) block by block, as OPC UA splits the plaintext into key-size − 42 byte blocks.
    func encrypt(_ bytes: ArraySlice<UInt8>) throws -> [UInt8] {
        let key = try _RSA.Encryption.PublicKey(derRepresentation: peerKey.derRepresentation)
        let block = peerKeyBytes - SecurityPolicy.oaepOverhead
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + block - 1) / block * peerKeyBytes)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let j = min(i + block, bytes.endIndex)
            out += try key.encrypt(bytes[i..<j], padding: .PKCS1_OAEP)
            i = j
        }
        return out
    }

    func decrypt(_ bytes: ArraySlice<UInt8>) throws -> [UInt8] {
        let key = try _RSA.Encryption.PrivateKey(derRepresentation: ownKey.derRepresentation)
        let block = ownKeyBytes
        guard bytes.count % block == 0 else {
            throw OPCUAError.security("asymmetric ciphertext of \(bytes.count) bytes is not a multiple of \(block)")
        }
        var out: [UInt8] = []
        var i = bytes.startIndex
        while i < bytes.endIndex {
            out += try key.decrypt(bytes[i..<i + block], padding: .PKCS1_OAEP)
            i += block
        }
        return out
    }

    /// Encrypts a UserName password for the token policy: OAEP(len ‖ password ‖ serverNonce).
    static func encryptSecret(_ secret: [UInt8], nonce: [UInt8], serverCertificate: [UInt8]) throws -> [UInt8] {
        let cert = try Certificate(derEncoded: serverCertificate)
        guard let sig = _RSA.Signing.PublicKey(cert.publicKey) else {
            throw OPCUAError.security("server certificate does not carry an RSA key")
        }
        let key = try _RSA.Encryption.PublicKey(derRepresentation: sig.derRepresentation)
        var w = BinaryWriter()
        w.write(UInt32(secret.count + nonce.count))
        w.write(raw: secret)
        w.write(raw: nonce)
        let block = sig.keySizeInBits / 8 - SecurityPolicy.oaepOverhead
        var out: [UInt8] = []
        var i = 0
        while i < w.bytes.count {
            let j = min(i + block, w.bytes.count)
            out += try key.encrypt(w.bytes[i..<j], padding: .PKCS1_OAEP)
            i = j
        }
        return out
    }
}

/// Random bytes from the system CSPRNG.
func secureRandomBytes(_ count: Int) -> [UInt8] {
    var g = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &g) }
}
