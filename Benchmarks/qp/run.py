"""Closed-loop MPC QP benchmark: qpbench (Control's DenseQPSolver) vs DAQP and OSQP, one run, side by side.

For each scenario, `qpbench generate` runs the Swift MPC in closed loop and writes the QP it solved at
every step; then the same sequence is solved by
  - qpbench solve  (hot-started from the previous working set; solve time only, factorization of the
                    fixed H done once at setup, as in the controller), and again with --cold (every
                    solve from the unconstrained minimum) to show what the hot start is worth,
  - DAQP 0.11      (daqp.solve per problem: setup + solve, from its own info),
  - OSQP 1.1.3     (one setup, then update(q, l, u) + warm-started solve; its info.solve_time;
                    eps_abs = eps_rel = 1e-6),
and every solution is compared with quadprog's (dual active set, exact to round-off).

Run from the repository root:  .venv/bin/python Benchmarks/qp/run.py
Options: --qpbench PATH (default: build it with `swift build -c release --product qpbench`),
         --steps N (default 300), --scenarios a,b,...
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from qpio import BIG, daqp_arrays, problem_from_json, solve_quadprog  # noqa: E402

SCENARIOS = ["quadtank-30-10", "quadtank-60-20", "quadtank-100-40", "woodberry-40-10"]


def build_qpbench():
    root = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
    subprocess.run(["swift", "build", "-c", "release", "--product", "qpbench", "-j", "2"], cwd=root, check=True)
    bin_dir = subprocess.run(
        ["swift", "build", "-c", "release", "--show-bin-path"], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()
    return os.path.join(bin_dir, "qpbench")


def stats(times):
    t = np.sort(np.asarray(times))
    return float(np.median(t)), float(np.percentile(t, 99))


def run_daqp(problems):
    import daqp

    xs, times, iters = [], [], []
    for p in problems:
        H, f, A, bu, bl, sense = daqp_arrays(*p)
        x, _, flag, info = daqp.solve(H, f, A, bu, bl, sense)
        xs.append(np.asarray(x) if flag == 1 else None)
        times.append((info["solve_time"] + info["setup_time"]) * 1e6)
        iters.append(info["iterations"])
    return xs, times, iters


def run_osqp(problems):
    import osqp
    import scipy.sparse as sp

    def stacked(p):
        H, f, A, lower, upper, xlower, xupper = p
        n = H.shape[0]
        Aall = np.vstack([np.eye(n), A]) if A.size else np.eye(n)
        l = np.concatenate([xlower, lower])
        u = np.concatenate([xupper, upper])
        return H, f, Aall, np.clip(l, -BIG, BIG), np.clip(u, -BIG, BIG)

    H, f, Aall, l, u = stacked(problems[0])
    solver = osqp.OSQP()
    solver.setup(
        sp.triu(sp.csc_matrix(H), format="csc"), f, sp.csc_matrix(Aall), l, u,
        eps_abs=1e-6, eps_rel=1e-6, warm_starting=True, verbose=False, max_iter=100000,
    )
    xs, times, iters = [], [], []
    for p in problems:
        _, f, _, l, u = stacked(p)
        solver.update(q=f, l=l, u=u)
        res = solver.solve()
        ok = res.info.status_val in (1, 2)  # solved, solved inaccurate
        xs.append(np.asarray(res.x) if ok else None)
        times.append(res.info.solve_time * 1e6)
        iters.append(res.info.iter)
    return xs, times, iters


def max_diff(xs, refs):
    worst = 0.0
    for x, r in zip(xs, refs):
        if r is None:
            continue
        if x is None:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(np.asarray(x) - r))))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qpbench")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = ap.parse_args()
    qpbench = args.qpbench or build_qpbench()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenarios.split(","):
            qp_file = os.path.join(tmp, name + ".jsonl")
            out_file = os.path.join(tmp, name + ".out.jsonl")
            stats_file = os.path.join(tmp, name + ".stats.json")
            subprocess.run(
                [qpbench, "generate", name, "--out", qp_file, "--steps", str(args.steps), "--stats", stats_file],
                check=True,
            )
            subprocess.run([qpbench, "solve", qp_file, "--out", out_file], check=True)
            cold_file = os.path.join(tmp, name + ".cold.jsonl")
            subprocess.run([qpbench, "solve", qp_file, "--out", cold_file, "--cold"], check=True)
            with open(qp_file) as fh:
                problems = [problem_from_json(line) for line in fh if line.strip()]
            with open(out_file) as fh:
                ours = [json.loads(line) for line in fh if line.strip()]
            with open(cold_file) as fh:
                cold = [json.loads(line) for line in fh if line.strip()]
            with open(stats_file) as fh:
                step = json.load(fh)
            refs = [solve_quadprog(*p) for p in problems]
            our_x = [np.asarray(r["x"]) if r["status"] == "optimal" else None for r in ours]
            daqp_x, daqp_t, daqp_it = run_daqp(problems)
            osqp_x, osqp_t, osqp_it = run_osqp(problems)
            n = problems[0][0].shape[0]
            m = problems[0][2].shape[0]
            rows.append(
                dict(
                    name=name, n=n, m=m, count=len(problems), step=step,
                    ours=(stats([r["solve_us"] for r in ours]), [r["iterations"] for r in ours], max_diff(our_x, refs),
                          sum(r["status"] != "optimal" for r in ours)),
                    cold=(stats([r["solve_us"] for r in cold]), [r["iterations"] for r in cold],
                          max_diff([np.asarray(r["x"]) if r["status"] == "optimal" else None for r in cold], refs),
                          sum(r["status"] != "optimal" for r in cold)),
                    daqp=(stats(daqp_t), daqp_it, max_diff(daqp_x, refs), sum(x is None for x in daqp_x)),
                    osqp=(stats(osqp_t), osqp_it, max_diff(osqp_x, refs), sum(x is None for x in osqp_x)),
                )
            )
    print_table(rows)


def print_table(rows):
    print()
    print("Closed-loop MPC QP sequences, solve times in µs (median / p99), iterations (median / max),")
    print("largest |x − x_quadprog| over the sequence, and non-optimal count.")
    print()
    header = f"{'scenario':<17}{'n':>4}{'m':>5}  {'solver':<8}{'median':>9}{'p99':>9}{'iter med/max':>14}{'max |Δx|':>11}{'fail':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        for label, key in (("qpbench", "ours"), ("  cold", "cold"), ("DAQP", "daqp"), ("OSQP", "osqp")):
            (med, p99), it, diff, fails = r[key]
            print(
                f"{r['name'] if key == 'ours' else '':<17}{r['n'] if key == 'ours' else '':>4}"
                f"{r['m'] if key == 'ours' else '':>5}  {label:<8}{med:>9.2f}{p99:>9.2f}"
                f"{f'{int(np.median(it))}/{max(it)}':>14}{diff:>11.1e}{fails:>6}"
            )
    print()
    print(f"{'scenario':<17}{'median ours/DAQP':>18}{'p99 ours/OSQP':>15}{'p99 ours/DAQP':>15}{'MPC step() median / p99 µs':>30}")
    for r in rows:
        (om, op), _, _, _ = r["ours"]
        (dm, dp), _, _, _ = r["daqp"]
        (_, sp99), _, _, _ = r["osqp"]
        print(
            f"{r['name']:<17}{om / dm:>18.3f}{op / sp99:>15.4f}{op / dp:>15.3f}"
            f"{r['step']['step_median_us']:>18.2f} / {r['step']['step_p99_us']:.2f}"
        )
    print()
    print("Targets: median ours ≤ DAQP median (ratio ≤ 1); p99 ours ≤ OSQP p99 / 5 (ratio ≤ 0.2);")
    print("solutions within 1e-6 of the reference; MPC step() at Np=30 under 50 µs median.")


if __name__ == "__main__":
    main()
