import Foundation

/// A request waiting for its response, in `SecureChannel.pending`.
final class PendingRequest: @unchecked Sendable {
    /// How the response reaches whoever waits for it.
    enum Delivery {
        /// An owned copy of the body, for responses that are decoded into structures anyway.
        case copy(SecureChannel.Completion)
        /// A reader over the body where it lies, on the reader thread: the receive buffer for a single-chunk
        /// response, else a gathering buffer the channel reuses. Nothing is copied or allocated for it.
        case borrow(SecureChannel.BorrowedCompletion)
        /// The body is gathered into the caller's reusable buffer, and the caller woken through it.
        case into(ResponseBuffer)
    }

    /// Fixed for `.into` entries; a reused `.borrow` entry gets its completion again with each request.
    var delivery: Delivery
    /// Set by `register`; a reused entry gets a new one for every request.
    var requestId: UInt32 = 0
    var chunks = 0
    /// Gathers the chunks of `.copy` and multi-chunk `.borrow` responses.
    var body: [UInt8] = []

    init(_ delivery: Delivery) { self.delivery = delivery }

    /// The completion of a pooled entry between requests; it captures nothing, so assigning it allocates nothing.
    static let idle: SecureChannel.BorrowedCompletion = { _ in }

    var bodyCount: Int {
        if case .into(let target) = delivery { return target.bytes.count }
        return body.count
    }

    func withBody(_ change: (inout [UInt8]) -> Void) {
        if case .into(let target) = delivery { change(&target.bytes) } else { change(&body) }
    }

    /// Completes a `.copy` or `.into` request with the gathered body (`.borrow` ones complete in `deliver`).
    func finish() {
        switch delivery {
        case .copy(let completion):
            let b = body
            body = []
            completion(.success(b))
        case .borrow:
            break
        case .into(let target):
            target.complete(requestId, nil)
        }
    }

    func fail(_ e: OPCUAError) {
        switch delivery {
        case .copy(let completion): completion(.failure(e))
        case .borrow(let completion): completion(.failure(e))
        case .into(let target): target.complete(requestId, e)
        }
    }
}

/// A response buffer one caller reuses request after request, and the condition the caller waits on.
///
/// The reader thread appends into `bytes` under the channel's lock while the request is pending; the caller reads
/// `bytes` only after `wait` returned for its request id, and sends its next request only after that.
final class ResponseBuffer: @unchecked Sendable {
    var bytes: [UInt8] = []
    private let cond = NSCondition()
    /// The last request completed, and how; a late completion of an abandoned request carries another id.
    private var completed: UInt32 = 0
    private var failure: OPCUAError?

    func complete(_ requestId: UInt32, _ error: OPCUAError?) {
        cond.lock()
        completed = requestId
        failure = error
        cond.signal()
        cond.unlock()
    }

    func wait(for requestId: UInt32, timeout: Double, what: String) throws {
        let deadline = Date(timeIntervalSinceNow: timeout)
        cond.lock()
        defer { cond.unlock() }
        while completed != requestId {
            if !cond.wait(until: deadline) && completed != requestId {
                throw OPCUAError.timeout("\(what) got no response within \(timeout) s")
            }
        }
        if let failure { throw failure }
    }
}
