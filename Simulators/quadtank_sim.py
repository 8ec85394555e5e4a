#!/usr/bin/env python3
"""Quadruple-tank plant simulator serving Modbus TCP or RTU (pymodbus), with fault switches.

The plant is the nonlinear quadruple-tank process of K. H. Johansson, "The quadruple-tank
process", IEEE Trans. Control Systems Technology 8(3):456-465, 2000. The register map and the
fault-control protocol are documented in Simulators/README.md; keep the two in step.

Start:  .venv/bin/python Simulators/quadtank_sim.py --port 0 --control-port 0
    or  .venv/bin/python Simulators/quadtank_sim.py --serial /dev/ttyX --baud 19200 --parity E
It prints one JSON line {"event":"listening",...} with the chosen ports (or serial line), then
serves until SIGINT/SIGTERM.

Why pymodbus: the simulator must be an implementation of Modbus independent of libmodbus (which
EdgePilot uses), so that framing or byte-order mistakes on either side show up in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import signal
import socket
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

log = logging.getLogger("quadtank_sim")

# --------------------------------------------------------------------------------------------
# Physics
# --------------------------------------------------------------------------------------------

LEVEL_MAX_CM = 20.0
VOLTAGE_MAX_V = 10.0
HIGH_ALARM_CM = 19.0


@dataclass
class QuadTankParams:
    """Constants of Johansson (2000), minimum-phase set-up P- by default."""

    A: tuple[float, float, float, float] = (28.0, 32.0, 28.0, 32.0)  # cm^2
    a: tuple[float, float, float, float] = (0.071, 0.057, 0.071, 0.057)  # cm^2
    k: tuple[float, float] = (3.33, 3.35)  # cm^3/(V s)
    gamma: tuple[float, float] = (0.70, 0.60)
    kc: float = 0.5  # V/cm
    g: float = 981.0  # cm/s^2


# Operating point P- as printed in the paper (rounded; the exact equilibrium differs slightly,
# see equilibrium()).
P_MINUS_LEVELS = (12.4, 12.7, 1.8, 1.4)
P_MINUS_VOLTAGES = (3.0, 3.0)


def derivatives(
    h: tuple[float, ...],
    v: tuple[float, float],
    p: QuadTankParams,
    disturbance: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0),
) -> tuple[float, float, float, float]:
    """dh/dt in cm/s. `v` are the effective pump voltages (0 when a pump is off).

    `disturbance` is an extra inflow per tank in cm^3/s (negative = leak), used by the
    control channel's "disturb" command to test disturbance rejection.
    """
    A1, A2, A3, A4 = p.A
    a1, a2, a3, a4 = p.a
    k1, k2 = p.k
    g1, g2 = p.gamma
    two_g = 2.0 * p.g
    # Negative levels can appear inside an RK4 stage; the orifice flow of an empty tank is zero.
    q1 = a1 * math.sqrt(two_g * max(h[0], 0.0))
    q2 = a2 * math.sqrt(two_g * max(h[1], 0.0))
    q3 = a3 * math.sqrt(two_g * max(h[2], 0.0))
    q4 = a4 * math.sqrt(two_g * max(h[3], 0.0))
    u1 = k1 * v[0]
    u2 = k2 * v[1]
    d = disturbance
    return (
        (-q1 + q3 + g1 * u1 + d[0]) / A1,
        (-q2 + q4 + g2 * u2 + d[1]) / A2,
        (-q3 + (1.0 - g2) * u2 + d[2]) / A3,
        (-q4 + (1.0 - g1) * u1 + d[3]) / A4,
    )


def clamp_levels(h: tuple[float, ...]) -> tuple[float, float, float, float]:
    """Physical limits: an empty tank cannot go below 0, a full one overflows at 20 cm."""
    return tuple(min(max(x, 0.0), LEVEL_MAX_CM) for x in h)  # type: ignore[return-value]


def rk4_step(
    h: tuple[float, ...],
    v: tuple[float, float],
    dt: float,
    p: QuadTankParams,
    disturbance: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0),
) -> tuple[float, float, float, float]:
    """One classical Runge-Kutta step of length dt seconds, then the physical clamp."""
    k1 = derivatives(h, v, p, disturbance)
    h2 = tuple(h[i] + 0.5 * dt * k1[i] for i in range(4))
    k2 = derivatives(h2, v, p, disturbance)
    h3 = tuple(h[i] + 0.5 * dt * k2[i] for i in range(4))
    k3 = derivatives(h3, v, p, disturbance)
    h4 = tuple(h[i] + dt * k3[i] for i in range(4))
    k4 = derivatives(h4, v, p, disturbance)
    out = tuple(
        h[i] + dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]) for i in range(4)
    )
    return clamp_levels(out)


def equilibrium(v: tuple[float, float], p: QuadTankParams) -> tuple[float, float, float, float]:
    """Exact steady levels for constant voltages (ignores the 20 cm clamp).

    Setting dh/dt = 0 gives closed forms: each tank's outflow equals its inflow, and
    q = a*sqrt(2 g h) inverts to h = (q/a)^2 / (2 g).
    """
    k1, k2 = p.k
    g1, g2 = p.gamma
    a1, a2, a3, a4 = p.a
    two_g = 2.0 * p.g
    q3 = (1.0 - g2) * k2 * v[1]
    q4 = (1.0 - g1) * k1 * v[0]
    q1 = q3 + g1 * k1 * v[0]
    q2 = q4 + g2 * k2 * v[1]
    return tuple((q / a) ** 2 / two_g for q, a in ((q1, a1), (q2, a2), (q3, a3), (q4, a4)))  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Register encodings (shared with bench_plant.py and the tests' expectations in README.md)
# --------------------------------------------------------------------------------------------


def reorder_bytes(big_endian: bytes, order: str) -> bytes:
    """Rearrange a big-endian value's bytes by a letter pattern such as "CDAB".

    'A' is the most significant byte. The result is what goes on the wire, register by register
    high byte first, so "ABCD" is plain big-endian and "CDAB" swaps the 16-bit words.
    """
    if len(order) != len(big_endian):
        raise ValueError(f"byte order {order!r} does not fit a {len(big_endian)}-byte value")
    return bytes(big_endian[ord(c) - ord("A")] for c in order)


def bytes_to_regs(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def regs_to_bytes(regs: list[int]) -> bytes:
    return b"".join(int(r & 0xFFFF).to_bytes(2, "big") for r in regs)


def encode(fmt: str, value: Any, order: str | None = None) -> list[int]:
    """Encode one value with a struct format char ('f','d','h','H','i','I','q') into registers."""
    raw = struct.pack(">" + fmt, value)
    if order is not None:
        raw = reorder_bytes(raw, order)
    return bytes_to_regs(raw)


def decode(fmt: str, regs: list[int], order: str | None = None) -> Any:
    raw = regs_to_bytes(regs)
    if order is not None:
        # Inverse permutation: position of each big-endian byte in the wire order.
        inv = bytes(raw[order.index(chr(ord("A") + i))] for i in range(len(order)))
        raw = inv
    return struct.unpack(">" + fmt, raw)[0]


def encode_ascii(text: str) -> list[int]:
    data = text.encode("ascii")
    if len(data) % 2:
        data += b"\x00"
    return bytes_to_regs(data)


def scaled_int16(x: float, scale: float = 100.0) -> int:
    """Round and saturate to int16, returned as the unsigned 16-bit register value."""
    n = max(-32768, min(32767, int(round(x * scale))))
    return n & 0xFFFF


def int16_of(reg: int) -> int:
    return reg - 0x10000 if reg & 0x8000 else reg


# Fixed typed values in holding registers 30..51, for decode tests on the client side.
TYPED_VALUES: list[tuple[int, str, str, Any, str | None]] = [
    # (address, name, struct fmt / "ascii", value, byte order)
    (30, "int32_abcd", "i", -123456, "ABCD"),
    (32, "uint32_abcd", "I", 3000000000, "ABCD"),
    (34, "int64_abcd", "q", -1234567890123, "ABCDEFGH"),
    (38, "float64_abcd", "d", 3.14159265358979, "ABCDEFGH"),
    (42, "float32_badc", "f", 12.5, "BADC"),
    (44, "float32_dcba", "f", -7.25, "DCBA"),
    (46, "string8", "ascii", "EP-DEMO1", None),
    (50, "int16", "h", -42, None),
    (51, "uint16", "H", 65000, None),
]
TYPED_FIRST, TYPED_LAST = 30, 51


def typed_block() -> list[int]:
    regs: list[int] = []
    for addr, _name, fmt, value, order in TYPED_VALUES:
        assert addr == TYPED_FIRST + len(regs), "typed values must be contiguous"
        regs += encode_ascii(value) if fmt == "ascii" else encode(fmt, value, order)
    assert len(regs) == TYPED_LAST - TYPED_FIRST + 1
    return regs


def decode_typed(regs: list[int]) -> dict[str, Any]:
    """Decode holding registers 30..51 (as currently stored) for the control channel's `get`."""
    out: dict[str, Any] = {}
    for addr, name, fmt, _value, order in TYPED_VALUES:
        off = addr - TYPED_FIRST
        if fmt == "ascii":
            out[name] = regs_to_bytes(regs[off : off + 4]).decode("ascii", "replace")
        else:
            n = struct.calcsize(fmt) // 2
            out[name] = decode(fmt, regs[off : off + n], order)
    return out


