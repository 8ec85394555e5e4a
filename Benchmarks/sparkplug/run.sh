#!/usr/bin/env bash
# Sparkplug NDATA encode throughput: EdgePilot's Swift encoder beside the Python protobuf encoder, same payload
# shape, same run, plus heap allocations per encoded NDATA (malloc-counting LD_PRELOAD shim).
# Usage: Benchmarks/sparkplug/run.sh [metrics-per-payload] [seconds]
# SPARKPLUG_BENCH_BIN=/path/to/sparkplugbench skips building it (e.g. from a development package).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
metrics="${1:-10}"
seconds="${2:-2}"
python="$root/.venv/bin/python"
[[ -x "$python" ]] || { echo "missing $python (python3 -m venv .venv && pip install -r requirements.txt)" >&2; exit 1; }

bin="${SPARKPLUG_BENCH_BIN:-}"
if [[ -z "$bin" ]]; then
    (cd "$root" && swift build -c release -j 2 --product sparkplugbench >&2)
    bin="$root/.build/release/sparkplugbench"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cc -O2 -shared -fPIC -o "$tmp/libmalloc_count.so" "$here/malloc_count.c" -ldl

swift_json="$("$bin" --metrics "$metrics" --seconds "$seconds")"
alloc_json="$(LD_PRELOAD="$tmp/libmalloc_count.so" "$bin" --metrics "$metrics" --seconds 0.2)"
python_json="$("$python" -W ignore "$here/encode_bench.py" --metrics "$metrics" --seconds "$seconds")"

"$python" - "$swift_json" "$alloc_json" "$python_json" <<'PY'
import json, sys
s, a, p = (json.loads(x) for x in sys.argv[1:4])
print("Sparkplug NDATA encode, %d metrics/payload (swift %d bytes, python %d bytes)"
      % (s["metrics_per_payload"], s["payload_bytes"], p["payload_bytes"]))
print("%-44s %14s %14s" % ("", "payloads/s", "metrics/s"))
print("%-44s %14.0f %14.0f" % (s["implementation"] + " encode", s["encode_payloads_per_s"], s["encode_metrics_per_s"]))
print("%-44s %14.0f %14.0f" % ("swift EdgeNodeSession.updateNode (+checks)", s["session_ndata_per_s"], s["session_metrics_per_s"]))
print("%-44s %14.0f %14.0f" % (p["implementation"] + " encode", p["encode_payloads_per_s"], p["encode_metrics_per_s"]))
print("ratio swift/python encode: %.2fx" % (s["encode_metrics_per_s"] / p["encode_metrics_per_s"]))
allocs = a.get("allocations_per_ndata")
print("heap allocations per encoded NDATA (swift): %s" % ("n/a" if allocs is None else "%.1f" % allocs))
PY
