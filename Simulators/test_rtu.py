"""quadtank_sim.py in Modbus RTU mode (--serial), over a real pseudo-terminal.

The test holds the pty master and speaks RTU frames on it with its own CRC and framing code,
written from the Modbus over Serial Line spec (V1.02) and independent of pymodbus and libmodbus;
the simulator opens the slave side as its serial port through pyserial, as it would a USB adapter.
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from conftest import HERE, Proc, start, stop
from simctl import SimControl

UNIT = 1


def crc16(frame: bytes) -> bytes:
    """Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF), low byte first on the wire."""
    crc = 0xFFFF
    for b in frame:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


def test_crc_matches_the_specs_example():
    # Read 10 holding registers from unit 1: the frame every Modbus tutorial prints.
    assert crc16(bytes.fromhex("01030000000A")) == bytes.fromhex("C5CD")
    # A frame followed by its own CRC has a CRC of zero.
    assert crc16(bytes.fromhex("01030000000AC5CD")) == b"\x00\x00"


class RtuLine:
    """The master end of a pty pair: write request frames, read whatever comes back."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        # Raw before anyone opens the slave: a cooked tty would echo the requests back and
        # translate CR/LF bytes inside frames.
        tty.setraw(self.slave, termios.TCSANOW)
        self.path = os.ttyname(self.slave)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)

    def send(self, unit: int, fc: int, payload: bytes, crc: bytes | None = None) -> None:
        adu = bytes([unit, fc]) + payload
        os.write(self.master, adu + (crc16(adu) if crc is None else crc))

    def receive(self, timeout: float = 2.0, silence: float = 0.1) -> bytes:
        """Bytes until `silence` s without one (end of frame) after the first, or b"" after `timeout`."""
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            wait = silence if data else deadline - time.monotonic()
            if wait <= 0 or not select.select([self.master], [], [], wait)[0]:
                return data
            data += os.read(self.master, 512)

    def transact(self, unit: int, fc: int, payload: bytes, timeout: float = 2.0) -> tuple[int, bytes]:
        """Send a request and return (function code, data after it) of a well-formed reply."""
        self.send(unit, fc, payload)
        frame = self.receive(timeout)
        assert len(frame) >= 5, f"no or short reply to fc {fc}: {frame.hex()}"
        assert crc16(frame) == b"\x00\x00", f"bad CRC in {frame.hex()}"
        assert frame[0] == unit, frame.hex()
        return frame[1], frame[2:-2]

    def read_words(self, fc: int, address: int, count: int, unit: int = UNIT) -> list[int]:
        rfc, data = self.transact(unit, fc, struct.pack(">HH", address, count))
        assert rfc == fc, f"exception {data.hex()}"
        assert data[0] == 2 * count == len(data) - 1
        return list(struct.unpack(f">{count}H", data[1:]))

    def read_bits(self, fc: int, address: int, count: int, unit: int = UNIT) -> list[bool]:
        rfc, data = self.transact(unit, fc, struct.pack(">HH", address, count))
        assert rfc == fc, f"exception {data.hex()}"
        assert data[0] == (count + 7) // 8 == len(data) - 1
        return [bool(data[1 + i // 8] >> (i % 8) & 1) for i in range(count)]


@dataclass
class RtuSim:
    p: Proc
    line: RtuLine
    ctl: SimControl


@pytest.fixture
def rtu_sim() -> Iterator:
    """Factory: rtu_sim(*cli_args) -> RtuSim on a fresh pty; all stopped at teardown."""
    started: list[RtuSim] = []

    def factory(*args: str) -> RtuSim:
        line = RtuLine()
        try:
            p = start(
                "quadtank_sim.py", "--serial", line.path, "--baud", "19200", "--parity", "E",
                "--stopbits", "1", "--control-port", "0", *args,
            )
        except Exception:
            line.close()
            raise
        sim = RtuSim(p, line, SimControl(p.info["control_port"]))
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.ctl.close()
        stderr = sim.p.stderr()
        stop(sim.p)
        sim.line.close()
        assert "Traceback" not in stderr, stderr


def f32(regs: list[int], swap_words: bool = False) -> float:
    if swap_words:
        regs = [regs[1], regs[0]]
    return struct.unpack(">f", struct.pack(">2H", *regs))[0]


def test_listening_line_names_the_serial_port(rtu_sim):
    sim = rtu_sim()
    info = sim.p.info
    assert info["serial"] == sim.line.path
    assert (info["framer"], info["baud"], info["parity"], info["bytesize"], info["stopbits"]) == (
        "rtu", 19200, "E", 8, 1,
    )
    assert "port" not in info and info["control_port"] > 0 and info["unit"] == UNIT


def test_reads_the_register_map_over_rtu(rtu_sim):
    sim = rtu_sim()
    line = sim.line
    ir = line.read_words(4, 0, 8)
    levels = [f32(ir[0:2]), f32(ir[2:4]), f32(ir[4:6], swap_words=True), f32(ir[6:8])]
    i16 = line.read_words(4, 100, 4)
    for h, centi in zip(levels, i16):
        assert 0.5 < h < 20 and abs(h - centi / 100) < 0.02, (levels, i16)
    # The typed block, raw words from the README: many byte values (0x00, 0xFF, 0x0D, 0x11 ...)
    # that a tty not in raw mode would mangle.
    typed = line.read_words(3, 30, 22)
    assert typed == [
        0xFFFE, 0x1DC0, 0xB2D0, 0x5E00, 0xFFFF, 0xFEE0, 0x8E04, 0xFB35, 0x4009, 0x21FB, 0x5444,
        0x2D11, 0x4841, 0x0000, 0x0000, 0xE8C0, 0x4550, 0x2D44, 0x454D, 0x4F31, 0xFFD6, 0xFDE8,
    ]
    assert line.read_bits(1, 0, 2) == [True, True]
    assert len(line.read_bits(2, 0, 2)) == 2
    stats = sim.ctl.get()["stats"]
    assert stats["requests"] == 5 and stats["responses"] == 5 and stats["exceptions_sent"] == 0


def test_writes_over_rtu_reach_the_plant(rtu_sim):
    sim = rtu_sim()
    line = sim.line
    # FC 16: v1 = 4.5 V as float32 ABCD; the reply echoes address and count.
    fc, data = line.transact(UNIT, 16, struct.pack(">HHB", 0, 2, 4) + struct.pack(">f", 4.5))
    assert (fc, data) == (16, struct.pack(">HH", 0, 2))
    assert line.read_words(3, 10, 1) == [450]
    # FC 6 echoes the request; FC 5 switches pump 2 off.
    assert line.transact(UNIT, 6, struct.pack(">HH", 11, 625)) == (6, struct.pack(">HH", 11, 625))
    assert line.transact(UNIT, 5, struct.pack(">HH", 1, 0x0000)) == (5, struct.pack(">HH", 1, 0))
    state = sim.ctl.get()
    assert state["v"] == [4.5, 6.25] and state["pumps"] == [True, False]


def test_exception_replies_are_rtu_frames(rtu_sim):
    sim = rtu_sim()
    # IR 8 does not exist: function | 0x80, exception 2, valid CRC.
    assert sim.line.transact(UNIT, 4, struct.pack(">HH", 8, 1)) == (0x84, b"\x02")
    sim.ctl.exception(6, addresses=[100], functions=[4])
    assert sim.line.transact(UNIT, 4, struct.pack(">HH", 100, 1)) == (0x84, b"\x06")
    sim.ctl.exception(0)
    assert len(sim.line.read_words(4, 100, 1)) == 1


def test_other_units_get_silence_and_broadcast_writes_apply_without_reply(rtu_sim):
    sim = rtu_sim()
    line = sim.line
    line.send(7, 4, struct.pack(">HH", 0, 2))
    assert line.receive(timeout=0.5) == b""
    # Unit 0 is the broadcast address: the write is applied, and no device answers it.
    line.send(0, 6, struct.pack(">HH", 10, 480))
    assert line.receive(timeout=0.5) == b""
    assert sim.ctl.get()["v"][0] == 4.8
    stats = sim.ctl.get()["stats"]
    assert (stats["ignored_other_unit"], stats["broadcasts"], stats["responses"]) == (1, 1, 0)
    # The line is still in step: the next request for our unit is answered.
    assert line.read_words(3, 10, 1) == [480]


def test_a_frame_with_a_bad_crc_is_ignored(rtu_sim):
    sim = rtu_sim()
    sim.line.send(UNIT, 4, struct.pack(">HH", 0, 2), crc=b"\x00\x00")
    assert sim.line.receive(timeout=0.5) == b""
    assert len(sim.line.read_words(4, 0, 2)) == 2


def test_delay_holds_the_rtu_reply(rtu_sim):
    sim = rtu_sim()
    sim.ctl.delay(400)
    started = time.monotonic()
    assert len(sim.line.read_words(4, 0, 2)) == 2
    assert time.monotonic() - started >= 0.4
    sim.ctl.delay(0)


def test_tcp_only_faults_are_refused_on_a_serial_line(rtu_sim):
    sim = rtu_sim()
    for cmd in ({"cmd": "drop"}, {"cmd": "refuse", "seconds": 1}):
        reply = sim.ctl.send(cmd, check=False)
        assert reply["ok"] is False and "serial" in reply["error"], reply
    assert len(sim.line.read_words(4, 0, 2)) == 2


def test_a_missing_serial_port_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "no-such-tty")
    r = subprocess.run(
        [sys.executable, str(HERE / "quadtank_sim.py"), "--serial", missing, "--control-port", "0"],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 1
    assert '"event": "error"' in r.stdout and missing in r.stdout and "No such file" in r.stdout, r.stdout


def test_unit_outside_the_rtu_range_is_rejected():
    r = subprocess.run(
        [sys.executable, str(HERE / "quadtank_sim.py"), "--serial", "/dev/null", "--unit", "248"],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 2 and "1..247" in r.stderr


def test_losing_the_serial_port_stops_the_simulator_with_an_error(rtu_sim):
    sim = rtu_sim()
    assert len(sim.line.read_words(4, 0, 2)) == 2
    # Python 3.11's asyncio logs a spurious traceback when a process exits with a control
    # connection still open, so close ours first.
    sim.ctl.close()
    # Closing the master hangs up the slave side, as unplugging a USB adapter does.
    os.close(sim.line.master)
    sim.line.master = os.open("/dev/null", os.O_RDONLY)  # keeps close() in the fixture simple
    sim.p.proc.wait(timeout=10)
    out = sim.p.proc.stdout.read().decode()  # type: ignore[union-attr]
    assert sim.p.proc.returncode == 1
    assert '"event": "error"' in out and "lost" in out, out
