import Control
import Foundation
import Identification
import Synchronization
import Tags

/// What `edgepilot loop NAME test start` asks for; times in seconds (the CLI parses `30s`, `5m`).
public struct PlantTestRequest: Codable, Sendable, Equatable {
    public var mvs: [String]
    /// `gbn` or `step`.
    public var signal: String
    /// Amplitude in the MVs' engineering units; nil = `PlantTestPlan.defaultAmplitudeFraction` of each MV's span.
    public var amplitude: Double?
    /// GBN: mean time between switches; step: time each level is held. nil = derived from the settling time.
    public var switchTimeSeconds: Double?
    /// nil = 6 × settling time (GBN), 4 × settling time (step: up, back, down, back).
    public var durationSeconds: Double?
    /// nil = from the loop's model (dead time + 4 time constants of its slowest path) when it has transfer functions.
    public var settlingTimeSeconds: Double?
    /// nil = taken from the clock; recorded either way, so the sequence can be reproduced.
    public var seed: UInt64?

    public init(
        mvs: [String], signal: String, amplitude: Double? = nil, switchTimeSeconds: Double? = nil,
        durationSeconds: Double? = nil, settlingTimeSeconds: Double? = nil, seed: UInt64? = nil
    ) {
        self.mvs = mvs
        self.signal = signal
        self.amplitude = amplitude
        self.switchTimeSeconds = switchTimeSeconds
        self.durationSeconds = durationSeconds
        self.settlingTimeSeconds = settlingTimeSeconds
        self.seed = seed
    }
}

/// A plant test as planned, run and recorded: what `test list|show` and `loops` show (decision 0034).
public struct PlantTestReport: Codable, Sendable, Equatable {
    /// Its row in the history file (nil while unrecorded).
    public var id: Int64?
    public var loop: String
    public var mvs: [String]
    public var signal: String
    /// Per tested MV, engineering units.
    public var amplitudes: [Double]
    public var switchTimeSeconds: Double
    /// GBN only: switch probability per cycle after the minimum hold, and the hold.
    public var switchProbability: Double?
    public var minimumHoldSeconds: Double?
    public var durationSeconds: Double
    public var settlingTimeSeconds: Double
    public var seed: UInt64
    public var periodMilliseconds: Int
    /// µs since the Unix epoch.
    public var startedAt: Int64
    public var endedAt: Int64?
    public var startedBy: String
    /// The mode the test returns to.
    public var returnMode: String
    /// `running`, `completed`, `stopped` or `aborted`.
    public var outcome: String
    public var reason: String?
    /// While running: 0…100 and the seconds left.
    public var percent: Double?
    public var secondsLeft: Double?

    public init(
        id: Int64?, loop: String, mvs: [String], signal: String, amplitudes: [Double], switchTimeSeconds: Double,
        switchProbability: Double? = nil, minimumHoldSeconds: Double? = nil, durationSeconds: Double,
        settlingTimeSeconds: Double, seed: UInt64, periodMilliseconds: Int, startedAt: Int64, endedAt: Int64? = nil,
        startedBy: String, returnMode: String, outcome: String, reason: String? = nil, percent: Double? = nil,
        secondsLeft: Double? = nil
    ) {
        self.id = id
        self.loop = loop
        self.mvs = mvs
        self.signal = signal
        self.amplitudes = amplitudes
        self.switchTimeSeconds = switchTimeSeconds
        self.switchProbability = switchProbability
        self.minimumHoldSeconds = minimumHoldSeconds
        self.durationSeconds = durationSeconds
        self.settlingTimeSeconds = settlingTimeSeconds
        self.seed = seed
        self.periodMilliseconds = periodMilliseconds
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.startedBy = startedBy
        self.returnMode = returnMode
        self.outcome = outcome
        self.reason = reason
        self.percent = percent
        self.secondsLeft = secondsLeft
    }
}

/// A test planned on the caller's thread, its moves precomputed, waiting for `LoopRunner.run(_:)`.
public struct PlantTestPlan: @unchecked Sendable {
    /// The default amplitude: this fraction of each tested MV's engineering span.
    public static let defaultAmplitudeFraction = 0.05
    /// The most cycles a test may precompute (per MV), so a typo in --duration cannot take the box's memory.
    public static let maxCycles = 1_000_000
    public var report: PlantTestReport
    let test: PlantTest
}

