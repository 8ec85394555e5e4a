#!/usr/bin/env python3
"""Scalable Modbus TCP plant for poll benchmarks: N devices x M tags of slowly varying values.

Start:  .venv/bin/python Simulators/bench_plant.py --devices 10 --tags 1000
It prints one JSON line {"event":"listening","host":...,"ports":[...],...}, one port per device,
then serves until SIGINT/SIGTERM, when it prints {"event":"stopped","requests":[...]}.

Layout (documented in README.md): device d (0-based, port ports[d]) holds tag i (0-based) at
holding register i (uint16) or i*2..i*2+1 (float32 ABCD). Values follow the formulas below,
recomputed at most once per --update-period and only when the device is read, so an idle
device costs nothing and a polled one costs M sin() per period.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import struct
import sys
import time

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

PERIOD_S = 60.0  # one sine period per minute: slow, but visible within a benchmark run


def uint16_value(d: int, i: int, n_dev: int, m: int, t: int) -> int:
    """Tag value for uint16 mode at integer epoch second t (phase spread over all tags)."""
    k = d * m + i
    return int(round(10000 + 5000 * math.sin(2 * math.pi * (t / PERIOD_S + k / (n_dev * m)))))


def float32_value(d: int, i: int, m: int, t: int) -> float:
    """Tag value for float32 mode: integer part identifies the tag (d*M+i), fraction varies.

    Why: a benchmark can check that every tag landed in the right place, not only that values
    arrived, by rounding the value.
    """
    return float(d * m + i) + 0.25 * math.sin(2 * math.pi * (t / PERIOD_S + i / m))


class BenchDevice:
    """One simulated device: its register image and a lazy refresh hook."""

    def __init__(self, index: int, args: argparse.Namespace) -> None:
        self.index = index
        self.args = args
        self.requests = 0
        self.last_t: int | None = None
        self.regs_per_tag = 2 if args.dtype == "float32" else 1

    def values_at(self, t: int) -> list[int]:
        a = self.args
        if a.dtype == "float32":
            out: list[int] = []
            for i in range(a.tags):
                raw = struct.pack(">f", float32_value(self.index, i, a.tags, t))
                out += [int.from_bytes(raw[0:2], "big"), int.from_bytes(raw[2:4], "big")]
            return out
        return [uint16_value(self.index, i, a.devices, a.tags, t) for i in range(a.tags)]

    async def action(self, _fc: int, start: int, _address: int, _count: int,
                     registers: list[int], values: list[int] | list[bool] | None) -> ExcCodes | None:
        self.requests += 1
        if values:
            return ExcCodes.ILLEGAL_FUNCTION  # read-only plant: writes are not part of the benchmark
        period = self.args.update_period
        t = int(time.time() // period * period)
        if t != self.last_t:
            self.last_t = t
            n = self.args.tags * self.regs_per_tag
            registers[0 - start : n - start] = self.values_at(t)
        return None

    def device(self) -> SimDevice:
        n = self.args.tags * self.regs_per_tag
        # Shared block: FC3 and FC4 both read this memory; only FC3 is documented.
        return SimDevice(
            id=self.args.unit,
            simdata=[SimData(0, values=[0] * n, datatype=DataType.REGISTERS)],
            action=self.action,
        )


async def run(args: argparse.Namespace) -> None:
    devices = [BenchDevice(d, args) for d in range(args.devices)]
    servers: list[ModbusTcpServer] = []
    ports: list[int] = []
    for d, dev in enumerate(devices):
        port = args.port_base + d if args.port_base else 0
        server = ModbusTcpServer(dev.device(), address=(args.host, port))
        await server.serve_forever(background=True)
        servers.append(server)
        ports.append(server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    print(json.dumps({
        "event": "listening", "host": args.host, "ports": ports, "unit": args.unit,
        "tags_per_device": args.tags, "dtype": args.dtype,
        "registers_per_device": args.tags * devices[0].regs_per_tag,
        "update_period_s": args.update_period, "pid": os.getpid(),
    }), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    t0 = time.monotonic()
    cpu0 = time.process_time()
    await stop.wait()
    for server in servers:
        await server.shutdown()
    wall = time.monotonic() - t0
    print(json.dumps({
        "event": "stopped", "requests": [d.requests for d in devices],
        "wall_s": round(wall, 3), "cpu_s": round(time.process_time() - cpu0, 3),
    }), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="N Modbus TCP devices with M slowly varying tags each, for poll benchmarks.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--devices", type=int, default=10, help="number of devices = servers = ports (default 10)")
    ap.add_argument("--tags", type=int, default=1000, help="tags per device (default 1000)")
    ap.add_argument("--dtype", choices=("uint16", "float32"), default="uint16",
                    help="uint16: 1 register per tag; float32: 2 registers ABCD per tag (default uint16)")
    ap.add_argument("--port-base", type=int, default=0, help="first port, devices on consecutive ports; 0 = free ports (default)")
    ap.add_argument("--unit", type=int, default=1, help="unit id; 0 = answer any (default 1)")
    ap.add_argument("--update-period", type=float, default=1.0, help="seconds between value updates (default 1)")
    args = ap.parse_args(argv)
    if not 1 <= args.devices <= 1000:
        ap.error("--devices must be 1..1000")
    regs = args.tags * (2 if args.dtype == "float32" else 1)
    if not 1 <= regs <= 65535:
        ap.error("--tags gives more registers than a device can address (65535)")
    if not 0 <= args.unit <= 255:
        ap.error("--unit must be 0..255")
    if args.update_period <= 0:
        ap.error("--update-period must be > 0")
    try:
        asyncio.run(run(args))
    except (OSError, RuntimeError) as exc:
        print(json.dumps({"event": "error", "error": str(exc)}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
