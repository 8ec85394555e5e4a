#!/bin/sh
# Builds pollbench in release and runs it against Simulators/bench_plant.py (started by pollbench itself).
# Usage: Benchmarks/pollbench/run.sh [--devices 10] [--tags 1000] [--period-ms 1000] [--seconds 30]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
swift build -c release -j 2 --product pollbench
exec "$(swift build -c release --show-bin-path)/pollbench" --root "$root" "$@"
