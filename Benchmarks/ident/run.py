"""Identification benchmark: one day of 1 s data (86,400 samples, 2 MVs × 2 CVs, measurement noise),
identified by EdgePilot's Swift code (identbench, release build) and by the Python peers on the same data
in the same run: scipy.optimize.least_squares (MISO FOPDT by simulation error) and nfoursid (N4SID).
Prints wall and CPU time (of the fit alone; the machine is shared, so CPU time is the steadier figure) and
validation fit % side by side. Timings are figures, never assertions.

    .venv/bin/python Benchmarks/ident/run.py [--identbench PATH] [--scratch-path DIR] [--samples 86400]
        [--scenarios quadtank,woodberry]

Scenarios (both simulated exactly in discrete time, GBN on both MVs designed from the settling time,
white noise on the CVs; the first 2/3 fit, the last 1/3 validates):
  quadtank   linearised quadruple tank at P− (plants.md), 4 states, no dead time; settling 450 s,
             ±0.3 V on the pumps, noise 0.01 V. Its cross paths are second order, so FOPDT is approximate.
  woodberry  Wood–Berry column with time read in seconds instead of minutes (τ 10.9–21 s, θ 1–7 s), an
             exact 2×2 FOPDT plant; settling 100 s, ±1 on the MVs, noise 0.1.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as in the peers: single-threaded like the Swift side

import numpy as np  # noqa: E402
from scipy import signal  # noqa: E402

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(root, "Tests", "IdentificationTests", "Peers"))
import ident_peers  # noqa: E402


def gbn(count, settling, period, amplitude, rng):
    """Generalized binary noise with the Swift defaults: mean switching interval settling/3, minimum hold
    a third of that."""
    mean = max(1.0, settling / 3 / period)
    hold = max(1, round(mean / 3))
    p = 1 / max(1.0, mean - hold + 1)
    out = np.empty(count)
    level, held = amplitude, 0
    draws = rng.random(count)
    for k in range(count):
        if held >= hold and draws[k] < p:
            level, held = -level, 0
        out[k] = level
        held += 1
    return out


def quadtank(count, rng):
    area = [28.0, 32, 28, 32]
    outlet = [0.071, 0.057, 0.071, 0.057]
    h0 = [12.4, 12.7, 1.8, 1.4]
    k, gamma, g, kc = [3.33, 3.35], [0.70, 0.60], 981.0, 0.5
    t = [area[i] / outlet[i] * np.sqrt(2 * h0[i] / g) for i in range(4)]
    a = np.array([[-1 / t[0], 0, area[2] / (area[0] * t[2]), 0], [0, -1 / t[1], 0, area[3] / (area[1] * t[3])],
                  [0, 0, -1 / t[2], 0], [0, 0, 0, -1 / t[3]]])
    b = np.array([[gamma[0] * k[0] / area[0], 0], [0, gamma[1] * k[1] / area[1]],
                  [0, (1 - gamma[1]) * k[1] / area[2]], [(1 - gamma[0]) * k[0] / area[3], 0]])
    c = np.array([[kc, 0, 0, 0], [0, kc, 0, 0]])
    ad, bd, _, _, _ = signal.cont2discrete((a, b, c, np.zeros((2, 2))), 1.0, method="zoh")
    u = np.array([gbn(count, 450, 1.0, 0.3, rng) for _ in range(2)])
    x = np.zeros(4)
    y = np.empty((2, count))
    for i in range(count):
        y[:, i] = c @ x
        x = ad @ x + bd @ u[:, i]
    y += 0.01 * rng.standard_normal(y.shape)
    return {"period": 1.0, "inputs": u, "outputs": y, "max_dead_time": 30.0, "order": 4, "block_rows": 20,
            "truth": "linearised quadruple tank P−"}


def woodberry(count, rng):
    g = [[(12.8, 16.7, 1.0), (-18.9, 21.0, 3.0)], [(6.6, 10.9, 7.0), (-19.4, 14.4, 3.0)]]
    u = np.array([gbn(count, 100, 1.0, 1.0, rng) for _ in range(2)])
    y = np.zeros((2, count))
    for j in range(2):
        for i in range(2):
            y[j] += ident_peers.fopdt_response(u[i], *g[j][i], 1.0)
    y += 0.1 * rng.standard_normal(y.shape)
    return {"period": 1.0, "inputs": u, "outputs": y, "max_dead_time": 30.0, "order": 8, "block_rows": 20,
            "truth": "Wood–Berry, time in seconds"}


def build_identbench(scratch):
    base = ["swift", "build", "-c", "release"] + (["--scratch-path", scratch] if scratch else [])
    subprocess.run(base + ["--product", "identbench", "-j", "2"], cwd=root, check=True)
    bin_dir = subprocess.run(base + ["--show-bin-path"], cwd=root, check=True, capture_output=True,
                             text=True).stdout.strip()
    return os.path.join(bin_dir, "identbench")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identbench", help="a built identbench (default: build it in release)")
    parser.add_argument("--scratch-path", help="SwiftPM scratch path for the release build")
    parser.add_argument("--samples", type=int, default=86_400)
    parser.add_argument("--scenarios", default="quadtank,woodberry")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    binary = args.identbench or build_identbench(args.scratch_path)
    # Import nfoursid (and its matplotlib) before anything is timed.
    import nfoursid.nfoursid  # noqa: F401

    rows = []
    for name in args.scenarios.split(","):
        rng = np.random.default_rng(args.seed)
        scenario = {"quadtank": quadtank, "woodberry": woodberry}[name](args.samples, rng)
        n = args.samples
        estimation = int(round(n * 2 / 3))
        payload = {"period": scenario["period"], "inputs": scenario["inputs"].tolist(),
                   "outputs": scenario["outputs"].tolist(), "estimation": estimation,
                   "max_dead_time": scenario["max_dead_time"], "order": scenario["order"],
                   "block_rows": scenario["block_rows"]}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(payload, f)
            path = f.name
        try:
            started = time.perf_counter()
            ours = json.loads(subprocess.run([binary, path], check=True, capture_output=True, text=True).stdout)
            print(f"{name}: identbench done in {time.perf_counter() - started:.1f} s (with reading the file)",
                  file=sys.stderr)
        finally:
            os.unlink(path)

        scipy_fits, scipy_seconds, scipy_cpu, scipy_paths = [], 0.0, 0.0, []
        for j in range(2):
            start, cpu = time.perf_counter(), time.thread_time()
            peer = ident_peers.fit_fopdt({"period": payload["period"], "inputs": payload["inputs"],
                                          "output": payload["outputs"][j], "estimation": estimation,
                                          "max_dead_time": payload["max_dead_time"]})
            scipy_seconds += time.perf_counter() - start
            scipy_cpu += time.thread_time() - cpu
            scipy_fits.append(peer["validation_fit"])
            scipy_paths.append(peer["paths"])
        start, cpu = time.perf_counter(), time.thread_time()
        n4sid = ident_peers.fit_n4sid({**payload, "order": ours["state_space"]["order"]})
        n4sid_seconds, n4sid_cpu = time.perf_counter() - start, time.thread_time() - cpu

        order = ours["state_space"]["order"]
        automatic = ours["automatic"]
        rows.append((name, "automatic structure: " + "; ".join("/".join(k) for k in automatic["kinds"]),
                     "EdgePilot (no peer)", automatic["seconds"], automatic["cpu_seconds"],
                     automatic["validation_fit"]))
        rows.append((name, "FOPDT (MISO, per CV)", "EdgePilot", ours["fopdt"]["seconds"],
                     ours["fopdt"]["cpu_seconds"], ours["fopdt"]["validation_fit"]))
        rows.append((name, "FOPDT (MISO, per CV)", "scipy least_squares", scipy_seconds, scipy_cpu, scipy_fits))
        rows.append((name, f"state space, order {order}", "EdgePilot PO-MOESP", ours["state_space"]["seconds"],
                     ours["state_space"]["cpu_seconds"], ours["state_space"]["validation_fit"]))
        rows.append((name, f"state space, order {order}", "nfoursid", n4sid_seconds, n4sid_cpu,
                     n4sid["validation_fit"]))
        print(json.dumps({"scenario": name, "ours": ours, "scipy_paths": scipy_paths,
                          "nfoursid": n4sid}), file=sys.stderr)

    print(f"\n{args.samples} samples at 1 s, 2 MVs × 2 CVs; fit on the first 2/3, fit % on the last 1/3\n")
    print("| scenario | model | implementation | wall (s) | CPU (s) | fit % CV1 | fit % CV2 |")
    print("|---|---|---|---|---|---|---|")
    for name, model, who, seconds, cpu, fits in rows:
        print(f"| {name} | {model} | {who} | {seconds:.2f} | {cpu:.2f} | {fits[0]:.2f} | {fits[1]:.2f} |")


if __name__ == "__main__":
    main()