# Register addresses (zero-based). README.md has the same table.
IR_LEVELS_F32 = 0  # 0..7, h1..h4 float32; h3 (IR 4..5) word-swapped CDAB
IR_HB_AGE = 21
IR_LEVELS_I16 = 100  # 100..103
IR_SIM_TIME = 200  # 200..201 uint32 ABCD
HR_V_F32 = 0  # 0..3
HR_V_I16 = 10  # 10..11
HR_HEARTBEAT = 20
COIL_PUMP1, COIL_PUMP2 = 0, 1
DI_HIGH_ALARM, DI_HB_LOST = 0, 1
BIT_COUNT = 2  # coils and discrete inputs exist only at 0 and 1

LEVEL_ORDERS = ("ABCD", "ABCD", "CDAB", "ABCD")  # h3 deliberately word-swapped

# --------------------------------------------------------------------------------------------
# Plant state, faults, statistics
# --------------------------------------------------------------------------------------------


@dataclass
class Faults:
    """Fault switches set through the control channel."""

    delay_s: float = 0.0
    exc_code: int = 0  # 0 = no injected exceptions
    exc_addresses: set[int] | None = None  # None = every request
    exc_functions: set[int] | None = None  # None = every function code
    refuse_until: float = 0.0  # monotonic deadline while the listener is closed

    def exception_for(self, pdu: ModbusPDU) -> int:
        if not self.exc_code:
            return 0
        if self.exc_functions is not None and pdu.function_code not in self.exc_functions:
            return 0
        if self.exc_addresses is None:
            return self.exc_code
        for start, count in touched_ranges(pdu):
            if any(start <= a < start + count for a in self.exc_addresses):
                return self.exc_code
        return 0


