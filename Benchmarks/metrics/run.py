#!/usr/bin/env python3
"""The metrics endpoint's cost: the real agent (release, static stdlib) at 10 devices x 1,000 tags polled at 1 s
with history on, run without the endpoint and with it scraped every second, alternately, --rounds times each.
Prints the daemon's CPU and RSS side by side (and, with --loop, the MPC loop's jitter). Figures are printed, never
asserted; every run is Benchmarks/agent/run.py, so both sides are measured the same way.

Usage: .venv/bin/python Benchmarks/metrics/run.py [--seconds 60] [--rounds 2] [--loop] [--binary PATH]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--loop", action="store_true", help="also run the quadruple-tank MPC loop at 100 ms")
    ap.add_argument("--binary", help="an edgepilot binary to use instead of building one")
    args = ap.parse_args()

    agent_run = os.path.join(ROOT, "Benchmarks", "agent", "run.py")
    binary = args.binary
    if not binary:
        subprocess.run([sys.executable, agent_run, "--seconds", "1", "--warmup", "1"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)  # builds the release binary once
        bin_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout.strip()
        binary = os.path.join(bin_dir, "edgepilot")

    results = {False: [], True: []}
    for r in range(args.rounds):
        for metrics in (False, True):
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                path = f.name
            command = [sys.executable, agent_run, "--binary", binary, "--seconds", str(args.seconds),
                       "--summary-json", path] + (["--metrics"] if metrics else []) + (["--loop"] if args.loop else [])
            print(f"round {r + 1}, metrics {'on' if metrics else 'off'}: {' '.join(command[1:])}", flush=True)
            subprocess.run(command, cwd=ROOT, check=True)
            with open(path) as f:
                results[metrics].append(json.load(f))
            os.unlink(path)

    def column(metrics, key):
        return [run[key] for run in results[metrics]]

    print()
    print(f"metrics endpoint cost: 10 devices x 1,000 float32 tags at 1 s, history on"
          f"{', MPC loop at 100 ms' if args.loop else ''}; {args.rounds} rounds of {args.seconds:.0f} s each side")
    print(f"  {'':30} {'endpoint off':>22} {'on, scraped every 1 s':>24}")
    for label, key, unit in [("daemon CPU (% of one core)", "agent_cpu_percent", ""),
                             ("daemon RSS max (MiB)", "rss_max_mib", ""),
                             ("plant CPU (% of one core)", "plant_cpu_percent", "")]:
        off, on = column(False, key), column(True, key)
        print(f"  {label:30} {statistics.median(off):>10.2f} ({min(off):.2f}-{max(off):.2f}) "
              f"{statistics.median(on):>12.2f} ({min(on):.2f}-{max(on):.2f})")
    on = results[True]
    print(f"  scrapes                        {sum(r['scrapes'] for r in on)} answered, "
          f"{sum(r['scrape_failures'] for r in on)} failed, {on[-1]['scrape_bytes'] / 1024:.1f} KiB each, "
          f"p50 {statistics.median(r['scrape_p50_ms'] for r in on):.1f} ms")
    if args.loop:
        for metrics in (False, True):
            loops = [l for run in results[metrics] for l in run["loops"]]
            print(f"  loop jitter p99 ({'on' if metrics else 'off'})          "
                  + ", ".join(f"{l['jitter_p99_us']:.0f} µs ({l['missed']} missed)" for l in loops))


if __name__ == "__main__":
    main()
