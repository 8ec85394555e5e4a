"""Writes Tests/ControlTests/Fixtures/qp_soft_vertex.jsonl: problem 1012 of the random-soft-1 sequence with
quadprog's solution. At that problem the solution is a vertex of 23 constraints, some nearly dependent, of a
soft-constrained MPC QP; a point whose constraint residuals carry 1e-11 of round-off lands 4e-8 away from it,
which is what `DenseQPSolver`'s final refinement removes (decision 0003).

Run from the repository root:
    swift build -c release --product qpbench
    .build/release/qpbench generate random-soft-1 --steps 1500 --out /tmp/random-soft-1.jsonl
    .venv/bin/python Benchmarks/qp/make_soft_vertex_fixture.py /tmp/random-soft-1.jsonl
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from qpio import problem_from_json, problem_to_json, solve_quadprog  # noqa: E402

PROBLEM = 1012
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "ControlTests", "Fixtures", "qp_soft_vertex.jsonl")

lines = open(sys.argv[1]).read().split("\n")
problem = problem_from_json(lines[PROBLEM])
record = json.loads(problem_to_json(*problem))
record["x"] = solve_quadprog(*problem).tolist()
record["status"] = "optimal"
with open(OUT, "w") as out:
    out.write(json.dumps(record, separators=(",", ":")) + "\n")
