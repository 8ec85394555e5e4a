"""Closed-loop MPC QP benchmark: qpbench (Control's DenseQPSolver) vs DAQP and OSQP, one run, side by side.

For each scenario, `qpbench generate` runs the Swift MPC in closed loop and writes the QP it solved at
every step (or a JSON Lines sequence is given with --input); then the same sequence is solved by
  - qpbench solve  hot-started from the previous working set; solve time only, the factorization of the
                   fixed H done once at setup, as in the controller; and again with --cold (every solve
                   from the unconstrained minimum) to show what the hot start is worth,
  - DAQP warm      like for like: Benchmarks/qp/daqp_warm.c, built here against the C sources of the
                   pinned daqp sdist with the wheel's compiler flags; one setup per H and A, then per
                   problem daqp_update_ldp(f, bounds) and daqp_solve from the previous working set and its
                   LDLᵀ factors. Both calls are timed (CLOCK_MONOTONIC) and reported as "solve" (what
                   DAQP's own timer covers) and "upd+solve" (the whole per-cycle work: DAQP moves the
                   O(n² + m·n) transformation of f and the bounds into the update, ours is inside solve()),
  - DAQP Model     the wheel's Python daqp.Model: setup once, update(f, bupper, blower) + solve, its own
                   C timer (solve only): a cross-check that the harness times like the installed wheel,
  - DAQP cold      daqp.solve per problem, setup + solve from its own info ("cold, setup included"),
  - OSQP 1.1.3     one setup, then update(q, l, u) + warm-started solve; its info.solve_time;
                   eps_abs = eps_rel = 1e-6,
and every solution is compared with quadprog's (dual active set, exact to round-off) and ours with DAQP
warm's. DAQP runs with primal_tol = 1e-9 (QPSettings.primalTolerance; both measure along unit normals).

Run from the repository root:  .venv/bin/python Benchmarks/qp/run.py
Options: --qpbench PATH (default: build it with `swift build -c release --product qpbench`),
         --steps N (default 300), --random-steps N (default 1500: the random-soft-SEED sequences, random
         stable plants with soft CV limits, setpoint and disturbance steps, some disturbances beyond the MVs'
         reach so that only the slacks keep the QP feasible), --scenarios a,b,..., --input FILE.jsonl
         (repeatable; solved instead of the scenarios), --no-osqp.
The DAQP sdist is fetched once with pip (PyPI only) into the venv; the harness is built into .build/.
"""

import argparse
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from qpio import BIG, daqp_arrays, problem_from_json, solve_quadprog  # noqa: E402

SCENARIOS = ["quadtank-30-10", "quadtank-60-20", "quadtank-100-40", "woodberry-40-10", "random-soft-1", "random-soft-2",
             "random-soft-3"]
ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
# The same flags as daqp's own setup.py uses for the wheel's extension.
DAQP_CFLAGS = ["-O3", "-DPROFILING", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]
PRIMAL_TOL = 1e-9
# sha256 of the sdists the harness was checked with; another pinned version is used unchecked (with a note).
DAQP_SDIST_SHA256 = {"0.11.0": "2f27baf18d2acca14186498e651b34e0bed455627e777d3fd8ba655e7e40f920"}


