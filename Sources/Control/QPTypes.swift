// The QP solver's settings and results, shared by the solver, the MPC and the supervisor's budget.

/// Outcome of a QP solve.
public enum QPStatus: String, Sendable, Equatable {
    /// KKT conditions hold to the tolerances.
    case optimal
    /// Iteration limit reached; `solution` is the last dual-feasible iterate (may violate constraints).
    case iterationLimit
    /// Time budget exhausted; same meaning as `iterationLimit`.
    case timeLimit
    /// The constraints cannot all hold (detected from a dependent violated constraint).
    case infeasible
    /// The factorization broke down or produced non-finite numbers.
    case numericalFailure
    /// Non-finite cost or bound (NaN anywhere, or a lower bound of +∞ / upper bound of −∞).
    case invalidInput
}

/// Tuning of the dense QP solver.
public struct QPSettings: Sendable {
    /// Maximum add/drop iterations per solve; 0 picks 3·(variables + constraints) + 50.
    public var maxIterations: Int
    /// Largest accepted violation of a constraint, measured along the unit normal of its row.
    public var primalTolerance: Double
    /// Start from the previous working set, whose factorization stays valid because H and A are fixed.
    public var warmStart: Bool
    /// Optional budget per solve in nanoseconds; needs a clock passed to the solver.
    public var timeBudgetNanoseconds: UInt64?

    public init(
        maxIterations: Int = 0, primalTolerance: Double = 1e-9, warmStart: Bool = true,
        timeBudgetNanoseconds: UInt64? = nil
    ) {
        self.maxIterations = maxIterations
        self.primalTolerance = primalTolerance
        self.warmStart = warmStart
        self.timeBudgetNanoseconds = timeBudgetNanoseconds
    }
}

/// Summary of one solve.
public struct QPResult: Sendable, Equatable {
    public var status: QPStatus
    /// Add and drop steps taken, including the warm-start repair.
    public var iterations: Int
    /// Constraints in the final working set.
    public var activeCount: Int
    /// Largest constraint violation of the returned point (0 when optimal up to tolerance).
    public var maxViolation: Double
}
