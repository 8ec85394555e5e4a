#!/usr/bin/env python3
"""OPC UA benchmarks: the agent's OPC UA driver against asyncua's own client, in the same run, same server.

  .venv/bin/python Benchmarks/opcua/run.py [--nodes 10000] [--release]

1. Read of N nodes: the agent polls N tags (mode: poll, batches of max_nodes_per_read = 1000); the figure is the
   driver's own cycle time (`status` lastCycleMilliseconds: Read requests + decoding into the tag table). asyncua's
   client reads the same N nodes in the same batches (Read service only, no decoding into anything).
2. Subscription throughput: the simulator rewrites all N values every --churn seconds; the agent monitors them
   (mode: subscribe, 100 ms). Value changes/s received and CPU% of the receiving process over the same window,
   for the agent (whole process: driver, tag table, history writer into SQLite) and for asyncua's client.
3. RSS with N monitored items: VmRSS of the agent and of the asyncua client process after subscribing.

Security None, on 127.0.0.1; the asyncua server (Python) bounds the change rate both clients can see.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".venv/bin/python")


def start_sim(extra: int, churn: float) -> tuple[subprocess.Popen, dict]:
    p = subprocess.Popen(
        [PY, str(ROOT / "Simulators/opcua_server.py"), "--extra", str(extra), "--churn-period", str(churn)],
        stdout=subprocess.PIPE,
        text=True,
    )
    info = json.loads(p.stdout.readline())
    return p, info


def proc_stat(pid: int) -> tuple[float, int]:
    """(cpu seconds, rss KiB) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return cpu, rss


def agent_config(d: str, endpoint: str, ns: int, n: int, mode: str, period: str) -> str:
    lines = [
        "agent:",
        f"  control_socket: {d}/control.sock",
        "  log_level: warning",
        "poll_groups:",
        "  - name: g",
        f"    period: {period}",
        f"    mode: {mode}",
        "history:",
        f"  path: {d}/history.db",
        "devices:",
        "  - name: srv",
        "    type: opcua",
        f"    endpoint: {endpoint}",
        "    security_policy: none",
        "    timeout: 30s",
        "    max_nodes_per_read: 1000",
        "tags:",
    ]
    for k in range(n):
        lines += [f"  - name: x{k}", "    device: srv", f'    node: "ns={ns};i={100000 + k}"', "    type: float64"]
    return "\n".join(lines) + "\n"


class Agent:
    def __init__(self, binary: str, config: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="opcuabench-")
        self.binary = binary
        self.socket = self.dir + "/control.sock"
        path = self.dir + "/edgepilot.yaml"
        Path(path).write_text(config.replace("@DIR@", self.dir))
        self.log = open(self.dir + "/agent.log", "w")
        self.proc = subprocess.Popen([binary, "run", "--config", path], stdout=self.log, stderr=self.log)
        for _ in range(600):
            if os.path.exists(self.socket):
                break
            time.sleep(0.05)

    def device(self) -> dict:
        out = subprocess.run(
            [self.binary, "status", "--json", "--socket", self.socket], capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)["devices"][0]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wait_for(cond, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.2)
    return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--churn", type=float, default=1.0, help="seconds between rewrites of all values")
    ap.add_argument("--release", action="store_true", help="use .build/release/edgepilot")
    args = ap.parse_args()
    binary = str(ROOT / (".build/release/edgepilot" if args.release else ".build/debug/edgepilot"))
    n = args.nodes
    print(f"edgepilot binary: {binary}; {n} nodes; {os.cpu_count()} CPUs")

    # 1. Read of N nodes
    sim, info = start_sim(n, 0)
    try:
        ep, ns = info["endpoint"], info["namespace"]
        agent = Agent(binary, agent_config("@DIR@", ep, ns, n, "poll", "2s"))
        cycles = []
        try:
            wait_for(lambda: agent.device()["polls"] >= 2, 120)
            last = -1
            end = time.time() + 2.2 * args.rounds + 10
            while len(cycles) < args.rounds and time.time() < end:
                d = agent.device()
                if d["polls"] != last and d["polls"] >= 2:
                    last = d["polls"]
                    cycles.append(d["lastCycleMilliseconds"])
                time.sleep(0.25)
            requests = agent.device()["requestsPerCycle"]
        finally:
            agent.stop()
        peer = subprocess.run(
            [PY, str(ROOT / "Benchmarks/opcua/peer.py"), "read", ep, str(ns), str(n), "1000", str(args.rounds)],
            capture_output=True,
            text=True,
            check=True,
        )
        theirs = json.loads(peer.stdout)["ms"]
    finally:
        sim.terminate()
        sim.wait()
    ours = statistics.median(cycles)
    peer_ms = statistics.median(theirs)
    print(f"\nRead of {n} nodes ({requests} requests of <= 1000 nodes), median of {len(cycles)} / {len(theirs)} rounds:")
    print(f"  edgepilot driver (Read + decode into tag table): {ours:8.1f} ms   ({n / ours * 1000:,.0f} nodes/s)")
    print(f"  asyncua client   (Read only)                   : {peer_ms:8.1f} ms   ({n / peer_ms * 1000:,.0f} nodes/s)")
    print(f"  ratio asyncua / edgepilot: {peer_ms / ours:.2f}x")

    # 2 + 3. Subscription throughput, CPU, RSS
    sim, info = start_sim(n, args.churn)
    try:
        ep, ns = info["endpoint"], info["namespace"]
        agent = Agent(binary, agent_config("@DIR@", ep, ns, n, "subscribe", "100ms"))
        try:
            wait_for(lambda: (agent.device().get("notifications") or 0) >= n, 120)
            time.sleep(2)
            c0 = agent.device().get("notifications") or 0
            cpu0, _ = proc_stat(agent.proc.pid)
            t0 = time.time()
            time.sleep(args.seconds)
            c1 = agent.device().get("notifications") or 0
            cpu1, rss = proc_stat(agent.proc.pid)
            t1 = time.time()
            items = agent.device().get("monitoredItems")
        finally:
            agent.stop()
        peer = subprocess.run(
            [PY, str(ROOT / "Benchmarks/opcua/peer.py"), "subscribe", ep, str(ns), str(n), "100", str(args.seconds)],
            capture_output=True,
            text=True,
            check=True,
        )
        theirs = json.loads(peer.stdout)
    finally:
        sim.terminate()
        sim.wait()
    rate = (c1 - c0) / (t1 - t0)
    cpu = (cpu1 - cpu0) / (t1 - t0) * 100
    prate = theirs["changes"] / theirs["seconds"]
    pcpu = theirs["cpu_seconds"] / theirs["seconds"] * 100
    print(f"\nSubscription, {items} monitored items, server rewrites all values every {args.churn}s, {args.seconds:.0f}s window:")
    print(f"  edgepilot agent : {rate:10,.0f} changes/s   CPU {cpu:5.1f}%   RSS {rss / 1024:6.1f} MiB (whole agent)")
    print(f"  asyncua client  : {prate:10,.0f} changes/s   CPU {pcpu:5.1f}%   RSS {theirs['rss_kib'] / 1024:6.1f} MiB")
    if cpu > 0:
        print(f"  CPU per change, asyncua / edgepilot: {(pcpu / max(prate, 1)) / (cpu / max(rate, 1)):.1f}x")


if __name__ == "__main__":
    main()
