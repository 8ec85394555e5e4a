#!/usr/bin/env bash
# Sparkplug NDATA encode throughput: EdgePilot's Swift encoder beside the Python protobuf encoder, same payload
# shape, same run, plus heap allocations per encoded NDATA (malloc-counting LD_PRELOAD shim).
# Usage: Benchmarks/sparkplug/run.sh [metrics-per-payload] [seconds]
#        Benchmarks/sparkplug/run.sh births [metrics] [seconds] [--compression none|deflate|gzip|all]
#          NBIRTH/DBIRTH size and build time for that many metrics (default 10,000), flat and as template instances
#          (10 members each), beside the Python Tahu encoder; with deflate/gzip each birth is compressed as
#          sparkplug.compression does (the agent's SparkplugCompressor; Python's zlib/gzip modules, level 6), the
#          compression counted in the build time. `all` runs none, deflate and gzip in turn (default: none).
# SPARKPLUG_BENCH_BIN=/path/to/sparkplugbench skips building it (e.g. from a development package).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mode=ndata
if [[ "${1:-}" == "births" ]]; then
    mode=births
    shift
fi
compression=none
positional=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --compression) compression="$2"; shift 2 ;;
        *) positional+=("$1"); shift ;;
    esac
done
if [[ "$mode" == births ]]; then
    metrics="${positional[0]:-10000}"
    seconds="${positional[1]:-3}"
else
    metrics="${positional[0]:-10}"
    seconds="${positional[1]:-2}"
fi
python="$root/.venv/bin/python"
[[ -x "$python" ]] || { echo "missing $python (python3 -m venv .venv && pip install -r requirements.txt)" >&2; exit 1; }

bin="${SPARKPLUG_BENCH_BIN:-}"
if [[ -z "$bin" ]]; then
    (cd "$root" && swift build -c release -j 2 --product sparkplugbench >&2)
    bin="$root/.build/release/sparkplugbench"
fi

if [[ "$mode" == births ]]; then
    [[ "$compression" == all ]] && algorithms=(none deflate gzip) || algorithms=("$compression")
    runs=()
    for algorithm in "${algorithms[@]}"; do
        runs+=("$("$bin" --births "$metrics" --members 10 --seconds "$seconds" --compression "$algorithm")")
        runs+=("$("$python" -W ignore "$here/encode_bench.py" --births "$metrics" --members 10 --seconds "$seconds" \
            --compression "$algorithm")")
    done
    "$python" - "${runs[@]}" <<'PY'
import json, sys
runs = [json.loads(x) for x in sys.argv[1:]]
s0 = runs[0]
print("Sparkplug births, %d metrics as %d devices of %d"
      % (s0["metrics"], s0["metrics"] // s0["members"], s0["members"]))
print("%-48s %12s %14s %10s %12s" % ("", "NBIRTH B", "DBIRTHs B", "messages", "build ms"))
for s, p in zip(runs[0::2], runs[1::2]):
    for impl, label in ((s, "swift session"), (p, "python tahu encode")):
        for key in ("flat", "templates"):
            r = impl[key]
            print("%-48s %12d %14d %10d %12.1f" % ("%s, %s, %s" % (label, key, impl["compression"]),
                                                   r["nbirth_bytes"], r["dbirth_bytes"], r["messages"], r["build_ms"]))
for s, p in zip(runs[0::2], runs[1::2]):
    for key in ("flat", "templates"):
        print("ratio python/swift build time, %s, %s: %.2fx"
              % (key, s["compression"], p[key]["build_ms"] / s[key]["build_ms"]))
PY
    exit 0
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
