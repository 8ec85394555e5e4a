"""Independent peers for the Identification tests and benchmark: FOPDT by scipy.optimize.least_squares
(simulation error) and N4SID by nfoursid, run on the same data as EdgePilot's Swift code.

    python ident_peers.py fopdt DATA.json     # one CV, all MVs: {"period", "inputs", "output", "estimation", "max_dead_time"}
    python ident_peers.py n4sid DATA.json     # {"period", "inputs", "outputs", "estimation", "order", "block_rows"}

Prints one JSON object: the peer's parameters, its fit % on the validation part (the samples after
"estimation"), and the seconds it took. Fit % = 100·(1 − ‖y − ŷ‖/‖y − ȳ‖), as the Swift side computes it.
"""
import json
import os
import sys
import time

# One BLAS thread, like the Swift side. On a shared 2-core machine a threaded OpenBLAS spins against other
# work: a 2,000 × 160 QR took 6 s with two threads and 0.1 s with one. Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy import optimize, signal  # noqa: E402


def fit_percent(y, y_hat):
    y = np.asarray(y)
    return float(100 * (1 - np.linalg.norm(y - y_hat) / np.linalg.norm(y - y.mean())))


def fopdt_response(u, gain, tau, dead, period):
    """K·e^(−θs)/(τs+1), exact for a held input, θ = d·T + f split over two samples, from rest at u[0]."""
    d = int(dead // period)
    f = dead - d * period
    a = np.exp(-period / tau)
    late = np.exp(-(period - f) / tau)
    early = np.exp(-f / tau)
    b = np.zeros(d + 3)
    b[d + 1] = gain * (1 - late)
    b[d + 2] = late * gain * (1 - early)
    den = np.array([1.0, -a] + [0.0] * (d + 1))
    zi = signal.lfilter_zi(b, den) * u[0]
    return signal.lfilter(b, den, u, zi=zi)[0]


def fit_fopdt(data):
    """Multi-input FOPDT onto one output plus a constant level, least squares (trust region reflective)
    from a small grid of dead-time starts, each with its gains (and level) from linear least squares on
    unit-gain responses; the best start wins."""
    period = data["period"]
    u = [np.asarray(x) for x in data["inputs"]]
    y = np.asarray(data["output"])
    n_est = data["estimation"]
    max_dead = data["max_dead_time"]
    m = len(u)
    span = n_est * period

    def simulate(p, count):
        out = np.full(count, p[-1])
        for j in range(m):
            out += fopdt_response(u[j][:count], p[3 * j], p[3 * j + 1], p[3 * j + 2], period)
        return out

    def residuals(p):
        return y[:n_est] - simulate(p, n_est)

    lower = [-np.inf, period / 20, 0.0] * m + [-np.inf]
    upper = [np.inf, 10 * span, max(max_dead, 1e-9)] * m + [np.inf]
    best = None
    starts = sorted({0.0, max_dead / 4, max_dead / 2})
    tau0 = span / 20
    for dead in starts:
        basis = np.column_stack([fopdt_response(u[j][:n_est], 1.0, tau0, dead, period) for j in range(m)]
                                + [np.ones(n_est)])
        coefficients = np.linalg.lstsq(basis, y[:n_est], rcond=None)[0]
        p0 = []
        for j in range(m):
            p0 += [coefficients[j], tau0, dead]
        p0.append(coefficients[-1])
        try:
            r = optimize.least_squares(residuals, p0, bounds=(lower, upper), method="trf", x_scale="jac")
        except ValueError:
            continue
        if best is None or r.cost < best.cost:
            best = r
    p = best.x
    fit = fit_percent(y[n_est:], simulate(p, len(y))[n_est:])
    paths = [{"gain": p[3 * j], "time_constant": p[3 * j + 1], "dead_time": p[3 * j + 2]} for j in range(m)]
    return {"paths": paths, "validation_fit": fit}


def fit_n4sid(data):
    """nfoursid (PO-MOESP subspace, then N4SID-style least squares on the state sequence) on the estimation
    part; the model is simulated from rest over the whole record, output levels fitted on the estimation
    part as the Swift side does, and fit % taken on the validation part."""
    import pandas as pd
    from nfoursid.nfoursid import NFourSID
    from nfoursid.utils import Decomposition, Utils

    # nfoursid 1.0.2 takes a full SVD (full_matrices=True) of an (outputs·block_rows) × N matrix, which
    # builds an N × N factor: 26 GB for a day of 1 s data. Only the leading `rank` singular vectors are
    # used, so the economy SVD gives the same model; patch it in so the peer can run on a day at all.
    def economy_decomposition(matrix):
        u_, s_, vh_ = np.linalg.svd(matrix, full_matrices=False)
        return Decomposition(u_, np.diag(s_), vh_)

    Utils.eigenvalue_decomposition = staticmethod(economy_decomposition)

    u = np.asarray(data["inputs"]).T  # samples × inputs
    y = np.asarray(data["outputs"]).T
    n_est = data["estimation"]
    frame = pd.DataFrame(
        np.hstack([u[:n_est], y[:n_est]]),
        columns=[f"u{i}" for i in range(u.shape[1])] + [f"y{j}" for j in range(y.shape[1])])
    ident = NFourSID(frame, output_columns=[f"y{j}" for j in range(y.shape[1])],
                     input_columns=[f"u{i}" for i in range(u.shape[1])], num_block_rows=data["block_rows"])
    ident.subspace_identification()
    model, _ = ident.system_identification(rank=data["order"])
    a, b, c, d = model.a, model.b, model.c, model.d
    x = np.zeros(a.shape[0])
    y_hat = np.zeros_like(y)
    for k in range(len(u)):
        y_hat[k] = c @ x + d @ u[k]
        x = a @ x + b @ u[k]
    level = (y[:n_est] - y_hat[:n_est]).mean(axis=0)
    y_hat += level
    fits = [fit_percent(y[n_est:, j], y_hat[n_est:, j]) for j in range(y.shape[1])]
    poles = np.linalg.eigvals(a)
    gain = c @ np.linalg.solve(np.eye(a.shape[0]) - a, b) + d
    return {"validation_fit": fits, "poles_abs": sorted(np.abs(poles).tolist()), "steady_state_gain": gain.tolist()}


def main():
    kind, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        data = json.load(f)
    start = time.perf_counter()
    result = fit_fopdt(data) if kind == "fopdt" else fit_n4sid(data)
    result["seconds"] = time.perf_counter() - start
    print(json.dumps(result))


if __name__ == "__main__":
    main()
