#!/usr/bin/env python3
"""Soak run: the real `edgepilot run` against the quadruple-tank simulator (with the demo MPC loop at 100 ms), a
pymodbus bench plant (--devices x --tags float32 at 1 s) and a local mosquitto, for --duration seconds, with a fault
every --fault-every seconds in turn: a broker outage (stopped, then started on the same port), a frozen PLC (SIGSTOP
of the quadruple tank, then SIGCONT) and kill -9 of the agent (restarted at once on the same history file).

Every --interval seconds it samples the agent's RSS, CPU (% of one core over the interval), open descriptors, the
history file's size (database + WAL), history's pending changes, the store-and-forward backlog and unconfirmed
samples, and the loop's mode and missed deadlines; prints them as a table, then a verdict: the slope of RSS over the
second half of the run (per agent process, leaving out the first 30 s after a restart), and whether every stored
sample was delivered at the end (backlog 0). Figures are printed, never asserted; not part of CI.

Usage: .venv/bin/python Benchmarks/soak/run.py [--duration 600] [--interval 10] [--fault-every 60]
       [--binary .build/debug/edgepilot | --no-build]
"""
import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_spec = importlib.util.spec_from_file_location("agent_bench", os.path.join(ROOT, "Benchmarks", "agent", "run.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def slope_per_minute(points):
    """Least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    if n < 3:
        return None
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx == 0:
        return None
    return 60 * sum((p[0] - mx) * (p[1] - my) for p in points) / sxx


class Soak:
    def __init__(self, args, edgepilot):
        self.args, self.edgepilot = args, edgepilot
        self.work = tempfile.mkdtemp(prefix="edgepilot-soak-")
        self.env = dict(os.environ, EDGEPILOT_SOCKET=f"{self.work}/control.sock")
        self.plant = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "Simulators", "bench_plant.py"), "--devices", str(args.devices),
             "--tags", str(args.tags), "--dtype", "float32"], stdout=subprocess.PIPE, text=True)
        self.ports = json.loads(self.plant.stdout.readline())["ports"]
        self.tank = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "Simulators", "quadtank_sim.py"), "--port", "0", "--control-port",
             "0", "--noise", "0.05"], stdout=subprocess.PIPE, text=True)
        self.tank_port = json.loads(self.tank.stdout.readline())["port"]
        self.broker, self.broker_port = bench.start_broker(self.work)
        self.counter = bench.SparkplugCounter(self.broker_port)
        self.config = os.path.join(self.work, "edgepilot.yaml")
        with open(self.config, "w") as f:
            f.write(self.config_text())
        self.agent = None
        self.kills = 0
        self.restarted_at = 0.0
        self.start_agent()

    def config_text(self):
        lines = ["agent:", f"  control_socket: {self.work}/control.sock", "  log_level: info",
                 "poll_groups:", "  - name: fast", "    period: 100ms", "  - name: second", "    period: 1s",
                 "history:", f"  path: {self.work}/history.db", "  commit_interval: 500ms", "devices:"]
        for d, port in enumerate(self.ports):
            lines += [f"  - name: plc{d}", "    type: modbus_tcp", "    host: 127.0.0.1", f"    port: {port}",
                      "    timeout: 1s"]
        lines += ["  - name: plant", "    type: modbus_tcp", "    host: 127.0.0.1", f"    port: {self.tank_port}",
                  "    timeout: 500ms", "    max_gap: 0", "tags:"]
        lines += bench.LOOP_TAGS.splitlines()
        for d in range(len(self.ports)):
            for i in range(self.args.tags):
                lines += [f"  - name: plc{d}/t{i}", f"    device: plc{d}", "    area: holding_register",
                          f"    address: {2 * i}", "    type: float32", "    poll_group: second"]
        lines += (bench.LOOP % ("100ms", 50)).splitlines()
        lines += ["sparkplug:", "  group_id: Bench", "  edge_node_id: edge1", "  brokers:",
                  f"    - url: mqtt://127.0.0.1:{self.broker_port}", "  keepalive: 10s", "  reconnect_min: 500ms",
                  "  reconnect_max: 2s"]
        return "\n".join(lines) + "\n"

    def start_agent(self):
        log = open(os.path.join(self.work, "agent.log"), "a")
        self.agent = subprocess.Popen([self.edgepilot, "run", "--config", self.config], stderr=log)
        self.restarted_at = time.monotonic()
        deadline = time.time() + 30
        while time.time() < deadline and self.cli("status") is None:
            if self.agent.poll() is not None:
                raise RuntimeError(open(os.path.join(self.work, "agent.log")).read()[-2000:])
            time.sleep(0.2)

    def cli(self, *arguments):
        r = subprocess.run([self.edgepilot, *arguments, "--json"], env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def fault(self, n):
        kind = ("broker outage", "PLC freeze", "kill -9")[n % 3]
        if kind == "broker outage":
            self.broker.send_signal(signal.SIGTERM)
            self.broker.wait(timeout=10)
            time.sleep(self.args.outage)
            self.broker = subprocess.Popen(["mosquitto", "-c", os.path.join(self.work, "mosquitto.conf")],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif kind == "PLC freeze":
            os.kill(self.tank.pid, signal.SIGSTOP)
            time.sleep(self.args.freeze)
            os.kill(self.tank.pid, signal.SIGCONT)
        else:
            self.agent.kill()
            self.agent.wait()
            self.kills += 1
            self.start_agent()
        return kind

    def sample(self, t, cpu_before, wall_before):
        pid = self.agent.pid
        now = time.monotonic()
        try:
            cpu = bench.cpu_seconds(pid)
            rss = bench.rss_kib(pid)
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return None, cpu_before, wall_before
        status = self.cli("status") or {}
        mqtt = self.cli("mqtt", "status") or {}
        loops = self.cli("loops") or [{}]
        history_bytes = sum(os.path.getsize(p) for p in (f"{self.work}/history.db", f"{self.work}/history.db-wal")
                            if os.path.exists(p))
        cpu_percent = 100 * (cpu - cpu_before) / max(now - wall_before, 1e-9) if cpu >= cpu_before else None
        row = {"t": t, "pid": pid, "rss_kib": rss, "cpu": cpu_percent, "fds": fds,
               "history_mb": history_bytes / 1e6, "history_pending": (status.get("history") or {}).get("pending"),
               "backlog": mqtt.get("backlog"), "unconfirmed": mqtt.get("unconfirmed"),
               "session": mqtt.get("sessionState"), "mode": loops[0].get("mode"),
               "missed": (loops[0].get("timing") or {}).get("missedDeadlines"),
               "since_restart": now - self.restarted_at}
        return row, cpu, now

    def stop(self):
        for p in (self.agent, self.plant, self.tank, self.broker):
            if p and p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.counter.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--fault-every", type=float, default=60)
    ap.add_argument("--outage", type=float, default=15, help="seconds the broker stays down")
    ap.add_argument("--freeze", type=float, default=5, help="seconds the PLC stays frozen")
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--tags", type=int, default=500)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--binary", help="run this edgepilot binary (e.g. .build/debug/edgepilot) instead of building")
    args = ap.parse_args()
    if args.binary:
        edgepilot = os.path.abspath(args.binary)
    else:
        if not args.no_build:
            subprocess.run(["swift", "build", "-c", "release", "-j", "2", "--static-swift-stdlib", "--product",
                            "edgepilot"], cwd=ROOT, check=True)
        bin_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout.strip()
        edgepilot = os.path.join(bin_dir, "edgepilot")

    soak = Soak(args, edgepilot)
    rows, faults = [], []
    try:
        time.sleep(5)
        t0 = time.monotonic()
        cpu, wall = bench.cpu_seconds(soak.agent.pid), time.monotonic()
        next_sample, next_fault, n = t0 + args.interval, t0 + args.fault_every, 0
        while time.monotonic() - t0 < args.duration:
            now = time.monotonic()
            if now >= next_fault:
                pid_before = soak.agent.pid
                faults.append((now - t0, soak.fault(n)))
                n += 1
                next_fault += args.fault_every
                if soak.agent.pid != pid_before:
                    cpu, wall = bench.cpu_seconds(soak.agent.pid), time.monotonic()
            if time.monotonic() >= next_sample:
                row, cpu, wall = soak.sample(time.monotonic() - t0, cpu, wall)
                if row:
                    rows.append(row)
                next_sample += args.interval
            time.sleep(0.2)
        # Let the last fault's backlog drain before the final figures.
        deadline = time.time() + 120
        while time.time() < deadline and ((soak.cli("mqtt", "status") or {}).get("backlog") or 0) > 0:
            time.sleep(1)
        final = soak.cli("mqtt", "status") or {}
        history = (soak.cli("status") or {}).get("history") or {}
        received = dict(soak.counter.counts)
    finally:
        soak.stop()

    print(f"soak: {args.duration:.0f} s, a fault every {args.fault_every:.0f} s "
          f"({', '.join(f'{t:.0f} s {k}' for t, k in faults)}); {len(soak.ports)} bench devices x {args.tags} "
          f"tags at 1 s + the quadruple tank and its MPC loop at 100 ms; binary {edgepilot}")
    print(f"{'t (s)':>6} {'RSS MiB':>8} {'CPU %':>6} {'fds':>4} {'hist MB':>8} {'pend':>5} {'backlog':>8} "
          f"{'unconf':>6} {'session':>9} {'loop':>7} {'missed':>6}")
    for r in rows:
        cpu_text = f"{r['cpu']:.1f}" if r["cpu"] is not None else "-"
        print(f"{r['t']:6.0f} {r['rss_kib'] / 1024:8.1f} {cpu_text:>6} {r['fds']:4d} {r['history_mb']:8.1f} "
              f"{str(r['history_pending']):>5} {str(r['backlog']):>8} {str(r['unconfirmed']):>6} "
              f"{str(r['session']):>9} {str(r['mode']):>7} {str(r['missed']):>6}")
    half = args.duration / 2
    slopes = []
    for pid in sorted({r["pid"] for r in rows}):
        points = [(r["t"], r["rss_kib"]) for r in rows if r["pid"] == pid and r["t"] >= half and
                  r["since_restart"] >= 30]
        s = slope_per_minute(points)
        if s is not None:
            slopes.append((pid, s, len(points)))
    fds = [r["fds"] for r in rows if r["t"] >= half]
    print(f"verdict: RSS slope over the second half "
          + (", ".join(f"{s:+.1f} KiB/min (pid {pid}, {k} samples)" for pid, s, k in slopes) or "n/a (too short)")
          + f"; memory {'flat' if slopes and all(abs(s) < 64 for _, s, _ in slopes) else 'NOT flat or unknown'}"
          f" (|slope| < 64 KiB/min); fds {min(fds, default=0)}..{max(fds, default=0)} in the second half; "
          f"kills {soak.kills}; end: backlog {final.get('backlog')}, dropped {final.get('dropped')}, "
          f"history feed dropped {history.get('dropped')}, host received "
          f"{', '.join(f'{k} {v}' for k, v in sorted(received.items()))}")


if __name__ == "__main__":
    main()
