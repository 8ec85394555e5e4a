#!/usr/bin/env python3
"""Soak run: the real `edgepilot run` against the quadruple-tank simulator (with the demo MPC loop at 100 ms), a
pymodbus bench plant (--devices x --tags float32 at 1 s) and a local mosquitto, for --duration seconds, with a fault
every --fault-every seconds in turn: a broker outage (stopped, then started on the same port), a frozen PLC (SIGSTOP
of the quadruple tank, then SIGCONT) and kill -9 of the agent (restarted at once on the same history file; --kills
rounds, all in the first half, so that one agent process lives through the whole second half, where memory,
descriptors and threads are judged; a broker outage takes the place of later kills). All the
while, a third Modbus "gateway" accepts every connection and resets it at once (an accept-then-reset storm): only
the agent's reconnect backoff bounds how often it tries.

The Sparkplug side is recorded by the tests' independent Primary Host (Tests/SparkplugAgentTests/Peers/spb_host.py,
Tahu schema), so the agent publishes only while the recording is subscribed. At the end, every sample history holds
for the tank levels is looked up among what the host received, live or replayed: samples lost is what history holds
but never arrived, leaving out the 300 ms before each kill -9 (committed, but not yet sent by the killed process).

Every --interval seconds it samples the agent's RSS, CPU (% of one core over the interval), open descriptors, the
history file's size (database + WAL), history's pending changes, the store-and-forward backlog and unconfirmed
samples, the loop's mode and missed deadlines, threads, and the storm's connection attempts per minute; prints them
as a table, then a verdict: the slopes of RSS, descriptors and threads over the second half of the run (per agent
process, leaving out the first 30 s after a restart), reconnect attempts per minute, and samples lost. Exits 1 when
any of them grows without bound or a sample is lost. Not part of CI (an hour is the point).

Usage: .venv/bin/python Benchmarks/soak/run.py [--duration 3600] [--interval 10] [--fault-every 60]
       [--binary .build/debug/edgepilot | --no-build]
"""
import argparse
import importlib.util
import json
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
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


