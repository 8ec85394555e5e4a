"""Shared helpers for the QP benchmark and fixture scripts: JSON Lines I/O and reference solvers.

A problem is minimize ½xᵀHx + fᵀx subject to lower ≤ A·x ≤ upper and xlower ≤ x ≤ xupper,
with null standing for an infinite bound (JSON has no infinity).
"""

import json

import numpy as np

BIG = 1e30


def to_json_bounds(v):
    return [None if not np.isfinite(x) else float(x) for x in v]


def from_json_bounds(v, default):
    return np.array([default if x is None else float(x) for x in v], dtype=float)


def problem_to_json(H, f, A, lower, upper, xlower=None, xupper=None):
    d = {
        "H": np.asarray(H).tolist(),
        "f": np.asarray(f).tolist(),
        "A": np.asarray(A).tolist(),
        "lower": to_json_bounds(lower),
        "upper": to_json_bounds(upper),
    }
    if xlower is not None:
        d["xlower"] = to_json_bounds(xlower)
        d["xupper"] = to_json_bounds(xupper)
    return json.dumps(d, separators=(",", ":"))


def problem_from_json(line):
    d = json.loads(line)
    H = np.array(d["H"], dtype=float)
    n = H.shape[0]
    f = np.array(d["f"], dtype=float)
    A = np.array(d["A"], dtype=float).reshape(-1, n)
    lower = from_json_bounds(d["lower"], -np.inf)
    upper = from_json_bounds(d["upper"], np.inf)
    xlower = from_json_bounds(d.get("xlower", [None] * n), -np.inf)
    xupper = from_json_bounds(d.get("xupper", [None] * n), np.inf)
    return H, f, A, lower, upper, xlower, xupper


def solve_quadprog(H, f, A, lower, upper, xlower, xupper):
    """Goldfarb–Idnani (quadprog) on the one-sided form; returns x or None if it fails."""
    import quadprog

    n = H.shape[0]
    eq, ge_rows, ge_rhs = [], [], []
    for i in range(A.shape[0]):
        if lower[i] == upper[i]:
            eq.append(i)
    cols, rhs = [], []
    for i in eq:
        cols.append(A[i])
        rhs.append(lower[i])
    for i in range(A.shape[0]):
        if i in eq:
            continue
        if np.isfinite(lower[i]):
            ge_rows.append(A[i])
            ge_rhs.append(lower[i])
        if np.isfinite(upper[i]):
            ge_rows.append(-A[i])
            ge_rhs.append(-upper[i])
    eye = np.eye(n)
    for k in range(n):
        if np.isfinite(xlower[k]):
            ge_rows.append(eye[k])
            ge_rhs.append(xlower[k])
        if np.isfinite(xupper[k]):
            ge_rows.append(-eye[k])
            ge_rhs.append(-xupper[k])
    allc = cols + ge_rows
    if not allc:
        return np.linalg.solve(H, -f)
    C = np.array(allc).T
    b = np.array(rhs + ge_rhs)
    try:
        return quadprog.solve_qp(H, -f, C, b, len(eq))[0]
    except ValueError:
        return None


def daqp_arrays(H, f, A, lower, upper, xlower, xupper):
    n = H.shape[0]
    bu = np.concatenate([np.where(np.isfinite(xupper), xupper, BIG), np.where(np.isfinite(upper), upper, BIG)])
    bl = np.concatenate([np.where(np.isfinite(xlower), xlower, -BIG), np.where(np.isfinite(lower), lower, -BIG)])
    sense = np.zeros(len(bu), dtype=np.int32)
    sense[bu == bl] = 5  # active + immutable = equality
    return np.ascontiguousarray(H), np.ascontiguousarray(f), np.ascontiguousarray(A.reshape(-1, n)), bu, bl, sense


def solve_daqp(H, f, A, lower, upper, xlower, xupper, **kw):
    """Returns (x, exitflag, info). exitflag 1 = optimal, -1 = infeasible."""
    import daqp

    Hc, fc, Ac, bu, bl, sense = daqp_arrays(H, f, A, lower, upper, xlower, xupper)
    x, _, exitflag, info = daqp.solve(Hc, fc, Ac, bu, bl, sense, **kw)
    return np.asarray(x), exitflag, info
