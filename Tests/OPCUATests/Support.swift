import Foundation
import TestSupport
import Testing

/// The asyncua simulator a suite shares, set by the `.simulator` trait for the tests of that suite.
enum SharedSimulator {
    @TaskLocal static var current: OPCUASimulator?

    /// The suite's simulator; fails the test when the suite has none.
    static func get(sourceLocation: SourceLocation = #_sourceLocation) throws -> OPCUASimulator {
        try #require(current, "the suite has no .simulator trait", sourceLocation: sourceLocation)
    }
}

/// Starts one simulator before a suite's first test and kills it (SIGKILL) after its last: the class-wide
/// set-up and tear-down XCTest had. A simulator that cannot start fails the suite.
struct SimulatorTrait: SuiteTrait, TestScoping {
    let make: @Sendable () throws -> OPCUASimulator

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let simulator = try make()
        defer { simulator.kill() }
        try await SharedSimulator.$current.withValue(simulator) { try await function() }
    }
}

extension Trait where Self == SimulatorTrait {
    /// One simulator for the whole suite, made by `make`.
    static func simulator(_ make: @escaping @Sendable () throws -> OPCUASimulator = { try OPCUASimulator() }) -> Self {
        SimulatorTrait(make: make)
    }
}

/// Thread-safe collector for subscription callbacks.
final class Collector<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func append(contentsOf xs: [T]) {
        lock.lock()
        items += xs
        lock.unlock()
    }
    var all: [T] {
        lock.lock()
        defer { lock.unlock() }
        return items
    }
    var count: Int { all.count }
    func reset() {
        lock.lock()
        items = []
        lock.unlock()
    }
}