def build_qpbench():
    subprocess.run(["swift", "build", "-c", "release", "--product", "qpbench", "-j", "2"], cwd=ROOT, check=True)
    bin_dir = subprocess.run(
        ["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    return os.path.join(bin_dir, "qpbench")


def pinned_daqp_version():
    with open(os.path.join(ROOT, "requirements.txt")) as fh:
        for line in fh:
            m = re.match(r"\s*daqp==([0-9.]+)", line)
            if m:
                return m.group(1)
    raise SystemExit("requirements.txt pins no daqp version")


def build_daqp_warm():
    """The C harness against DAQP's C sources from the pinned sdist (which ships them under csrc/)."""
    version = pinned_daqp_version()
    harness = os.path.join(ROOT, "Benchmarks", "qp", "daqp_warm.c")
    out = os.path.join(ROOT, ".build", f"daqp_warm-{version}")
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(harness):
        return out, version
    cache = os.path.join(sys.prefix, "src", "daqp-sdist")
    sdist = os.path.join(cache, f"daqp-{version}.tar.gz")
    if not os.path.exists(sdist):
        os.makedirs(cache, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"daqp=={version}", "--no-binary", "daqp", "--no-deps",
             "-d", cache],
            check=True,
        )
    with open(sdist, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    if version in DAQP_SDIST_SHA256 and digest != DAQP_SDIST_SHA256[version]:
        raise SystemExit(f"{sdist}: sha256 {digest} is not the one recorded for daqp {version}")
    if version not in DAQP_SDIST_SHA256:
        print(f"note: daqp {version} sdist sha256 {digest} (not recorded in run.py)", file=sys.stderr)
    src = os.path.join(cache, f"daqp-{version}")
    if not os.path.isdir(src):
        with tarfile.open(sdist) as tar:
            tar.extractall(cache, filter="data")
    csrc = os.path.join(src, "csrc")
    sources = sorted(os.path.join(csrc, "src", f) for f in os.listdir(os.path.join(csrc, "src")) if f.endswith(".c"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, *DAQP_CFLAGS, "-I", os.path.join(csrc, "include"), *sources, harness, "-lm", "-o", out],
                   check=True)
    return out, version


def stats(times):
    t = np.sort(np.asarray(times, dtype=float))
    return float(np.median(t)), float(np.percentile(t, 99))


def run_daqp_warm(exe, problems, tmp, name):
    """DAQP through its kept workspace (C). Returns x, solve µs, update+solve µs, iterations, exit flags."""
    path = os.path.join(tmp, name + ".daqp.bin")
    out = os.path.join(tmp, name + ".daqp.out")
    previous = None
    with open(path, "wb") as fh:
        fh.write(struct.pack("i", len(problems)))
        for p in problems:
            H, f, A, bu, bl, sense = daqp_arrays(*p)
            n, ma = H.shape[0], A.shape[0]
            new = previous is None or previous[0].shape != H.shape or previous[1].shape != A.shape \
                or not np.array_equal(previous[0], H) or not np.array_equal(previous[1], A)
            sense_changed = not new and not np.array_equal(previous[2], sense)
            fh.write(struct.pack("iii", n, ma, (1 if new else 0) | (2 if sense_changed else 0)))
            if new:
                fh.write(np.ascontiguousarray(H, dtype="<f8").tobytes())
                fh.write(np.ascontiguousarray(A, dtype="<f8").tobytes())
            for v in (f, bu, bl):
                fh.write(np.ascontiguousarray(v, dtype="<f8").tobytes())
            fh.write(np.ascontiguousarray(sense, dtype="<i4").tobytes())
            previous = (H, A, sense)
    subprocess.run([exe, path, out, repr(PRIMAL_TOL)], check=True)
    xs, solve, total, iters, flags = [], [], [], [], []
    with open(out) as fh:
        for line in fh:
            parts = line.split()
            flag, it, upd, sol = int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])
            flags.append(flag)
            iters.append(it)
            solve.append(sol / 1000)
            total.append((upd + sol) / 1000)
            xs.append(np.array([float(v) for v in parts[4:]]) if flag == 1 else None)
    return xs, solve, total, iters, flags


def run_daqp_model(problems):
    """The wheel's daqp.Model, kept workspace, its own C timer (solve only); None where H or A change."""
    import daqp

    model, current, times, iters = None, None, [], []
    for p in problems:
        H, f, A, bu, bl, sense = daqp_arrays(*p)
        if current is None or not (np.array_equal(current[0], H) and np.array_equal(current[1], A)):
            model = daqp.Model()
            model.settings = {"primal_tol": PRIMAL_TOL}
            model.setup(H, f, A, bu, bl, sense)
            current = (H, A)
        else:
            model.update(f=f, bupper=bu, blower=bl)
        _, _, _, info = model.solve()
        times.append(info["solve_time"] * 1e6)
        iters.append(info["iterations"])
    return times, iters


def run_daqp_cold(problems):
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


