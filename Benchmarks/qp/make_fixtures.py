"""Generates the QP fixtures of Tests/ControlTests/Fixtures/qp_fixtures.jsonl.

Random strictly convex QPs (with general two-sided rows, one-sided rows, equalities, variable bounds
and degenerate rows) are solved by quadprog and DAQP; a problem is kept only when both agree to
1e-9, and its reference solution is quadprog's. A few infeasible problems are added, confirmed
infeasible by both solvers. Run: .venv/bin/python Benchmarks/qp/make_fixtures.py
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from qpio import problem_to_json, solve_daqp, solve_quadprog  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "ControlTests", "Fixtures", "qp_fixtures.jsonl")


def random_problem(rng, n, m, feasible=True):
    M = rng.standard_normal((n, n))
    H = M @ M.T + rng.uniform(0.05, 2.0) * np.eye(n)
    f = rng.standard_normal(n) * rng.choice([1.0, 10.0, 100.0])
    A = rng.standard_normal((m, n))
    if m > 2:
        # a duplicated (degenerate) row, which active-set solvers must cope with
        A[-1] = A[0] * rng.uniform(0.5, 2.0)
    x0 = rng.standard_normal(n)
    ax = A @ x0
    lower = ax - rng.uniform(0.0, 2.0, m)
    upper = ax + rng.uniform(0.0, 2.0, m)
    kind = rng.uniform(size=m)
    lower[kind < 0.25] = -np.inf
    upper[(kind >= 0.25) & (kind < 0.5)] = np.inf
    eq = (kind >= 0.95) & (np.arange(m) < min(n - 1, m))
    lower[eq] = upper[eq] = ax[eq]
    if m > 2:
        lower[-1], upper[-1] = -np.inf, np.inf
        s = A[-1] @ x0
        lower[-1] = s - 0.3
    xlower = np.full(n, -np.inf)
    xupper = np.full(n, np.inf)
    bounded = rng.uniform(size=n) < 0.5
    xlower[bounded] = x0[bounded] - rng.uniform(0, 1, bounded.sum())
    xupper[bounded] = x0[bounded] + rng.uniform(0, 1, bounded.sum())
    if not feasible:
        # two contradictory rows: a·x ≥ 1 and a·x ≤ −1
        a = rng.standard_normal(n)
        A = np.vstack([A, a, a])
        lower = np.concatenate([lower, [1.0, -np.inf]])
        upper = np.concatenate([upper, [np.inf, -1.0]])
    # Six significant digits keep the fixture file small; the problem is solved as rounded.
    return tuple(short(v) for v in (H, f, A, lower, upper, xlower, xupper))


def short(a):
    return np.vectorize(lambda v: float(f"{v:.6g}") if np.isfinite(v) else v, otypes=[float])(a)


def main():
    rng = np.random.default_rng(20240603)
    lines = []
    sizes = [(2, 0), (2, 3), (3, 6), (5, 4), (8, 16), (10, 30), (12, 5), (20, 40), (25, 60), (40, 80)]
    counts = {(25, 60): 4, (40, 80): 3}
    attempts = 0
    for n, m in sizes:
        kept = 0
        while kept < counts.get((n, m), 8):
            attempts += 1
            p = random_problem(rng, n, m)
            xq = solve_quadprog(*p)
            xd, flag, _ = solve_daqp(*p, primal_tol=1e-12)
            if xq is None or flag != 1 or np.max(np.abs(xq - xd)) > 1e-9 * max(1, np.max(np.abs(xq))):
                continue
            d = json.loads(problem_to_json(*p))
            d["x"] = xq.tolist()
            d["status"] = "optimal"
            lines.append(json.dumps(d, separators=(",", ":")))
            kept += 1
    for n, m in [(3, 2), (6, 8), (15, 20)]:
        for _ in range(3):
            p = random_problem(rng, n, m, feasible=False)
            xq = solve_quadprog(*p)
            _, flag, _ = solve_daqp(*p)
            assert xq is None and flag == -1, "expected an infeasible problem"
            d = json.loads(problem_to_json(*p))
            d["x"] = None
            d["status"] = "infeasible"
            lines.append(json.dumps(d, separators=(",", ":")))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} problems ({attempts} feasible candidates tried) to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
