"""Sparkplug agent benchmarks against the real daemon, mosquitto and the quadruple-tank simulator (loopback).

1. Replay drain rate: N samples (default 1,000,000) are put into the agent's store-and-forward queue (SQLite,
   schema v3), then the agent starts with an unthrottled replay (1000 metrics per message) and a subscriber counts
   historical metrics until all N arrived. Twice: the agent's path, QoS 0 with a broker receipt per message, and the
   QoS 1 path it replaced (PUBACK per message; EDGEPILOT_BENCH_REPLAY_QOS1=1, benchmark only), same rows, same run.
   Peer in the same run: Python (sqlite3 + Tahu protobuf + paho) reading the same rows and publishing the same
   payload shape at QoS 1, waiting for every PUBACK.
2. Latency: the simulator's pump voltage (holding register, polled every 100 ms) is changed through its control
   channel; the time until a subscriber receives the DDATA carrying the new value, p50/p99 over --changes changes.

Usage: .venv/bin/python Benchmarks/sparkplug/agent_bench.py [--samples 1000000] [--changes 100] [--no-latency]
(build first: swift build -c release --product edgepilot, or pass --edgepilot .build/debug/edgepilot)
"""

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "Tests", "Peers"))
from sparkplug_tahu import DT, payload_to_dict, pb  # noqa: E402

