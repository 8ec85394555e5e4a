import CMosquitto
import Foundation

// libmosquitto's result codes as text and as `MQTTClientError.Kind`, for the client's errors.

/// libmosquitto's text for result code `rc` (errno's text for `MOSQ_ERR_ERRNO`).
func errorString(_ rc: Int32) -> String {
    if rc == MOSQ_ERR_ERRNO.rawValue {
        return String(cString: strerror(errno))
    }
    return String(cString: mosquitto_strerror(rc))
}

/// Whether a libmosquitto log line is about TLS: OpenSSL's reasons name SSL, TLS or a certificate.
func isTLSMessage(_ text: String) -> Bool {
    text.contains("SSL") || text.contains("TLS") || text.contains("certificate")
}

/// The kind of error a libmosquitto result code stands for.
func errorKind(forMosquittoCode rc: Int32) -> MQTTClientError.Kind {
    switch rc {
    case MOSQ_ERR_TLS.rawValue, MOSQ_ERR_TLS_HANDSHAKE.rawValue, MOSQ_ERR_OCSP.rawValue: return .tls
    case MOSQ_ERR_CONN_REFUSED.rawValue, MOSQ_ERR_AUTH.rawValue: return .connectionRefused
    case MOSQ_ERR_NO_CONN.rawValue: return .notConnected
    default: return .network
    }
}