@dataclass
class Stats:
    requests: int = 0
    by_function: dict[int, int] = field(default_factory=dict)
    responses: int = 0
    exceptions_sent: int = 0
    exceptions_injected: int = 0
    replies_lost: int = 0  # request answered after its connection was dropped
    connections_accepted: int = 0
    connections_dropped: int = 0
    # Serial (RTU) only: requests for another unit id, and broadcasts (unit 0); neither is answered.
    ignored_other_unit: int = 0
    broadcasts: int = 0


def touched_ranges(pdu: ModbusPDU) -> list[tuple[int, int]]:
    """(start, count) ranges a request reads or writes, for address-filtered faults."""
    fc = pdu.function_code
    if fc == 23:
        return [
            (pdu.read_address, max(pdu.read_count, 1)),  # type: ignore[attr-defined]
            (pdu.write_address, max(pdu.write_count, 1)),  # type: ignore[attr-defined]
        ]
    count = getattr(pdu, "count", 0) or max(len(pdu.bits), len(pdu.registers), 1)
    if fc in (5, 6, 22):
        count = 1
    return [(pdu.address, count)]


class Plant:
    """State of the simulated process. All access happens on the event loop thread."""

    def __init__(self, params: QuadTankParams, args: argparse.Namespace) -> None:
        self.p = params
        self.h: tuple[float, float, float, float] = clamp_levels(tuple(args.initial))
        self.v: list[float] = [3.0, 3.0]
        self.pumps: list[bool] = [True, True]
        self.disturbance: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
        self.noise = args.noise
        self.rng = random.Random(args.seed)
        self.h_meas: tuple[float, ...] = self.h
        self.resample_noise()
        self.t_sim = 0.0
        self.step = args.step_seconds
        self.speed = args.speed
        self._wall0 = time.monotonic()
        self._sim0 = 0.0
        self.overruns = 0  # times the integrator had to skip simulated time to keep up
        self.heartbeat = 0
        self.heartbeat_changes = 0
        # Every voltage write as the plant received it (Unix seconds, pump index, stored value), so a test can
        # check the rate of change the PLC saw, not the one the client meant to send. Bounded: the oldest go.
        self.writes: deque[tuple[float, int, float]] = deque(maxlen=100_000)
        self.hb_timeout = args.heartbeat_timeout
        self._hb_last = time.monotonic()

    # -- physics -----------------------------------------------------------------------------

    def effective_v(self) -> tuple[float, float]:
        return (
            self.v[0] if self.pumps[0] else 0.0,
            self.v[1] if self.pumps[1] else 0.0,
        )

    def resample_noise(self) -> None:
        if self.noise > 0:
            self.h_meas = clamp_levels(tuple(x + self.rng.gauss(0.0, self.noise) for x in self.h))
        else:
            self.h_meas = self.h

    def advance(self, now: float) -> None:
        """Integrate up to the simulated time that corresponds to wall time `now`."""
        target = self._sim0 + self.speed * (now - self._wall0)
        steps = int((target - self.t_sim) / self.step)
        # Never fall into a catch-up spiral: at most 10 s of wall-time work in one tick is
        # absurd; cap the backlog and record that simulated time was skipped.
        max_steps = 20000
        if steps > max_steps:
            self.overruns += 1
            self.t_sim = target - max_steps * self.step
            steps = max_steps
        if steps <= 0:
            return
        v = self.effective_v()
        h = self.h
        for _ in range(steps):
            h = rk4_step(h, v, self.step, self.p, self.disturbance)
        self.h = h
        self.t_sim += steps * self.step
        self.resample_noise()

    def set_speed(self, speed: float) -> None:
        self._sim0, self._wall0 = self.t_sim, time.monotonic()
        self.speed = speed

    def set_levels(self, h: list[float]) -> None:
        self.h = clamp_levels(tuple(float(x) for x in h))
        self.resample_noise()

    def set_voltage(self, i: int, x: float) -> None:
        self.v[i] = min(max(float(x), 0.0), VOLTAGE_MAX_V)

    # -- heartbeat ---------------------------------------------------------------------------

    def write_heartbeat(self, value: int) -> None:
        if value != self.heartbeat:
            self.heartbeat = value
            self.heartbeat_changes += 1
            self._hb_last = time.monotonic()

    def heartbeat_age(self) -> float:
        # Wall-clock on purpose: the watchdog supervises the agent's communication, which runs in
        # real time whatever the --speed of the physics.
        return time.monotonic() - self._hb_last

    def heartbeat_lost(self) -> bool:
        return self.heartbeat_age() > self.hb_timeout

    def high_alarm(self) -> bool:
        return any(x > HIGH_ALARM_CM for x in self.h)


