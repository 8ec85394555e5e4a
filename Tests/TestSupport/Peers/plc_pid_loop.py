#!/usr/bin/env python3
"""A PLC running its own PI loop on a first-order-plus-dead-time process, as a Modbus TCP server, for the agent's
loop monitors: the agent only reads it.

Process: tau = 0.5 s, dead time 0.2 s, gain 1; the PLC's PI runs every 50 ms on error = SP - PV, output clamped
to 0..100 %. `--valve sticky` puts a stick-slip valve between output and process (it holds until the output has
moved `--band` % away, then jumps to it): a loop that cycles from stiction. `--valve linear` moves with the output.

Input registers, float32 ABCD: 0 PV, 2 SP, 4 OP, 6 auto (1.0). Prints {"event":"listening","port":N} when ready and
serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import signal
import struct
import sys
import time

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

STEP_S = 0.01
PLC_PERIOD_S = 0.05


class Plant:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sp = 50.0
        self.pv = 40.0
        self.op = 40.0
        self.valve = 40.0
        self.delay = [40.0] * int(round(0.2 / STEP_S))
        self.previous_error = self.sp - self.pv
        self.t = time.monotonic()
        self.next_plc = self.t
        self.noise = random.Random(3)

    def advance(self, now: float) -> None:
        a = math.exp(-STEP_S / 0.5)
        while self.t < now:
            if self.t >= self.next_plc:
                self.next_plc += PLC_PERIOD_S
                pv = self.pv + 0.02 * self.noise.gauss(0, 1)
                e = self.sp - pv
                kc, ti = self.args.kc, self.args.ti
                self.op = min(100.0, max(0.0, self.op + kc * (e - self.previous_error) + kc * PLC_PERIOD_S / ti * e))
                self.previous_error = e
                if self.args.valve == "linear" or abs(self.op - self.valve) > self.args.band:
                    self.valve = self.op
            self.delay.append(self.valve)
            self.pv = a * self.pv + (1 - a) * self.delay.pop(0)
            self.t += STEP_S

    def registers(self) -> list[int]:
        out: list[int] = []
        for v in (self.pv, self.sp, self.op, 1.0):
            raw = struct.pack(">f", v)
            out += [int.from_bytes(raw[0:2], "big"), int.from_bytes(raw[2:4], "big")]
        return out


async def run(args: argparse.Namespace) -> None:
    plant = Plant(args)

    async def action(_fc: int, start: int, _address: int, _count: int,
                     registers: list[int], values: list[int] | list[bool] | None) -> ExcCodes | None:
        if values:
            return ExcCodes.ILLEGAL_FUNCTION  # the agent only watches this loop
        registers[0 - start: 8 - start] = plant.registers()
        return None

    device = SimDevice(id=1, simdata=[SimData(0, values=[0] * 8, datatype=DataType.REGISTERS)], action=action)
    server = ModbusTcpServer(device, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    print(json.dumps({"event": "listening", "port": port}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        plant.advance(time.monotonic())
        try:
            await asyncio.wait_for(stop.wait(), timeout=STEP_S)
        except asyncio.TimeoutError:
            pass
    await server.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--valve", choices=("linear", "sticky"), default="linear")
    ap.add_argument("--band", type=float, default=3.0, help="stick-slip band, %% of output")
    ap.add_argument("--kc", type=float, default=0.5)
    ap.add_argument("--ti", type=float, default=0.5, help="integral time, s")
    asyncio.run(run(ap.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