extension LoopRunner {
    /// Plans a test: checks the request against the loop, derives the defaults and precomputes the moves. Nothing
    /// changes in the loop; `run(_:)` starts it.
    public func planTest(_ r: PlantTestRequest, by source: String, at wall: Int64) throws(LoopCommandError)
        -> PlantTestPlan
    {
        let d = definition
        let period = Double(d.periodMilliseconds) / 1000
        let (mode, applied, busy) = board.withLock {
            (board.scalars.mode, (0..<nu).map { board.appliedMV($0) }, board.pendingSwap != nil)
        }
        if mode == .test || testRunning { throw LoopCommandError("loop '\(d.name)' is already running a plant test") }
        if busy { throw LoopCommandError("loop '\(d.name)' is applying a new controller; try again in a moment") }
        guard !r.mvs.isEmpty else { throw LoopCommandError("name at least one MV to test (--mv TAG)") }
        var indices: [Int] = []
        for tag in r.mvs {
            guard let l = d.mvs.firstIndex(where: { $0.tag == tag }) else {
                throw LoopCommandError(
                    "loop '\(d.name)' has no MV '\(tag)'; MVs: \(d.mvs.map(\.tag).joined(separator: ", "))")
            }
            guard !indices.contains(l) else { throw LoopCommandError("MV '\(tag)' is named twice") }
            indices.append(l)
        }
        let signal = r.signal.lowercased()
        guard signal == "gbn" || signal == "step" else {
            throw LoopCommandError("--signal must be gbn or step, not '\(r.signal)'")
        }
        for (name, v) in [
            ("settling time", r.settlingTimeSeconds), ("switch time", r.switchTimeSeconds),
            ("duration", r.durationSeconds), ("amplitude", r.amplitude),
        ] {
            if let v, !(v.isFinite && v > 0) { throw LoopCommandError("the \(name) must be positive, not \(v)") }
        }
        guard let settling = r.settlingTimeSeconds ?? Self.modelSettlingTime(modelDefinitionSnapshot) else {
            throw LoopCommandError(
                "give the process's settling time (--settling-time, e.g. 5m): the loop's model has no transfer "
                    + "functions to derive it from")
        }
        guard settling >= 2 * period else {
            throw LoopCommandError(
                "settling time \(settling) s is under two loop periods (\(period) s): nothing to identify")
        }
        let seed = r.seed ?? UInt64(bitPattern: wall)
        let duration =
            r.durationSeconds
            ?? (signal == "gbn"
                ? GeneralizedBinaryNoise.recommendedDuration(settlingTime: settling) : 4 * settling)
        let cycles = Int((duration / period).rounded(.up))
        guard cycles >= 2, cycles <= PlantTestPlan.maxCycles else {
            throw LoopCommandError(
                "a test of \(duration) s at a \(d.periodMilliseconds) ms period is \(cycles) cycles; "
                    + "between 2 and \(PlantTestPlan.maxCycles) are allowed")
        }
        // Amplitudes: around the value each MV has now, inside its limits.
        var amplitudes: [Double] = []
        for l in indices {
            let mv = d.mvs[l]
            let span = mv.span ?? (mv.high - mv.low)
            let a = r.amplitude ?? PlantTestPlan.defaultAmplitudeFraction * span
            let now = applied[l]
            guard now.isFinite else {
                throw LoopCommandError("MV '\(mv.tag)' has no known value yet; wait for the loop to read it")
            }
            guard a.isFinite, a > 0 else {
                throw LoopCommandError("MV '\(mv.tag)' has no engineering span; give --amplitude")
            }
            if now - a < mv.low - 1e-9 || now + a > mv.high + 1e-9 {
                throw LoopCommandError(
                    "amplitude \(formatDouble(a)) does not fit MV '\(mv.tag)' around its value "
                        + "\(formatDouble(now)): \(formatDouble(now - a)) … \(formatDouble(now + a)) leaves its limits "
                        + "\(formatDouble(mv.low)) … \(formatDouble(mv.high)); use at most "
                        + "\(formatDouble(max(0, min(now - mv.low, mv.high - now))))")
            }
            amplitudes.append(a)
        }
        // The moves, precomputed here (decision 0034: the loop thread reads one number per MV per cycle).
        var offsets = [[Double]](repeating: [], count: nu)
        let switchTime: Double
        var probability: Double?
        var hold: Double?
        if signal == "gbn" {
            let generator: GeneralizedBinaryNoise
            if let t = r.switchTimeSeconds {
                let mean = max(1, t / period)
                let h = max(1, Int((mean / 3).rounded()))
                generator = GeneralizedBinaryNoise(
                    amplitude: 1, switchProbability: 1 / max(1, mean - Double(h) + 1), minimumHold: h, seed: seed)
            } else {
                generator = GeneralizedBinaryNoise(settlingTime: settling, period: period, amplitude: 1, seed: seed)
            }
            let generators = generator.uncorrelated(indices.count)
            for (k, l) in indices.enumerated() {
                offsets[l] = generators[k].samples(cycles).map { $0 * amplitudes[k] }
            }
            switchTime = generator.meanSwitchInterval * period
            probability = generator.switchProbability
            hold = Double(generator.minimumHold) * period
        } else {
            let holdCycles = max(1, Int(((r.switchTimeSeconds ?? settling) / period).rounded(.up)))
            for (k, l) in indices.enumerated() {
                offsets[l] = StepTest(amplitude: amplitudes[k], hold: holdCycles).samples(cycles)
            }
            switchTime = Double(holdCycles) * period
        }
        let test: PlantTest
        do {
            test = try PlantTest(
                cycles: cycles, offsets: offsets, bandLow: d.cvs.map(\.softLow), bandHigh: d.cvs.map(\.softHigh))
        } catch {
            throw LoopCommandError("plant test: \(error.message)")
        }
        let report = PlantTestReport(
            id: nil, loop: d.name, mvs: indices.map { d.mvs[$0].tag }, signal: signal, amplitudes: amplitudes,
            switchTimeSeconds: switchTime, switchProbability: probability, minimumHoldSeconds: hold,
            durationSeconds: Double(cycles) * period, settlingTimeSeconds: settling, seed: seed,
            periodMilliseconds: d.periodMilliseconds, startedAt: wall, endedAt: nil, startedBy: source,
            returnMode: mode.rawValue, outcome: "running", reason: nil, percent: 0,
            secondsLeft: Double(cycles) * period)
        return PlantTestPlan(report: report, test: test)
    }

