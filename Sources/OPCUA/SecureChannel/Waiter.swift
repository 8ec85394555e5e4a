import Foundation

/// A one-shot result box that a calling thread blocks on.
final class Waiter: @unchecked Sendable {
    private let cond = NSCondition()
    private var result: Result<[UInt8], OPCUAError>?

    func complete(_ r: Result<[UInt8], OPCUAError>) {
        cond.lock()
        if result == nil { result = r }
        cond.signal()
        cond.unlock()
    }

    func wait(timeout: Double, what: String) throws -> [UInt8] {
        let deadline = Date(timeIntervalSinceNow: timeout)
        cond.lock()
        defer { cond.unlock() }
        while result == nil {
            if !cond.wait(until: deadline) && result == nil {
                result = .failure(.timeout("\(what) got no response within \(timeout) s"))
            }
        }
        return try result!.get()
    }
}