def per_iteration(times, iters):
    """Fixed cost (median time of the solves that changed nothing) and the cost of one more iteration (slope of
    the median time per iteration count, a least-squares line weighted by how many solves had that count), µs.
    Medians keep a preempted solve from counting; the first solve (cold, from setup) is left out."""
    t, k = np.asarray(times[1:], dtype=float), np.asarray(iters[1:], dtype=float)
    idle = t[k == 0]
    fixed = float(np.median(idle)) if len(idle) else float("nan")
    counts = sorted(set(k[k > 0]))
    if len(counts) < 2:
        return fixed, float("nan")
    medians = [float(np.median(t[k == c])) for c in counts]
    weights = [float(np.sqrt(np.sum(k == c))) for c in counts]
    slope, _ = np.polyfit(counts, medians, 1, w=weights)
    return fixed, float(slope)


def solve_sequence(qpbench, daqp_warm, name, qp_file, tmp, with_osqp, step=None):
    out_file = os.path.join(tmp, name + ".out.jsonl")
    cold_file = os.path.join(tmp, name + ".cold.jsonl")
    solve_stats = os.path.join(tmp, name + ".solve-stats.json")
    subprocess.run([qpbench, "solve", qp_file, "--out", out_file, "--stats", solve_stats], check=True)
    subprocess.run([qpbench, "solve", qp_file, "--out", cold_file, "--cold", "--stats", os.devnull], check=True)
    with open(qp_file) as fh:
        problems = [problem_from_json(line) for line in fh if line.strip()]
    with open(out_file) as fh:
        ours = [json.loads(line) for line in fh if line.strip()]
    with open(cold_file) as fh:
        cold = [json.loads(line) for line in fh if line.strip()]
    with open(solve_stats) as fh:
        worst = json.load(fh)
    refs = [solve_quadprog(*p) for p in problems]
    our_x = [np.asarray(r["x"]) if r["status"] == "optimal" else None for r in ours]
    cold_x = [np.asarray(r["x"]) if r["status"] == "optimal" else None for r in cold]
    warm_x, warm_solve, warm_total, warm_it, _ = run_daqp_warm(daqp_warm, problems, tmp, name)
    model_t, model_it = run_daqp_model(problems)
    daqp_x, daqp_t, daqp_it = run_daqp_cold(problems)
    our_t = [r["solve_us"] for r in ours]
    our_it = [r["iterations"] for r in ours]
    row = dict(
        name=name, n=problems[0][0].shape[0], m=problems[0][2].shape[0], count=len(problems), step=step,
        worst=worst,
        ours=(stats(our_t), our_it, max_diff(our_x, refs), sum(r["status"] != "optimal" for r in ours)),
        cold=(stats([r["solve_us"] for r in cold]), [r["iterations"] for r in cold], max_diff(cold_x, refs),
              sum(r["status"] != "optimal" for r in cold)),
        warm=(stats(warm_solve), warm_it, max_diff(warm_x, refs), sum(x is None for x in warm_x)),
        warm_total=(stats(warm_total), warm_it, max_diff(warm_x, refs), sum(x is None for x in warm_x)),
        model=(stats(model_t), model_it, float("nan"), 0),
        daqp=(stats(daqp_t), daqp_it, max_diff(daqp_x, refs), sum(x is None for x in daqp_x)),
        ours_vs_warm=max_diff(our_x, [x for x in warm_x]),
        fit_ours=per_iteration(our_t, our_it),
        # DAQP counts the pass that finds the point optimal as an iteration (1 when nothing changes).
        fit_warm=per_iteration(warm_total, [max(0, k - 1) for k in warm_it]),
    )
    if with_osqp:
        osqp_x, osqp_t, osqp_it = run_osqp(problems)
        row["osqp"] = (stats(osqp_t), osqp_it, max_diff(osqp_x, refs), sum(x is None for x in osqp_x))
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qpbench")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--random-steps", type=int, default=1500)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--input", action="append", default=[], help="a JSON Lines QP sequence (repeatable)")
    ap.add_argument("--no-osqp", action="store_true")
    args = ap.parse_args()
    qpbench = args.qpbench or build_qpbench()
    daqp_warm, version = build_daqp_warm()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.input:
            for path in args.input:
                name = os.path.splitext(os.path.basename(path))[0]
                rows.append(solve_sequence(qpbench, daqp_warm, name, path, tmp, not args.no_osqp))
        else:
            for name in args.scenarios.split(","):
                qp_file = os.path.join(tmp, name + ".jsonl")
                stats_file = os.path.join(tmp, name + ".stats.json")
                steps = args.random_steps if name.startswith("random-soft-") else args.steps
                subprocess.run(
                    [qpbench, "generate", name, "--out", qp_file, "--steps", str(steps), "--stats", stats_file],
                    check=True,
                )
                with open(stats_file) as fh:
                    step = json.load(fh)
                rows.append(solve_sequence(qpbench, daqp_warm, name, qp_file, tmp, not args.no_osqp, step))
    print_table(rows, version)


