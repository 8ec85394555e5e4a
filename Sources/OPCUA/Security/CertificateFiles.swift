import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

extension ApplicationIdentity {
    /// Loads a certificate (DER or PEM) and its RSA private key (PEM) from explicit files, e.g. one issued by the
    /// plant's CA. The ApplicationUri is the certificate's SubjectAltName URI unless `applicationUri` is given.
    public static func load(certificatePath: String, keyPath: String, applicationUri: String? = nil) throws
        -> ApplicationIdentity
    {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: certificatePath)))
        let cert: Certificate
        if let text = String(bytes: data, encoding: .utf8), text.contains("-----BEGIN CERTIFICATE") {
            cert = try Certificate(pemEncoded: text)
        } else {
            cert = try Certificate(derEncoded: data)
        }
        var serializer = DER.Serializer()
        try serializer.serialize(cert)
        let key = try _RSA.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: keyPath, encoding: .utf8))
        let uris =
            (try? cert.extensions.subjectAlternativeNames)??.compactMap { name -> String? in
                if case .uniformResourceIdentifier(let u) = name { return u }
                return nil
            } ?? []
        guard let uri = applicationUri ?? uris.first else {
            throw OPCUAError.invalidArgument(
                "certificate \(certificatePath) has no SubjectAltName URI; OPC UA needs one equal to the ApplicationUri"
            )
        }
        if let applicationUri, !uris.contains(applicationUri) {
            throw OPCUAError.invalidArgument(
                "certificate \(certificatePath) is for \(uris), not ApplicationUri \(applicationUri)")
        }
        return ApplicationIdentity(applicationUri: uri, certificateDER: serializer.serializedBytes, privateKey: key)
    }
}

/// SHA-1 thumbprint of a DER certificate, lower-case hex: how OPC UA names certificates (and rejected/ files).
public func certificateThumbprint(_ der: [UInt8]) -> String {
    hex(Array(Insecure.SHA1.hash(data: der)))
}

/// Subject common name and validity of a DER or PEM certificate, for listings; nil if it does not parse.
public func certificateSummary(_ data: [UInt8]) -> (subject: String, notAfter: Date, der: [UInt8])? {
    let cert: Certificate
    if let text = String(bytes: data, encoding: .utf8), text.contains("-----BEGIN CERTIFICATE") {
        guard let c = try? Certificate(pemEncoded: text) else { return nil }
        cert = c
    } else {
        guard let c = try? Certificate(derEncoded: data) else { return nil }
        cert = c
    }
    var serializer = DER.Serializer()
    guard (try? serializer.serialize(cert)) != nil else { return nil }
    return ("\(cert.subject)", cert.notValidAfter, serializer.serializedBytes)
}