# --------------------------------------------------------------------------------------------
# Modbus server
# --------------------------------------------------------------------------------------------


class FaultingRequestHandler(ServerRequestHandler):
    """Per-connection handler: pymodbus's, with delay/exception faults and unit-id checks.

    Why here and not in the datastore hook: the SimDevice action is only called for requests
    that pymodbus already found valid, and it cannot delay exception replies. Overriding
    handle_request covers every decoded request and keeps pymodbus's framing untouched.
    """

    server: "QuadTankServer"

    async def handle_request(self) -> None:
        # Capture now: a later frame on this connection overwrites last_pdu while we sleep.
        pdu, addr = self.last_pdu, self.last_addr
        if not pdu:
            return
        sim = self.server.sim
        stats = sim.stats
        stats.requests += 1
        stats.by_function[pdu.function_code] = stats.by_function.get(pdu.function_code, 0) + 1
        if sim.serial and pdu.dev_id == 0:
            # RTU broadcast (Modbus over Serial Line 2.2): every device executes a write, none
            # replies. Reads make no sense broadcast and are dropped.
            stats.broadcasts += 1
            if pdu.function_code in WRITE_FUNCTIONS:
                await self._respond(pdu, dev_id=sim.unit)
            return
        if sim.serial and sim.unit != 0 and pdu.dev_id != sim.unit:
            # On a shared serial line a device ignores frames for other addresses: the master sees
            # silence (a timeout), not the gateway exception a TCP server sends.
            stats.ignored_other_unit += 1
            return
        delay = sim.faults.delay_s
        if delay > 0:
            await asyncio.sleep(delay)
        response = await self._respond(pdu)
        if self.transport is None or self.is_closing:
            stats.replies_lost += 1
            return
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        stats.responses += 1
        if response.function_code & 0x80:
            stats.exceptions_sent += 1
        self.server_send(response, addr)

    async def _respond(self, pdu: ModbusPDU, dev_id: int | None = None) -> ModbusPDU:
        sim = self.server.sim
        dev_id = pdu.dev_id if dev_id is None else dev_id
        code = sim.faults.exception_for(pdu)
        if code:
            sim.stats.exceptions_injected += 1
            return ExceptionResponse(pdu.function_code, code)
        if sim.unit != 0 and dev_id != sim.unit:
            # A TCP gateway answers this for a unit behind it that does not respond.
            return ExceptionResponse(pdu.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
        if pdu.function_code in (1, 2, 5, 15):
            # pymodbus stores bits in 16-bit words, so it would accept coils 2..15 too; only
            # 0 and 1 exist on this device.
            for start, count in touched_ranges(pdu):
                if start + count > BIT_COUNT:
                    return ExceptionResponse(pdu.function_code, ExcCodes.ILLEGAL_ADDRESS)
        # Snapshot first: the datastore hook clamps the written values in place, in this list.
        request_regs = list(pdu.registers)
        try:
            response = await pdu.datastore_update(self.server.context, dev_id)
        except Exception as exc:  # never let one bad request kill the connection handler
            log.error("request %s failed: %r", pdu, exc)
            return ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        if pdu.function_code == 6 and not response.function_code & 0x80:
            # The spec makes the FC6 reply an echo of the request; pymodbus would send back the
            # stored (possibly clamped) value, which strict clients reject as a mismatch.
            response.registers = request_regs
        return response


    def callback_disconnected(self, exc: Exception | None) -> None:
        super().callback_disconnected(exc)
        sim = self.server.sim
        if sim.serial and exc is not None and not sim.stopped.is_set():
            # pymodbus does not reopen a lost serial port (it only re-listens TCP); a device
            # that silently went deaf would be worse than one that says so and exits.
            sim.fatal = f"serial port {sim.serial} lost: {exc}"
            sim.stopped.set()


WRITE_FUNCTIONS = frozenset((5, 6, 15, 16, 22))
# Linux device majors of Unix98 pseudo-terminal slaves (/dev/pts/N), see devices.txt.
PTY_SLAVE_MAJORS = range(136, 144)


class QuadTankServer(ModbusTcpServer):
    """pymodbus TCP server whose connections use FaultingRequestHandler."""

    sim: "Simulator"

    def callback_new_connection(self) -> ServerRequestHandler:
        self.sim.stats.connections_accepted += 1
        return FaultingRequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class QuadTankSerialServer(ModbusSerialServer):
    """pymodbus serial server (RTU framer) whose one "connection", the port, uses FaultingRequestHandler."""

    sim: "Simulator"

    def callback_new_connection(self) -> ServerRequestHandler:
        self.sim.stats.connections_accepted += 1
        return FaultingRequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class Simulator:
    """Owns the plant, the Modbus server, the control channel and the physics task."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.unit = args.unit
        self.serial: str | None = args.serial  # serial port path in RTU mode, None for TCP
        self.fatal: str | None = None  # why the simulator stopped on its own, if it did
        self.pty = False  # the serial port is a pseudo-terminal (parity cannot be set on it)
        self.plant = Plant(QuadTankParams(gamma=tuple(args.gamma)), args)  # type: ignore[arg-type]
        self.faults = Faults()
        self.stats = Stats()
        self.server: QuadTankServer | QuadTankSerialServer | None = None
        self.port = 0
        self.control_port = 0
        self._control: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task] = []
        self._reopen_task: asyncio.Task | None = None
        self._hr_regs: list[int] | None = None  # pymodbus's holding-register block, for `get`
        self.stopped = asyncio.Event()

    # -- datastore ---------------------------------------------------------------------------

    def build_device(self) -> SimDevice:
        hr = [
            SimData(HR_V_F32, values=[0] * 4, datatype=DataType.REGISTERS),
            SimData(HR_V_I16, values=[0] * 2, datatype=DataType.REGISTERS),
            SimData(HR_HEARTBEAT, values=[0], datatype=DataType.REGISTERS),
            SimData(TYPED_FIRST, values=typed_block(), datatype=DataType.REGISTERS),
        ]
        ir = [
            SimData(IR_LEVELS_F32, values=[0] * 8, datatype=DataType.REGISTERS),
            SimData(IR_HB_AGE, values=[0], datatype=DataType.REGISTERS),
            SimData(IR_LEVELS_I16, values=[0] * 4, datatype=DataType.REGISTERS),
            SimData(IR_SIM_TIME, values=[0] * 2, datatype=DataType.REGISTERS),
        ]
        co = [SimData(0, values=[True, True], datatype=DataType.BITS)]
        di = [SimData(0, values=[False, False], datatype=DataType.BITS)]
        # Separate blocks: coils, discrete inputs, holding and input registers each have their
        # own address space as on a real PLC; unlisted addresses answer ILLEGAL_ADDRESS.
        return SimDevice(id=self.unit, simdata=(co, di, hr, ir), action=self._action)

    async def _action(
        self,
        func_code: int,
        start: int,
        address: int,
        _count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus datastore hook: runs before each read/write of a valid range.

        Reads refresh the block from the plant state, so a client always sees the current values.
        Writes update the plant and may rewrite `values` in place (clamping), which pymodbus then
        stores. The plant stays the single source of truth.
        """
        p = self.plant
        if func_code in (1, 5, 15):  # coils
            if values:
                for i, bit in enumerate(values):
                    if 0 <= address + i < 2:
                        p.pumps[address + i] = bool(bit)
            registers[0 - start] = int(p.pumps[0]) | (int(p.pumps[1]) << 1)
            return None
        if func_code == 2:  # discrete inputs
            registers[0 - start] = int(p.high_alarm()) | (int(p.heartbeat_lost()) << 1)
            return None
        if func_code == 4:  # input registers
            self._refresh_input(registers, start)
            return None
        # holding registers: 3, 6, 16, 22, 23
        self._hr_regs = registers
        if values:
            return self._write_holding(start, address, registers, values)  # type: ignore[arg-type]
        self._refresh_holding(registers, start)
        return None

    def _refresh_input(self, regs: list[int], start: int) -> None:
        p = self.plant
        for i, (x, order) in enumerate(zip(p.h_meas, LEVEL_ORDERS)):
            a = IR_LEVELS_F32 + 2 * i - start
            regs[a : a + 2] = encode("f", x, order)
            regs[IR_LEVELS_I16 + i - start] = scaled_int16(x)
        regs[IR_HB_AGE - start] = min(int(p.heartbeat_age()), 0xFFFF)
        a = IR_SIM_TIME - start
        regs[a : a + 2] = encode("I", int(p.t_sim) & 0xFFFFFFFF)

    def _holding_image(self) -> dict[int, int]:
        p = self.plant
        img: dict[int, int] = {}
        for i in range(2):
            r = encode("f", p.v[i], "ABCD")
            img[HR_V_F32 + 2 * i], img[HR_V_F32 + 2 * i + 1] = r
            img[HR_V_I16 + i] = scaled_int16(p.v[i])
        img[HR_HEARTBEAT] = p.heartbeat & 0xFFFF
        return img

    def _refresh_holding(self, regs: list[int], start: int) -> None:
        for a, r in self._holding_image().items():
            regs[a - start] = r

    def _write_holding(
        self, start: int, address: int, regs: list[int], values: list[int]
    ) -> ExcCodes | None:
        p = self.plant
        written = range(address, address + len(values))
        proposed = list(regs)
        proposed[address - start : address - start + len(values)] = values

        def hit(first: int, n: int) -> bool:
            return any(first <= a < first + n for a in written)

        new_v = list(p.v)
        for i in range(2):
            f = HR_V_F32 + 2 * i
            if hit(f, 2):
                x = decode("f", proposed[f - start : f - start + 2], "ABCD")
                if math.isnan(x):
                    return ExcCodes.ILLEGAL_VALUE
                new_v[i] = x
            elif hit(HR_V_I16 + i, 1):
                new_v[i] = int16_of(proposed[HR_V_I16 + i - start]) / 100.0
        for i in range(2):
            p.set_voltage(i, new_v[i])
            if hit(HR_V_F32 + 2 * i, 2) or hit(HR_V_I16 + i, 1):
                p.writes.append((time.time(), i, p.v[i]))
        if hit(HR_HEARTBEAT, 1):
            p.write_heartbeat(proposed[HR_HEARTBEAT - start])
        # Write back the canonical (clamped) encodings: into `values` for the written range, so
        # pymodbus stores them, and into the block for the other representation.
        for a, r in self._holding_image().items():
            if a in written:
                values[a - address] = r
            regs[a - start] = r
        return None

    # -- physics task ------------------------------------------------------------------------

    async def _physics(self) -> None:
        # A fixed wall tick; the plant integrates whole steps up to the matching simulated time.
        tick = min(0.05, max(0.005, self.plant.step / max(self.plant.speed, 1e-9)))
        while True:
            self.plant.advance(time.monotonic())
            await asyncio.sleep(tick)

    # -- connections and faults --------------------------------------------------------------

    def drop_connections(self, reset: bool = False) -> int:
        assert self.server is not None
        if self.serial:
            raise ValueError(f"drop and refuse need Modbus TCP; this simulator serves serial port {self.serial}")
        conns = list(self.server.active_connections.values())
        for conn in conns:
            transport = conn.transport
            if transport is not None and reset:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    # Linger 0 makes close() send RST instead of FIN, as a crashed or rebooted
                    # device would.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            conn.close()
        self.stats.connections_dropped += len(conns)
        return len(conns)

    async def refuse(self, seconds: float) -> None:
        """Close the listening socket for `seconds` (connects get ECONNREFUSED), then reopen."""
        assert self.server is not None
        if self._reopen_task is not None:
            self._reopen_task.cancel()
            self._reopen_task = None
        if seconds <= 0:
            await self._reopen()
            return
        listener = self.server.transport
        if listener is not None and listener.is_serving():  # type: ignore[attr-defined]
            listener.close()
        self.faults.refuse_until = time.monotonic() + seconds
        self._reopen_task = asyncio.get_running_loop().create_task(self._reopen_later(seconds))

    async def _reopen_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._reopen_task = None
        await self._reopen()

    async def _reopen(self) -> None:
        assert self.server is not None
        self.faults.refuse_until = 0.0
        listener = self.server.transport
        if listener is not None and listener.is_serving():  # type: ignore[attr-defined]
            return
        loop = asyncio.get_running_loop()
        for attempt in range(50):
            try:
                self.server.transport = await loop.create_server(
                    self.server.handle_new_connection,
                    self.args.host,
                    self.port,
                    reuse_address=True,
                )
                return
            except OSError as exc:
                # The port should still be free; if something grabbed it, retry briefly.
                log.warning("re-listen on port %d failed (%s), attempt %d", self.port, exc, attempt)
                await asyncio.sleep(0.1)
        log.error("could not re-listen on port %d", self.port)

    # -- control channel ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        p = self.plant
        f = self.faults
        now = time.monotonic()
        return {
            "ok": True,
            "t": p.t_sim,
            "speed": p.speed,
            "h": list(p.h),
            "h_measured": list(p.h_meas),
            "v": list(p.v),
            "pumps": list(p.pumps),
            "gamma": list(p.p.gamma),
            "disturbance": list(p.disturbance),
            "noise": p.noise,
            "alarm_high": p.high_alarm(),
            "heartbeat": {
                "value": p.heartbeat,
                "age_s": p.heartbeat_age(),
                "lost": p.heartbeat_lost(),
                "timeout_s": p.hb_timeout,
                "changes": p.heartbeat_changes,
            },
            "typed": decode_typed(
                self._hr_regs[TYPED_FIRST : TYPED_LAST + 1] if self._hr_regs else typed_block()
            ),
            "faults": {
                "delay_ms": f.delay_s * 1000.0,
                "exception": {
                    "code": f.exc_code,
                    "addresses": sorted(f.exc_addresses) if f.exc_addresses is not None else None,
                    "functions": sorted(f.exc_functions) if f.exc_functions is not None else None,
                },
                "refusing_s": max(0.0, f.refuse_until - now),
            },
            "stats": {
                "requests": self.stats.requests,
                "by_function": {str(k): v for k, v in sorted(self.stats.by_function.items())},
                "responses": self.stats.responses,
                "exceptions_sent": self.stats.exceptions_sent,
                "exceptions_injected": self.stats.exceptions_injected,
                "replies_lost": self.stats.replies_lost,
                "connections_accepted": self.stats.connections_accepted,
                "connections_active": len(self.server.active_connections) if self.server else 0,
                "connections_dropped": self.stats.connections_dropped,
                "ignored_other_unit": self.stats.ignored_other_unit,
                "broadcasts": self.stats.broadcasts,
                "overruns": p.overruns,
            },
        }

    async def command(self, msg: Any) -> dict[str, Any]:
        if not isinstance(msg, dict) or not isinstance(msg.get("cmd"), str):
            raise ValueError('expected a JSON object with a string "cmd"')
        cmd = msg["cmd"]
        if cmd == "ping":
            return {"ok": True}
        if cmd == "get":
            return self.state()
        if cmd == "drop":
            mode = msg.get("mode", "close")
            if mode not in ("close", "reset"):
                raise ValueError('"mode" must be "close" or "reset"')
            n = self.drop_connections(reset=mode == "reset")
            return {"ok": True, "dropped": n}
        if cmd == "refuse":
            seconds = _number(msg, "seconds", 0.0, 3600.0)
            n = self.drop_connections(reset=msg.get("mode") == "reset")
            await self.refuse(seconds)
            return {"ok": True, "dropped": n, "refusing_s": seconds}
        if cmd == "delay":
            self.faults.delay_s = _number(msg, "ms", 0.0, 600000.0) / 1000.0
            return {"ok": True, "delay_ms": self.faults.delay_s * 1000.0}
        if cmd == "exception":
            code = int(_number(msg, "code", 0, 255))
            addresses = _int_set(msg, "addresses", 0, 65535)
            functions = _int_set(msg, "functions", 1, 127)
            self.faults.exc_code = code
            self.faults.exc_addresses = addresses
            self.faults.exc_functions = functions
            return {"ok": True, "code": code}
        if cmd == "set":
            # Validate every field before changing anything, so a rejected command has no effect.
            p = self.plant
            h = _floats(msg, "h", 4) if "h" in msg else None
            v = _floats(msg, "v", 2) if "v" in msg else None
            pumps = msg.get("pumps")
            if pumps is not None and not (
                isinstance(pumps, list) and len(pumps) == 2 and all(isinstance(b, bool) for b in pumps)
            ):
                raise ValueError('"pumps" must be a list of 2 booleans')
            speed = _number(msg, "speed", 0.0, 100000.0) if "speed" in msg else None
            hb = _number(msg, "heartbeat_timeout", 0.0, 86400.0) if "heartbeat_timeout" in msg else None
            if h is not None:
                p.set_levels(h)
            if v is not None:
                for i, x in enumerate(v):
                    p.set_voltage(i, x)
            if pumps is not None:
                p.pumps = list(pumps)
            if speed is not None:
                p.set_speed(speed)
            if hb is not None:
                p.hb_timeout = hb
            return self.state()
        if cmd == "writes":
            # The voltage writes received, oldest first; "clear": true empties the log after the reply.
            log = [{"t": t, "pump": i, "v": v} for t, i, v in self.plant.writes]
            if msg.get("clear", False) is True:
                self.plant.writes.clear()
            return {"ok": True, "writes": log}
        if cmd == "disturb":
            self.plant.disturbance = tuple(_floats(msg, "flow", 4))  # type: ignore[assignment]
            return {"ok": True, "disturbance": list(self.plant.disturbance)}
        if cmd == "shutdown":
            self.stopped.set()
            return {"ok": True}
        raise ValueError(f"unknown cmd {cmd!r}")

    async def _control_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    writer.write(b'{"ok":false,"error":"line too long"}\n')
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    reply = await self.command(json.loads(line))
                except (ValueError, TypeError, KeyError, RecursionError) as exc:
                    reply = {"ok": False, "error": str(exc) or type(exc).__name__}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        args = self.args
        if self.serial:
            await self._open_serial()
        else:
            server = QuadTankServer(self.build_device(), address=(args.host, args.port))
            server.sim = self
            self.server = server
            await server.serve_forever(background=True)
            self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        server = self.server
        self._control = await asyncio.start_server(
            self._control_client, "127.0.0.1", args.control_port, limit=65536
        )
        self.control_port = self._control.sockets[0].getsockname()[1]
        self._tasks.append(asyncio.get_running_loop().create_task(self._physics()))
        if self.serial:
            where: dict[str, Any] = {
                "serial": self.serial,
                "framer": "rtu",
                "baud": args.baud,
                "parity": args.parity,
                "bytesize": 8,
                "stopbits": args.stopbits,
                "pty": self.pty,
            }
        else:
            where = {"host": args.host, "port": self.port}
        print(
            json.dumps(
                {
                    "event": "listening",
                    **where,
                    "control_port": self.control_port,
                    "unit": self.unit,
                    "pid": os.getpid(),
                }
            ),
            flush=True,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopped.set)
        await self.stopped.wait()
        for t in self._tasks:
            t.cancel()
        if self._reopen_task:
            self._reopen_task.cancel()
        self._control.close()
        await server.shutdown()
        if not self.fatal:  # main() reports a fatal stop as an error event
            print(json.dumps({"event": "stopped"}), flush=True)

    async def _open_serial(self) -> None:
        args = self.args
        assert self.serial is not None
        # pymodbus reports a port it cannot open only as "Could not start listen"; open it once
        # here so the error says which path and why.
        try:
            fd = os.open(self.serial, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot open serial port {self.serial}: {exc.strerror}") from None
        try:
            self.pty = os.major(os.fstat(fd).st_rdev) in PTY_SLAVE_MAJORS
        finally:
            os.close(fd)
        # A pseudo-terminal has no parity bit: Linux forces CS8 without PARENB on it, and recent
        # kernels fail a tcsetattr whose only change is PARENB, which pyserial's second
        # reconfiguration (pymodbus sets timeout=0 after opening) is. So ask a pty for no parity;
        # the bytes on it are the same either way.
        server = QuadTankSerialServer(
            self.build_device(),
            framer=FramerType.RTU,
            port=self.serial,
            baudrate=args.baud,
            bytesize=8,
            parity="N" if self.pty else args.parity,
            stopbits=args.stopbits,
        )
        server.sim = self
        self.server = server
        await server.serve_forever(background=True)


def _number(msg: dict, key: str, lo: float, hi: float) -> float:
    x = msg.get(key)
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not (lo <= x <= hi):
        raise ValueError(f'"{key}" must be a number in {lo}..{hi}, got {x!r}')
    return float(x)


def _floats(msg: dict, key: str, n: int) -> list[float]:
    x = msg.get(key)
    if not (
        isinstance(x, list)
        and len(x) == n
        and all(isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e) for e in x)
    ):
        raise ValueError(f'"{key}" must be a list of {n} finite numbers, got {x!r}')
    return [float(e) for e in x]


def _int_set(msg: dict, key: str, lo: int, hi: int) -> set[int] | None:
    x = msg.get(key)
    if x is None:
        return None
    if not (isinstance(x, list) and all(isinstance(e, int) and not isinstance(e, bool) and lo <= e <= hi for e in x)):
        raise ValueError(f'"{key}" must be a list of integers in {lo}..{hi}, got {x!r}')
    return set(x)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Quadruple-tank plant (Johansson 2000) as a Modbus TCP or RTU server, with fault switches."
    )
    ap.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=5020, help="Modbus TCP port; 0 = pick a free one (default 5020)")
    ap.add_argument("--control-port", type=int, default=0, help="JSON-lines fault control port on 127.0.0.1; 0 = free (default)")
    ap.add_argument("--unit", type=int, default=1, help="Modbus unit id served; 0 = answer any unit (default 1)")
    ap.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (default 1.0)")
    ap.add_argument("--noise", type=float, default=0.0, help="measurement noise std dev in cm (default 0)")
    ap.add_argument("--seed", type=int, default=None, help="noise RNG seed (default: random)")
    ap.add_argument("--gamma", type=float, nargs=2, default=[0.70, 0.60], metavar=("G1", "G2"),
                    help="valve split ratios (default 0.70 0.60 = P-; 0.43 0.34 = P+)")
    ap.add_argument("--initial", type=float, nargs=4, default=list(P_MINUS_LEVELS), metavar=("H1", "H2", "H3", "H4"),
                    help="initial levels in cm (default P-: 12.4 12.7 1.8 1.4)")
    ap.add_argument("--step-seconds", type=float, default=0.1, help="RK4 integration step in simulated seconds (default 0.1)")
    ap.add_argument("--heartbeat-timeout", type=float, default=3.0, help="seconds without a heartbeat change before 'heartbeat lost' (default 3)")
    ap.add_argument("--log-level", default="WARNING", help="Python log level for stderr (default WARNING)")
    rtu = ap.add_argument_group("Modbus RTU (instead of TCP; --host and --port are then ignored)")
    rtu.add_argument("--serial", metavar="PATH", default=None,
                     help="serve Modbus RTU on this serial port (e.g. /dev/ttyUSB0 or one end of a pty pair)")
    rtu.add_argument("--baud", type=int, default=19200, help="baud rate (default 19200)")
    rtu.add_argument("--parity", choices=("N", "E", "O"), default="E", help="parity (default E, as the Modbus serial spec)")
    rtu.add_argument("--stopbits", type=int, choices=(1, 2), default=1, help="stop bits (default 1)")
    args = ap.parse_args(argv)
    if args.serial is not None and not (args.unit == 0 or 1 <= args.unit <= 247):
        ap.error("--unit must be 1..247 (or 0 = any) on a serial line; 0 is the broadcast address there")
    if args.baud <= 0:
        ap.error("--baud must be > 0")
    if not 0 <= args.unit <= 255:
        ap.error("--unit must be 0..255")
    if not (0 <= args.port <= 65535 and 0 <= args.control_port <= 65535):
        ap.error("ports must be 0..65535")
    if args.speed < 0:
        ap.error("--speed must be >= 0")
    if args.noise < 0:
        ap.error("--noise must be >= 0")
    if not args.step_seconds > 0:
        ap.error("--step-seconds must be > 0")
    if not all(0.0 <= g <= 1.0 for g in args.gamma):
        ap.error("--gamma values must be in 0..1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The signal mask survives exec: a parent that starts us from a libdispatch worker thread
    # (Swift's Foundation.Process in a Swift Testing test) hands us SIGTERM and SIGINT blocked,
    # and then only SIGKILL would stop us, without the "stopped" line.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sim = Simulator(args)
    try:
        asyncio.run(sim.run())
    except (OSError, RuntimeError) as exc:  # bind failures surface as either
        print(json.dumps({"event": "error", "error": str(exc)}), flush=True)
        return 1
    if sim.fatal:
        print(json.dumps({"event": "error", "error": sim.fatal}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