def print_table(rows, version):
    print()
    print(f"QP sequences, solve times in µs (median / p99), iterations (median / max), largest |x − x_quadprog|")
    print(f"over the sequence, and non-optimal count. DAQP {version}, primal_tol {PRIMAL_TOL:g}.")
    print()
    header = (f"{'scenario':<17}{'n':>4}{'m':>5}  {'solver':<26}{'median':>9}{'p99':>9}{'iter med/max':>14}"
              f"{'max |Δx|':>11}{'fail':>6}")
    print(header)
    print("-" * len(header))
    labels = (
        ("qpbench hot (solve)", "ours"), ("qpbench cold (solve)", "cold"),
        ("DAQP warm, solve", "warm"), ("DAQP warm, update+solve", "warm_total"),
        ("DAQP Model (wheel), solve", "model"), ("DAQP cold, setup included", "daqp"), ("OSQP warm", "osqp"),
    )
    for r in rows:
        first = True
        for label, key in labels:
            if key not in r:
                continue
            (med, p99), it, diff, fails = r[key]
            diff_text = "—" if diff != diff else f"{diff:.1e}"
            print(
                f"{r['name'] if first else '':<17}{r['n'] if first else '':>4}{r['m'] if first else '':>5}  "
                f"{label:<26}{med:>9.2f}{p99:>9.2f}{f'{int(np.median(it))}/{max(it)}':>14}{diff_text:>11}{fails:>6}"
            )
            first = False
    print()
    print("Like for like (same sequence, same run): ours hot / DAQP warm, ratio of medians and of p99 (≤ 1: ours faster)")
    print(f"{'scenario':<17}{'vs solve med':>13}{'p99':>8}{'vs upd+solve med':>18}{'p99':>8}{'|x−x_DAQP|':>12}"
          f"{'worst iter':>12}{'MPC step() µs med / p99':>26}")
    for r in rows:
        (om, op), _, _, _ = r["ours"]
        (wm, wp), _, _, _ = r["warm"]
        (tm, tp), _, _, _ = r["warm_total"]
        step = f"{r['step']['step_median_us']:.2f} / {r['step']['step_p99_us']:.2f}" if r["step"] else "—"
        print(f"{r['name']:<17}{om / wm:>13.2f}{op / wp:>8.2f}{om / tm:>18.2f}{op / tp:>8.2f}"
              f"{r['ours_vs_warm']:>12.1e}{r['worst']['iterations_max']:>12}{step:>26}")
    print()
    print("Where the time goes (µs): fixed = median of the solves with no add or drop; per iter = slope of the")
    print("median time against the iteration count. DAQP: update+solve against iterations − 1 (it counts the")
    print("pass that finds the point optimal as one).")
    print(f"{'scenario':<17}{'ours fixed':>12}{'per iter':>10}{'DAQP fixed':>12}{'per iter':>10}"
          f"{'iterations ours / DAQP−1 (sum)':>32}")
    for r in rows:
        fo, so = r["fit_ours"]
        fw, sw = r["fit_warm"]
        ours_sum = sum(r["ours"][1])
        warm_sum = sum(max(0, k - 1) for k in r["warm"][1])
        print(f"{r['name']:<17}{fo:>12.2f}{so:>10.3f}{fw:>12.2f}{sw:>10.3f}{f'{ours_sum} / {warm_sum}':>32}")
    print()
    print("Worst-case iterations of the hot-started solver per sequence (qpbench solve --stats): set a loop's")
    print("supervisor.max_iterations at or above it (with a margin); a solve reaching it returns iterationLimit.")
    for r in rows:
        w = r["worst"]
        print(f"  {r['name']:<17} {w['iterations_max']} (problem {w['iterations_max_line']} of {w['solves']})")


if __name__ == "__main__":
    main()