class ResetStorm:
    """A Modbus TCP "gateway" that accepts every connection and resets it at once (SO_LINGER 0, so an RST, not a
    FIN): before the backoff covered connect-then-reset, an agent made 7,027 connections in 5 s to such a peer."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepts = 0
        self.stopped = False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepts += 1
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


class RecordingHost:
    """The tests' Sparkplug Primary Host, recording every message as a JSON line."""

    def __init__(self, work, broker_port):
        self.out = os.path.join(work, "host.jsonl")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "Tests", "SparkplugAgentTests", "Peers", "spb_host.py"), "--port",
             str(broker_port), "--group", "Bench", "--node", "edge1", "--host-id", HOST_ID, "--out", self.out,
             "--commands", os.path.join(work, "host-commands.jsonl")], stdout=subprocess.PIPE, text=True)
        if "listening" not in self.proc.stdout.readline():
            raise RuntimeError("the recording host did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def received(self, tags):
        """Message counts by kind, and the (tag, timestamp ms) of every sample of `tags` that arrived in DDATA."""
        counts, points, aliases = {}, set(), {}
        with open(self.out) as f:
            for line in f:
                entry = json.loads(line)
                if "topic" not in entry or "payload" not in entry:
                    continue
                kind = entry["topic"].split("/")[2]
                counts[kind] = counts.get(kind, 0) + 1
                for m in entry["payload"]["metrics"]:
                    name, alias = m.get("name"), m.get("alias")
                    if name and alias is not None and kind.endswith("BIRTH"):
                        aliases[alias] = name
                    name = name or aliases.get(alias)
                    if kind == "DDATA" and name in tags and m.get("timestamp") is not None:
                        points.add((name, m["timestamp"]))
        return counts, points


HOST_ID = "SoakHost"
# The storm device's backoff: once grown, a wait of 2.5–5 s (equal jitter) before each attempt.
STORM_RECONNECT_MIN, STORM_RECONNECT_MAX, STORM_MAX_SECONDS = "500ms", "5s", 5.0
COMPARED = ("tank1/level", "tank2/level")


def history_points(path, tags):
    """(tag, timestamp ms) of every sample with a value that history holds for `tags` (read-only, beside the agent)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {(name, ts // 1000) for name, ts in db.execute(
            "SELECT t.name, s.ts FROM samples s JOIN tags t ON t.id = s.tag_id WHERE t.name IN (%s) AND "
            "typeof(s.value) IN ('real', 'integer')" % ",".join("?" * len(tags)), tags)}
    finally:
        db.close()


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
        self.storm = ResetStorm()
        self.broker, self.broker_port = bench.start_broker(self.work)
        self.host = RecordingHost(self.work, self.broker_port)
        self.kill_times_ms = []
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
                  "    timeout: 500ms", "    max_gap: 0",
                  "  - name: storm", "    type: modbus_tcp", "    host: 127.0.0.1", f"    port: {self.storm.port}",
                  "    timeout: 1s", f"    reconnect_min: {STORM_RECONNECT_MIN}", f"    reconnect_max: {STORM_RECONNECT_MAX}",
                  "tags:",
                  "  - {name: storm/t0, device: storm, area: holding_register, address: 0, type: uint16, "
                  "poll_group: second}"]
        lines += bench.LOOP_TAGS.splitlines()
        for d in range(len(self.ports)):
            for i in range(self.args.tags):
                lines += [f"  - name: plc{d}/t{i}", f"    device: plc{d}", "    area: holding_register",
                          f"    address: {2 * i}", "    type: float32", "    poll_group: second"]
        lines += (bench.LOOP % ("100ms", 50)).splitlines()
        lines += ["sparkplug:", "  group_id: Bench", "  edge_node_id: edge1", "  brokers:",
                  f"    - url: mqtt://127.0.0.1:{self.broker_port}", f"  primary_host_id: {HOST_ID}",
                  "  keepalive: 10s", "  reconnect_min: 500ms",
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

    def fault(self, n, in_first_half):
        kind = ("broker outage", "PLC freeze", "kill -9")[n % 3]
        # One process must live through the whole second half, or its memory slope says nothing about an hour.
        if kind == "kill -9" and (self.kills >= self.args.kills or not in_first_half):
            kind = "broker outage"
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
            self.kill_times_ms.append(int(time.time() * 1000))
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
            fds = bench.open_fds(pid)
            threads = bench.threads(pid)
        except OSError:
            return None, cpu_before, wall_before
        status = self.cli("status") or {}
        mqtt = self.cli("mqtt", "status") or {}
        loops = self.cli("loops") or [{}]
        history_bytes = sum(os.path.getsize(p) for p in (f"{self.work}/history.db", f"{self.work}/history.db-wal")
                            if os.path.exists(p))
        cpu_percent = 100 * (cpu - cpu_before) / max(now - wall_before, 1e-9) if cpu >= cpu_before else None
        row = {"t": t, "pid": pid, "rss_kib": rss, "cpu": cpu_percent, "fds": fds, "threads": threads,
               "storm_accepts": self.storm.accepts,
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
        self.host.stop()
        self.storm.stop()


def growth_verdict(rows, key, half, limit_per_minute):
    """Slopes of `key` per agent process over the second half (first 30 s after a restart left out), and whether all
    stay within `limit_per_minute`."""
    slopes = []
    for pid in sorted({r["pid"] for r in rows}):
        points = [(r["t"], r[key]) for r in rows if r["pid"] == pid and r["t"] >= half and r["since_restart"] >= 30]
        s = slope_per_minute(points)
        if s is not None:
            slopes.append((pid, s, len(points)))
    return slopes, bool(slopes) and all(abs(s) < limit_per_minute for _, s, _ in slopes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=3600)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--fault-every", type=float, default=60)
    ap.add_argument("--outage", type=float, default=15, help="seconds the broker stays down")
    ap.add_argument("--freeze", type=float, default=5, help="seconds the PLC stays frozen")
    ap.add_argument("--kills", type=int, default=5, help="kill -9 rounds, all in the first half")
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
    started_ms = int(time.time() * 1000)
    try:
        time.sleep(5)
        t0 = time.monotonic()
        cpu, wall = bench.cpu_seconds(soak.agent.pid), time.monotonic()
        next_sample, next_fault, n = t0 + args.interval, t0 + args.fault_every, 0
        # Faults run beside the sampling (a broker outage lasts --outage seconds), one at a time.
        fault_thread, pid = None, soak.agent.pid
        while time.monotonic() - t0 < args.duration:
            now = time.monotonic()
            if now >= next_fault and (fault_thread is None or not fault_thread.is_alive()):
                at, first_half = now - t0, now - t0 < args.duration / 2

                def inject(at=at, n=n, first_half=first_half):
                    faults.append((at, soak.fault(n, first_half)))

                fault_thread = threading.Thread(target=inject)
                fault_thread.start()
                n += 1
                next_fault += args.fault_every
            if soak.agent.pid != pid:
                pid = soak.agent.pid
                try:
                    cpu, wall = bench.cpu_seconds(pid), time.monotonic()
                except OSError:
                    pass
            if time.monotonic() >= next_sample:
                row, cpu, wall = soak.sample(time.monotonic() - t0, cpu, wall)
                if row:
                    rows.append(row)
                    print(f"  {row['t']:6.0f} s  RSS {row['rss_kib'] / 1024:.1f} MiB  fds {row['fds']}  threads "
                          f"{row['threads']}  backlog {row['backlog']}  storm attempts {row['storm_accepts']}",
                          file=sys.stderr, flush=True)
                next_sample += args.interval
            time.sleep(0.2)
        if fault_thread:
            fault_thread.join()
        # Let the last fault's backlog drain before the final figures.
        deadline = time.time() + 120
        while time.time() < deadline and ((soak.cli("mqtt", "status") or {}).get("backlog") or 0) > 0:
            time.sleep(1)
        time.sleep(2)
        ended_ms = int(time.time() * 1000)
        final = soak.cli("mqtt", "status") or {}
        history = (soak.cli("status") or {}).get("history") or {}
        held = history_points(os.path.join(soak.work, "history.db"), COMPARED)
        received, arrived = soak.host.received(COMPARED)
    finally:
        soak.stop()

    excused = [(k - 300, k) for k in soak.kill_times_ms]
    considered = {p for p in held if started_ms <= p[1] <= ended_ms - 1000}
    lost = sorted(p for p in considered - arrived if not any(a <= p[1] <= b for a, b in excused))
    lost_to_kills = sum(1 for p in considered - arrived if any(a <= p[1] <= b for a, b in excused))

    print(f"soak: {args.duration:.0f} s, a fault every {args.fault_every:.0f} s "
          f"({len(faults)} faults: {', '.join(f'{k} x{sum(1 for _, x in faults if x == k)}' for k in sorted({k for _, k in faults}))}); "
          f"{len(soak.ports)} bench devices x {args.tags} tags at 1 s + the quadruple tank and its MPC loop at 100 ms "
          f"+ an accept-then-reset storm (reconnect_max {STORM_RECONNECT_MAX}); binary {edgepilot}; "
          f"load average at the end {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'t (s)':>6} {'RSS MiB':>8} {'CPU %':>6} {'fds':>4} {'thr':>4} {'hist MB':>8} {'pend':>5} {'backlog':>8} "
          f"{'unconf':>6} {'session':>9} {'loop':>7} {'missed':>6} {'storm/min':>9}")
    previous = None
    for r in rows:
        cpu_text = f"{r['cpu']:.1f}" if r["cpu"] is not None else "-"
        rate = "-" if previous is None else f"{60 * (r['storm_accepts'] - previous['storm_accepts']) / max(r['t'] - previous['t'], 1e-9):.1f}"
        print(f"{r['t']:6.0f} {r['rss_kib'] / 1024:8.1f} {cpu_text:>6} {r['fds']:4d} {r['threads']:4d} "
              f"{r['history_mb']:8.1f} {str(r['history_pending']):>5} {str(r['backlog']):>8} "
              f"{str(r['unconfirmed']):>6} {str(r['session']):>9} {str(r['mode']):>7} {str(r['missed']):>6} {rate:>9}")
        previous = r
    half = args.duration / 2
    rss_slopes, rss_flat = growth_verdict(rows, "rss_kib", half, 64)
    # Descriptors and threads move by one as a connection or a worker comes and goes: judged by the highest count in
    # the last quarter of the run against the highest in the quarter before the second half's middle.
    def window_max(key, a, b):
        return max((r[key] for r in rows if a <= r["t"] < b and r["since_restart"] >= 30), default=None)

    def steps(key):
        early = window_max(key, half, half + args.duration / 4)
        late = window_max(key, args.duration * 3 / 4, args.duration + 1)
        return early, late, early is not None and late is not None and late <= early

    fds_early, fds_late, fds_flat = steps("fds")
    threads_early, threads_late, threads_flat = steps("threads")
    span = (rows[-1]["t"] - rows[0]["t"]) if len(rows) > 1 else 0
    storm_rate = 60 * (rows[-1]["storm_accepts"] - rows[0]["storm_accepts"]) / span if span else 0
    # Equal jitter: each wait is between half of reconnect_max and all of it, so at most 60 / (max / 2) a minute.
    storm_bound = 60 / (STORM_MAX_SECONDS / 2)
    storm_bounded = storm_rate <= storm_bound
    first, last = (rows[0], rows[-1]) if rows else ({}, {})

    def fmt(slopes, unit):
        return ", ".join(f"{s:+.2f} {unit}/min (pid {pid}, {k} samples)" for pid, s, k in slopes) or "n/a (too short)"

    print(f"start: RSS {first.get('rss_kib', 0) / 1024:.1f} MiB, fds {first.get('fds')}, threads "
          f"{first.get('threads')}; end: RSS {last.get('rss_kib', 0) / 1024:.1f} MiB, fds {last.get('fds')}, "
          f"threads {last.get('threads')}")
    print(f"RSS slope over the second half: {fmt(rss_slopes, 'KiB')} -> {'flat' if rss_flat else 'NOT flat'} "
          f"(|slope| < 64 KiB/min)")
    print(f"descriptors: highest {fds_early} in the third quarter, {fds_late} in the last -> "
          f"{'flat' if fds_flat else 'NOT flat'}; threads: highest {threads_early}, then {threads_late} -> "
          f"{'flat' if threads_flat else 'NOT flat'}")
    print(f"accept-then-reset storm: {rows[-1]['storm_accepts'] if rows else 0} connection attempts, "
          f"{storm_rate:.1f}/min (backoff bound {storm_bound:.0f}/min: waits of reconnect_max "
          f"{STORM_RECONNECT_MAX} with equal jitter) -> {'bounded' if storm_bounded else 'NOT bounded'}")
    print(f"samples: history holds {len(considered)} tank-level samples in the run, the host received "
          f"{len(considered & arrived)} of them; lost {len(lost)}"
          + (f" (first: {lost[:5]})" if lost else "")
          + f"; committed in the 300 ms before a kill -9 and not sent: {lost_to_kills}; kills {soak.kills}")
    print(f"end: backlog {final.get('backlog')}, dropped {final.get('dropped')}, history feed dropped "
          f"{history.get('dropped')}; host received {', '.join(f'{k} {v}' for k, v in sorted(received.items()))}")
    ok = rss_flat and fds_flat and threads_flat and storm_bounded and not lost
    print("verdict: " + ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
