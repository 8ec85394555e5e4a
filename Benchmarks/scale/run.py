#!/usr/bin/env python3
"""Scale run: the real `edgepilot run` with --devices x --tags float32 tags (default 10 x 10,000 = 100,000) on the
pymodbus bench plant at 1 s, history on, publishing as a Sparkplug B node to a local mosquitto. Prints the poll cycle
time per device (last and max seen), the agent's CPU and RSS, the history write rate (rows/s over the measurement),
the Sparkplug births (NBIRTH + DBIRTH bytes, metric count, time from the agent's start to the last DBIRTH at the
subscriber) and data messages received. Figures are printed, never asserted; not part of CI.

Usage: .venv/bin/python Benchmarks/scale/run.py [--devices 10] [--tags 10000] [--seconds 60]
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


class BirthRecorder:
    """Counts Sparkplug messages by type and keeps the size and arrival time of every birth."""

    def __init__(self, port):
        import paho.mqtt.client as mqtt
        self.counts, self.births, self.bytes = {}, [], 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="scale-recorder")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe("spBv1.0/Bench/#", qos=0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):
        kind = msg.topic.split("/")[2]
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.bytes += len(msg.payload)
        if kind in ("NBIRTH", "DBIRTH"):
            self.births.append((time.monotonic(), kind, len(msg.payload), msg.topic))

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--tags", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=60)
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

    work = tempfile.mkdtemp(prefix="edgepilot-scale-")
    env = dict(os.environ, EDGEPILOT_SOCKET=f"{work}/control.sock")
    plant = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "Simulators", "bench_plant.py"), "--devices", str(args.devices),
         "--tags", str(args.tags), "--dtype", "float32"], stdout=subprocess.PIPE, text=True)
    ports = json.loads(plant.stdout.readline())["ports"]
    broker, broker_port = bench.start_broker(work)
    recorder = BirthRecorder(broker_port)
    lines = ["agent:", f"  control_socket: {work}/control.sock", "  log_level: warning",
             "poll_groups:", "  - name: second", "    period: 1s",
             "history:", f"  path: {work}/history.db", "  commit_interval: 500ms", "devices:"]
    for d, port in enumerate(ports):
        lines += [f"  - name: plc{d}", "    type: modbus_tcp", "    host: 127.0.0.1", f"    port: {port}",
                  "    timeout: 2s"]
    lines.append("tags:")
    for d in range(args.devices):
        for i in range(args.tags):
            lines.append(f"  - {{name: plc{d}/t{i}, device: plc{d}, area: holding_register, address: {2 * i}, "
                         "type: float32}")
    lines += ["sparkplug:", "  group_id: Bench", "  edge_node_id: edge1", "  brokers:",
              f"    - url: mqtt://127.0.0.1:{broker_port}"]
    config = os.path.join(work, "edgepilot.yaml")
    with open(config, "w") as f:
        f.write("\n".join(lines) + "\n")

    def cli(*arguments):
        r = subprocess.run([edgepilot, *arguments, "--json"], env=env, capture_output=True, text=True)
        return json.loads(r.stdout) if r.returncode == 0 else None

    started = time.monotonic()
    agent = subprocess.Popen([edgepilot, "run", "--config", config], stderr=open(os.path.join(work, "agent.log"), "w"))
    try:
        up = None
        while time.monotonic() - started < 300 and up is None:
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited: {open(os.path.join(work, 'agent.log')).read()[-2000:]}")
            up = cli("status")
            time.sleep(0.5)
        socket_after = time.monotonic() - started
        # Births: one NBIRTH and one DBIRTH per device.
        while time.monotonic() - started < 300 and sum(1 for b in recorder.births if b[1] == "DBIRTH") < args.devices:
            time.sleep(0.2)
        time.sleep(5)
        h0 = (cli("status") or {}).get("history", {}).get("rows", 0)
        a0, t0 = bench.cpu_seconds(agent.pid), time.monotonic()
        rss_max, cycles = 0, {}
        while time.monotonic() - t0 < args.seconds:
            rss_max = max(rss_max, bench.rss_kib(agent.pid))
            for d in (cli("status") or {}).get("devices", []):
                cycles.setdefault(d["name"], []).append(d["lastCycleMilliseconds"])
            time.sleep(2)
        a1, t1 = bench.cpu_seconds(agent.pid), time.monotonic()
        status = cli("status") or {}
        mqtt = cli("mqtt", "status") or {}
        rows = status.get("history", {}).get("rows", 0)
        requests = sum(d["requestsPerCycle"] for d in status.get("devices", []))
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=120)
        plant.send_signal(signal.SIGTERM)
        plant.wait(timeout=10)
        recorder.stop()
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=10)

    wall = t1 - t0
    births = [b for b in recorder.births]
    nbirth = sum(b[2] for b in births if b[1] == "NBIRTH")
    dbirth = sum(b[2] for b in births if b[1] == "DBIRTH")
    last_birth = max((b[0] for b in births), default=started) - started
    all_cycles = [c for cs in cycles.values() for c in cs]
    print(f"scale: {args.devices} devices x {args.tags} float32 tags = {args.devices * args.tags:,} tags at 1 s, "
          f"history on, Sparkplug on; {wall:.0f} s measured; binary {edgepilot}")
    print(f"  control socket up after  {socket_after:.1f} s")
    print(f"  poll cycle per device    last {sum(c[-1] for c in cycles.values()) / max(len(cycles), 1):.0f} ms "
          f"(mean over devices), max seen {max(all_cycles, default=0):.0f} ms; {requests} requests per cycle")
    print(f"  daemon CPU               {100 * (a1 - a0) / wall:.1f} % of one core")
    print(f"  daemon RSS (max)         {rss_max / 1024:.1f} MiB")
    print(f"  history                  {(rows - h0) / wall:,.0f} rows/s written; {rows:,} rows in "
          f"{status.get('history', {}).get('bytes', 0) / 1e6:.1f} MB")
    print(f"  Sparkplug births         NBIRTH {nbirth / 1024:.1f} KiB, DBIRTH {dbirth / 1e6:.2f} MB in "
          f"{sum(1 for b in births if b[1] == 'DBIRTH')} messages; last DBIRTH {last_birth:.1f} s after the start")
    print(f"  Sparkplug data           {mqtt.get('messagesPublished')} messages published, backlog "
          f"{mqtt.get('backlog')}, feed drops {mqtt.get('feedDropped')}; received "
          f"{', '.join(f'{k} {v}' for k, v in sorted(recorder.counts.items()))}, {recorder.bytes / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