TAGS = ["tank1/level", "tank2/level", "tank3/level", "tank4/level"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit("nothing listens on %d" % port)


def start_broker(d, port):
    conf = os.path.join(d, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("user root\npersistence false\nlistener %d 127.0.0.1\nallow_anonymous true\n" % port)
    p = subprocess.Popen(["/usr/sbin/mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def start_sim():
    p = subprocess.Popen(
        [os.path.join(ROOT, ".venv/bin/python"), os.path.join(ROOT, "Simulators/quadtank_sim.py"), "--port", "0",
         "--control-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ready = json.loads(p.stdout.readline())
    return p, ready["port"], ready["control_port"]


def sim_control(port, cmd):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall((json.dumps(cmd) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            data += s.recv(65536)
    return json.loads(data)


def config(d, modbus_port, broker_port, metrics_per_message, rate):
    return f"""agent:
  control_socket: {d}/control.sock
poll_groups:
  - name: fast
    period: 100ms
history:
  path: {d}/history.db
  commit_interval: 100ms
devices:
  - {{name: plant, type: modbus_tcp, host: 127.0.0.1, port: {modbus_port}, timeout: 500ms}}
tags:
  - {{name: tank1/level, device: plant, area: input_register, address: 0, type: float32, units: cm}}
  - {{name: tank2/level, device: plant, area: input_register, address: 2, type: float32, units: cm}}
  - {{name: tank3/level, device: plant, area: input_register, address: 4, type: float32, order: CDAB, units: cm}}
  - {{name: tank4/level, device: plant, area: input_register, address: 6, type: float32, units: cm}}
  - {{name: pump1/voltage, device: plant, area: holding_register, address: 0, type: float32, writable: true, limits: {{min: 0, max: 10}}}}
sparkplug:
  group_id: Bench
  edge_node_id: edge1
  brokers: [{{url: "mqtt://127.0.0.1:{broker_port}"}}]
  reconnect_min: 100ms
  reconnect_max: 500ms
  replay: {{metrics_per_message: {metrics_per_message}, messages_per_second: {rate}}}
"""


def start_agent(binary, d, env=None):
    log = open(os.path.join(d, "agent.log"), "a")
    p = subprocess.Popen([binary, "run", "--config", os.path.join(d, "edgepilot.yaml")], stdout=log, stderr=log,
                         env=dict(os.environ, **(env or {})))
    deadline = time.time() + 20
    while not os.path.exists(os.path.join(d, "control.sock")):
        if time.time() > deadline:
            raise SystemExit("agent did not start; see %s/agent.log" % d)
        time.sleep(0.05)
    return p


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()


def fill_queue(db, n):
    c = sqlite3.connect(db)
    ids = []
    for t in TAGS:
        c.execute("INSERT OR IGNORE INTO tags(name) VALUES (?)", (t,))
        ids.append(c.execute("SELECT id FROM tags WHERE name = ?", (t,)).fetchone()[0])
    base = int(time.time() * 1e6) - n * 1000
    c.executemany(
        "INSERT INTO forward_queue(tag_id, ts, value, quality, quality_detail, size) VALUES (?, ?, ?, 0, 0, 48)",
        ((ids[i % 4], base + i * 1000, 10.0 + (i % 1000) / 100.0) for i in range(n)))
    c.execute("UPDATE counters SET value = value + ? WHERE name = 'forward_rows'", (n,))
    c.execute("UPDATE counters SET value = value + ? WHERE name = 'forward_bytes'", (48 * n,))
    c.commit()
    c.close()


class Counter:
    def __init__(self, port, topic):
        self.historical = 0
        self.first = None
        self.last = None
        self.latest = {}
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.aliases = {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub-%d" % os.getpid())
        self.client.on_message = self.on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        ready.wait(10)

    def on_message(self, c, u, msg):
        now = time.perf_counter()
        p = pb.Payload()
        p.ParseFromString(msg.payload)
        with self.cond:
            # Replay messages are historical throughout: counted whole, so the subscriber keeps up at 200k/s.
            if "DDATA" in msg.topic and len(p.metrics) and p.metrics[0].is_historical:
                self.historical += len(p.metrics)
                self.first = self.first or now
                self.last = now
                self.cond.notify_all()
                return
            for m in p.metrics:
                if m.HasField("name") and "BIRTH" in msg.topic:
                    self.aliases[m.alias] = m.name
                if m.is_historical:
                    self.historical += 1
                    self.first = self.first or now
                    self.last = now
                else:
                    name = m.name if m.HasField("name") else self.aliases.get(m.alias)
                    field = m.WhichOneof("value")
                    if field:
                        self.latest[name] = (getattr(m, field), now)
            self.cond.notify_all()

    def reset(self):
        with self.cond:
            self.historical = 0
            self.first = None
            self.last = None

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def peer_drain(db, port, n, per_message):
    """The same rows, the same payload shape, QoS 1, every PUBACK awaited; deletes nothing (read-only peer)."""
    c = sqlite3.connect(db)
    rows = c.execute(
        "SELECT t.name, q.ts, q.value FROM forward_queue q JOIN tags t ON t.id = q.tag_id ORDER BY q.id LIMIT ?",
        (n,)).fetchall()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-peer")
    client.max_inflight_messages_set(8)
    client.connect("127.0.0.1", port)
    client.loop_start()
    start = time.perf_counter()
    infos = []
    for i in range(0, len(rows), per_message):
        p = pb.Payload()
        p.timestamp = int(time.time() * 1000)
        p.seq = (i // per_message) % 256
        for name, ts, value in rows[i:i + per_message]:
            m = p.metrics.add()
            m.name = name
            m.timestamp = ts // 1000
            m.datatype = DT.Float
            m.float_value = value
            m.is_historical = True
        infos.append(client.publish("spBv1.0/Bench/DDATA/peer/plant", p.SerializeToString(), qos=1))
    for info in infos:
        info.wait_for_publish(30)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    return len(rows) / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--no-latency", action="store_true", help="the replay drain only")
    ap.add_argument("--edgepilot", default=os.path.join(ROOT, ".build/release/edgepilot"))
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="spb-bench-")
    sim, modbus_port, control_port = start_sim()
    broker_port = free_port()
    with open(os.path.join(d, "edgepilot.yaml"), "w") as f:
        f.write(config(d, modbus_port, broker_port, 1000, 0))
    try:
        # Schema: one start without a broker creates the database at version 3.
        agent = start_agent(args.edgepilot, d)
        time.sleep(1)
        stop(agent)
        broker = start_broker(d, broker_port)
        sub = Counter(broker_port, "spBv1.0/Bench/#")

        def drain(env, label):
            fill_queue(os.path.join(d, "history.db"), args.samples)
            sub.reset()
            agent = start_agent(args.edgepilot, d, env)
            deadline = time.time() + 900
            with sub.cond:
                while sub.historical < args.samples and time.time() < deadline:
                    sub.cond.wait(1)
                got, first, last = sub.historical, sub.first, sub.last
            stop(agent)
            rate = got / (last - first) if got > 1 and last > first else 0
            print(f"replay drain, {label}: {got:,} of {args.samples:,} historical metrics, {rate:,.0f} metrics/s "
                  f"(1000 per message, unthrottled, window 8)", flush=True)
            return rate

        qos0 = drain({}, "QoS 0 + receipts (the agent)")
        qos1 = drain({"EDGEPILOT_BENCH_REPLAY_QOS1": "1"}, "QoS 1 + PUBACK (benchmark-only path)")
        print(f"QoS 0 + receipts / QoS 1 = {qos0 / qos1:.2f} (target for QoS 0: >= 200,000 metrics/s)"
              if qos1 else "QoS 1 drain did not finish")
        # The queue is empty again after the drains: the peer reads freshly stored rows.
        fill_queue(os.path.join(d, "history.db"), args.samples)
        peer = peer_drain(os.path.join(d, "history.db"), broker_port, args.samples, 1000)
        print(f"peer (Python sqlite3 + Tahu protobuf + paho, QoS 1): {peer:,.0f} metrics/s; "
              f"agent (QoS 0)/peer = {qos0 / peer:.2f}")
        if args.no_latency:
            sub.stop()
            stop(broker)
            return

        # Latency: register change in the simulator -> DDATA at the subscriber.
        agent = start_agent(args.edgepilot, d)
        time.sleep(3)
        latencies = []
        for i in range(args.changes):
            value = 1.0 + (i % 80) / 10.0 + 0.05
            with sub.cond:
                sub.latest.pop("pump1/voltage", None)
            t0 = time.perf_counter()
            sim_control(control_port, {"cmd": "set", "v": [value, 3.0]})
            with sub.cond:
                while time.perf_counter() - t0 < 5:
                    seen = sub.latest.get("pump1/voltage")
                    if seen and abs(seen[0] - value) < 1e-4:
                        latencies.append((seen[1] - t0) * 1000)
                        break
                    sub.cond.wait(0.05)
            time.sleep(0.05 + (i % 7) * 0.013)  # spread the changes over the poll phase
        stop(agent)
        latencies.sort()
        if latencies:
            p50 = latencies[len(latencies) // 2]
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(f"latency register change -> subscriber: n={len(latencies)} p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                  f"max {latencies[-1]:.1f} ms (poll period 100 ms; target p99 <= 120 ms)")
        sub.stop()
        stop(broker)
    finally:
        sim.terminate()
        sim.wait()


if __name__ == "__main__":
    main()