    /// Starts a planned test at the next cycle. `report.id` should be the test's history row by now.
    public func run(_ plan: PlantTestPlan) throws(LoopCommandError) {
        rebuildLock.lock()
        defer { rebuildLock.unlock() }
        let busy =
            testRunning
            || board.withLock {
                if board.pendingSwap != nil || board.scalars.mode == .test { return true }
                // The board keeps the test alive, so it is never freed on the loop thread; the next test replaces it.
                board.currentTest = plan.test
                board.testDropped = false
                return false
            }
        if busy { throw LoopCommandError("loop '\(definition.name)' is busy; the test did not start") }
        testRecord.withLock { $0 = plan.report }
        commands.withLock { $0.append(.beginTest(plan.test)) }
    }

    /// Ends the running test at the next cycle; the loop returns to the mode it was started from.
    public func stopTest() throws(LoopCommandError) {
        guard testRunning else { throw LoopCommandError("loop '\(definition.name)' is not running a plant test") }
        commands.withLock { $0.append(.stopTest) }
    }

    /// Whether a test was started and has not ended.
    public var testRunning: Bool { testRecord.withLock { $0?.outcome == "running" } }

    /// The current or last test of this run of the loop, with its progress.
    public var plantTest: PlantTestReport? {
        guard var r = testRecord.withLock({ $0 }) else { return nil }
        if r.outcome == "running" && board.withLock({ board.testDropped }) {
            // The loop never began it: nothing else will report its end.
            testEnded(
                outcome: "aborted", reason: "plant test did not start: the loop changed mode in the same cycle",
                at: Int64(Date().timeIntervalSince1970 * 1_000_000))
            r = testRecord.withLock { $0 } ?? r
        }
        if r.outcome == "running" {
            let (position, cycles) = board.withLock { (board.scalars.testPosition, board.scalars.testCycles) }
            if cycles > 0 {
                r.percent = 100 * Double(position) / Double(cycles)
                r.secondsLeft = Double(cycles - position) * Double(definition.periodMilliseconds) / 1000
            }
        } else {
            r.percent = nil
            r.secondsLeft = nil
        }
        return r
    }

    /// Called (on the MV writer's thread, once) when a test ends, with its final report: the agent records it.
    public func onTestEnd(_ body: @escaping @Sendable (PlantTestReport) -> Void) {
        testEndHandler.withLock { $0 = body }
    }

    /// The event log's view of a test's end: books it and hands it to the agent.
    func testEnded(outcome: String, reason: String, at wall: Int64) {
        let ended: PlantTestReport? = testRecord.withLock { record in
            guard var r = record, r.outcome == "running" else { return nil }
            r.outcome = outcome
            r.reason = reason
            r.endedAt = wall
            r.percent = nil
            r.secondsLeft = nil
            record = r
            return r
        }
        if let ended, let handler = testEndHandler.withLock({ $0 }) { handler(ended) }
    }

    var modelDefinitionSnapshot: LoopDefinition {
        rebuildLock.lock()
        defer { rebuildLock.unlock() }
        return modelDefinition
    }

    /// Dead time + 4 time constants of the slowest MV→CV path, when the model is transfer functions.
    static func modelSettlingTime(_ d: LoopDefinition) -> Double? {
        guard case .transferFunctions(let g, _) = d.model else { return nil }
        let times = g.flatMap { $0 }.compactMap { $0.map { $0.deadTime + 4 * $0.timeConstant } }
        return times.max().flatMap { $0 > 0 ? $0 : nil }
    }
}
