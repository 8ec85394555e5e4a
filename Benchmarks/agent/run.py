#!/usr/bin/env python3
"""Daemon benchmark: the real `edgepilot run` (release, static Swift stdlib) polling 10,000 tags over 10 simulated
Modbus devices at 1 s, with history on. Prints requests per cycle against the minimum possible, the daemon's CPU%
and RSS, and the simulator peer's CPU% measured over the same window. Figures are printed, never asserted.

With --sparkplug, a local mosquitto broker joins and the agent publishes every device (and the loop) as a Sparkplug B
edge node; a paho subscriber in this script counts what arrives, so the broker really forwards every message.

With --metrics, the agent serves its Prometheus endpoint on a loopback port and this script scrapes it every second
(urllib, like a Prometheus server would) for the whole measurement; scrapes, their size and time are printed.
--summary-json FILE writes the figures as JSON (Benchmarks/metrics/run.py compares runs with and without).

With --loop, the quadruple-tank simulator joins as an 11th device and the agent runs the demo's MPC loop on it at
--loop-period (default 100 ms) during the whole measurement; the loop's wake-up jitter p50/p99/max, missed
deadlines and solve times are printed from `edgepilot loops --json`.

Usage: .venv/bin/python Benchmarks/agent/run.py [--devices 10] [--tags 1000] [--seconds 30] [--loop] [--sparkplug]
       [--no-build]
"""
import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _status_field(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def rss_kib(pid):
    return _status_field(pid, "VmRSS:")


def threads(pid):
    return _status_field(pid, "Threads:")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


LOOP_TAGS = """\
  - {name: tank1/level, device: plant, area: input_register, address: 0, type: float32, poll_group: fast}
  - {name: tank2/level, device: plant, area: input_register, address: 2, type: float32, poll_group: fast}
  - {name: pump1/voltage, device: plant, area: holding_register, address: 0, type: float32, poll_group: fast,
     writable: true, limits: {min: 0, max: 10}}
  - {name: pump2/voltage, device: plant, area: holding_register, address: 2, type: float32, poll_group: fast,
     writable: true, limits: {min: 0, max: 10}}
  - {name: agent/heartbeat, device: plant, area: holding_register, address: 20, type: uint16, poll_group: fast,
     writable: true, limits: {min: 0, max: 65535}}"""

# The demo loop of Config/demo-plant.yaml, at the benchmark's period.
LOOP = """\
loops:
  - name: tanks
    period: %s
    mode: mpc
    heartbeat: agent/heartbeat
    realtime_priority: %s
    cvs:
      - {tag: tank1/level, setpoint: 12.3, soft_low: 2, soft_high: 18}
      - {tag: tank2/level, setpoint: 12.8, soft_low: 2, soft_high: 18}
    mvs:
      - {tag: pump1/voltage, low: 0.5, high: 8, rate: 0.2, move_weight: 0.078,
         pid: {cv: tank1/level, gain: 1.5, integral_time: 30s}}
      - {tag: pump2/voltage, low: 0.5, high: 8, rate: 0.2, move_weight: 0.078,
         pid: {cv: tank2/level, gain: 1.35, integral_time: 40s}}
    model:
      type: state_space
      continuous: true
      a: [[-0.016037, 0, 0.043934, 0], [0, -0.011034, 0, 0.033234], [0, 0, -0.043934, 0], [0, 0, 0, -0.033234]]
      b: [[0.08325, 0], [0, 0.062812], [0, 0.047857], [0.031219, 0]]
      c: [[1, 0, 0, 0], [0, 1, 0, 0]]
      operating_point: {mvs: [3, 3], cvs: [12.263, 12.783]}
    horizons: {prediction: 60, control: 10}
    supervisor: {max_input_age: 3s, solve_budget: 20ms, healthy_period: 10s, fallback: pid}"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(work):
    """Debian's mosquitto on a free loopback port; returns (process, port)."""
    port = free_port()
    conf = os.path.join(work, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n")
    proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


class SparkplugCounter:
    """Subscribes to the group's Sparkplug topics and counts messages and payload bytes by message type."""

    def __init__(self, port):
        import paho.mqtt.client as mqtt
        self.counts, self.bytes = {}, 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-counter")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe("spBv1.0/Bench/#", qos=0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):
        kind = msg.topic.split("/")[2]
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.bytes += len(msg.payload)

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def rss_by_mapping(pid, top=6):
    """Resident KiB per mapping name (file path, [heap], [stack:…], anonymous), largest first."""
    totals, name = {}, "[anon]"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and ":" not in head[0]:
                name = head[5] if len(head) > 5 else "[anon]"
            elif head and head[0] == "Rss:":
                totals[name] = totals.get(name, 0) + int(head[1])
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--tags", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--binary", help="run this edgepilot binary instead of building one (e.g. an earlier version, "
                    "to compare two builds under the same conditions)")
    ap.add_argument("--loop", action="store_true", help="also run the quadruple-tank MPC loop")
    ap.add_argument("--loop-period", default="100ms")
    ap.add_argument("--realtime-priority", type=int, default=50, help="SCHED_FIFO priority of the loop thread")
    ap.add_argument("--sparkplug", action="store_true", help="also publish to a local mosquitto as a Sparkplug node")
    ap.add_argument("--metrics", action="store_true", help="serve the metrics endpoint and scrape it every second")
    ap.add_argument("--summary-json", help="also write the figures to this file as JSON")
    args = ap.parse_args()

    if args.binary:
        edgepilot = os.path.abspath(args.binary)
    else:
        if not args.no_build:
            subprocess.run(
                ["swift", "build", "-c", "release", "-j", "2", "--static-swift-stdlib", "--product", "edgepilot"],
                cwd=ROOT, check=True)
        bin_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout.strip()
        edgepilot = os.path.join(bin_dir, "edgepilot")

    work = tempfile.mkdtemp(prefix="edgepilot-bench-")
    plant = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "Simulators", "bench_plant.py"), "--devices", str(args.devices),
         "--tags", str(args.tags), "--dtype", "float32"], stdout=subprocess.PIPE, text=True)
    ready = json.loads(plant.stdout.readline())
    ports = ready["ports"]
    tank = None
    if args.loop:
        tank = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "Simulators", "quadtank_sim.py"), "--port", "0", "--control-port", "0"],
            stdout=subprocess.PIPE, text=True)
        tank_port = json.loads(tank.stdout.readline())["port"]

    lines = ["agent:", f"  control_socket: {work}/control.sock", "  log_level: warning",
             "poll_groups:", "  - name: second", "    period: 1s",
             "history:", f"  path: {work}/history.db", "  commit_interval: 500ms", "devices:"]
    for d, port in enumerate(ports):
        lines += [f"  - name: plc{d}", "    type: modbus_tcp", "    host: 127.0.0.1", f"    port: {port}",
                  "    timeout: 1s"]
    if args.loop:
        # The simulator answers exception 2 for unmapped addresses, as PLCs do, so reads must not span gaps.
        lines += ["  - name: plant", "    type: modbus_tcp", "    host: 127.0.0.1", f"    port: {tank_port}",
                  "    timeout: 500ms", "    max_gap: 0"]
        lines[lines.index("poll_groups:") + 1:lines.index("poll_groups:") + 1] = ["  - name: fast", "    period: 100ms"]
    lines.append("tags:")
    if args.loop:
        lines += LOOP_TAGS.splitlines()
    for d in range(args.devices):
        for i in range(args.tags):
            lines += [f"  - name: plc{d}/t{i}", f"    device: plc{d}", "    area: holding_register",
                      f"    address: {2 * i}", "    type: float32", "    deadband: 0.01"]
    if args.loop:
        lines += (LOOP % (args.loop_period, args.realtime_priority)).splitlines()
    broker = counter = None
    if args.sparkplug:
        broker, broker_port = start_broker(work)
        counter = SparkplugCounter(broker_port)
        lines += ["sparkplug:", "  group_id: Bench", "  edge_node_id: edge1", "  brokers:",
                  f"    - url: mqtt://127.0.0.1:{broker_port}"]
    metrics_port = free_port() if args.metrics else None
    if metrics_port:
        lines += ["metrics:", f"  listen: 127.0.0.1:{metrics_port}"]
    config = os.path.join(work, "edgepilot.yaml")
    with open(config, "w") as f:
        f.write("\n".join(lines) + "\n")

    agent = subprocess.Popen([edgepilot, "run", "--config", config], stderr=open(os.path.join(work, "agent.log"), "w"))
    env = dict(os.environ, EDGEPILOT_SOCKET=f"{work}/control.sock")
    try:
        deadline = time.time() + 30
        while not os.path.exists(f"{work}/control.sock") and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(args.warmup)
        scrapes = {"count": 0, "failed": 0, "bytes": 0, "seconds": [], "stop": False}

        def scrape_every_second():
            while not scrapes["stop"]:
                started = time.monotonic()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
                        scrapes["bytes"] = len(r.read())
                    scrapes["count"] += 1
                    scrapes["seconds"].append(time.monotonic() - started)
                except OSError:
                    scrapes["failed"] += 1
                time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

        scraper = threading.Thread(target=scrape_every_second, daemon=True) if metrics_port else None
        if scraper:
            scraper.start()
        a0, p0, t0 = cpu_seconds(agent.pid), cpu_seconds(plant.pid), time.monotonic()
        rss_max = 0
        end = t0 + args.seconds
        while time.monotonic() < end:
            rss_max = max(rss_max, rss_kib(agent.pid))
            time.sleep(0.5)
        a1, p1, t1 = cpu_seconds(agent.pid), cpu_seconds(plant.pid), time.monotonic()
        scrapes["stop"] = True
        if scraper:
            scraper.join(timeout=10)
        mappings = rss_by_mapping(agent.pid)
        status = json.loads(subprocess.run([edgepilot, "status", "--json"], env=env, capture_output=True,
                                           text=True, check=True).stdout)
        tags = json.loads(subprocess.run([edgepilot, "tags", "plc3/*", "--json"], env=env, capture_output=True,
                                         text=True, check=True).stdout)
        loops = json.loads(subprocess.run([edgepilot, "loops", "--json"], env=env, capture_output=True, text=True,
                                          check=True).stdout) if args.loop else []
        mqtt_status = json.loads(subprocess.run([edgepilot, "mqtt", "status", "--json"], env=env, capture_output=True,
                                                text=True, check=True).stdout) if args.sparkplug else None
        received = (dict(counter.counts), counter.bytes) if counter else None
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        plant.send_signal(signal.SIGTERM)
        plant.wait(timeout=10)
        if tank:
            tank.send_signal(signal.SIGTERM)
            tank.wait(timeout=10)
        if counter:
            counter.stop()
        if broker:
            broker.send_signal(signal.SIGTERM)
            broker.wait(timeout=10)

    wall = t1 - t0
    requests = sum(d["requestsPerCycle"] for d in status["devices"])
    # A float32 cannot straddle two requests, so one request carries at most 62 of them (124 registers).
    minimum = args.devices * math.ceil(args.tags / (125 // 2))
    good = sum(1 for t in tags if t["quality"] == "good")
    placed = sum(1 for t in tags if t.get("value") is not None and round(t["value"]) == 3 * args.tags + int(t["name"].split("/t")[1]))
    agent_cpu = 100 * (a1 - a0) / wall
    plant_cpu = 100 * (p1 - p0) / wall
    print(f"agent benchmark: {args.devices} devices x {args.tags} float32 tags at 1 s, {wall:.0f} s measured")
    print(f"  requests per cycle      {requests} (minimum possible {minimum}, ratio {requests / minimum:.2f})")
    print(f"  daemon CPU              {agent_cpu:.2f} % of one core (target <= 3 %)")
    print(f"  daemon RSS (max)        {rss_max / 1024:.1f} MiB (target <= 20 MB)")
    print(f"  peer CPU (pymodbus)     {plant_cpu:.2f} % of one core; daemon/peer ratio {agent_cpu / max(plant_cpu, 1e-9):.2f}")
    print(f"  history                 {status['history']['rows']} rows, {status['history']['bytes'] / 1e6:.1f} MB")
    print("  daemon RSS by mapping   " + ", ".join(f"{os.path.basename(n) or n} {kib / 1024:.1f} MiB" for n, kib in mappings))
    for loop in loops:
        t, sv = loop["timing"], loop["solver"]
        print(f"  loop {loop['name']} at {loop['periodMilliseconds']} ms: mode {loop['mode']} ({loop.get('reason') or 'no reason'}), {t['cycles']} cycles, "
              f"jitter p50 {t['jitterP50Microseconds']:.0f} µs / p99 {t['jitterP99Microseconds']:.0f} µs / "
              f"max {t['jitterMaxMicroseconds']:.0f} µs, missed deadlines {t['missedDeadlines']}, "
              f"solve p99 {sv['p99Microseconds']:.0f} µs, scheduling {loop['scheduling']}")
    if received:
        counts, nbytes = received
        print(f"  sparkplug               session {mqtt_status['sessionState']}, {mqtt_status['messagesPublished']} messages "
              f"published, backlog {mqtt_status['backlog']}, feed drops {mqtt_status['feedDropped']}; subscriber "
              f"received {sum(counts.values())} messages ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}), "
              f"{nbytes / 1e6:.1f} MB")
    if metrics_port:
        times = sorted(scrapes["seconds"]) or [0]
        print(f"  metrics endpoint        {scrapes['count']} scrapes at 1 s ({scrapes['failed']} failed), "
              f"{scrapes['bytes'] / 1024:.1f} KiB each, scrape time p50 {1000 * times[len(times) // 2]:.1f} ms / "
              f"max {1000 * times[-1]:.1f} ms")
    print(f"  check: device plc3      {good}/{len(tags)} tags good, {placed}/{len(tags)} values at the right address")
    if args.summary_json:
        summary = {"metrics": bool(metrics_port), "seconds": wall, "agent_cpu_percent": agent_cpu,
                   "plant_cpu_percent": plant_cpu, "rss_max_mib": rss_max / 1024,
                   "requests_per_cycle": requests, "history_rows": status["history"]["rows"],
                   "scrapes": scrapes["count"], "scrape_failures": scrapes["failed"],
                   "scrape_bytes": scrapes["bytes"],
                   "scrape_p50_ms": 1000 * sorted(scrapes["seconds"] or [0])[len(scrapes["seconds"]) // 2],
                   "loops": [{"name": l["name"], "cycles": l["timing"]["cycles"],
                              "jitter_p99_us": l["timing"]["jitterP99Microseconds"],
                              "missed": l["timing"]["missedDeadlines"]} for l in loops]}
        with open(args.summary_json, "w") as f:
            json.dump(summary, f)


if __name__ == "__main__":
    main()
