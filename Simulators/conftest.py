"""pytest fixtures: start the simulators as real subprocesses on free loopback ports."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from simctl import SimControl  # noqa: E402


@dataclass
class Proc:
    proc: subprocess.Popen
    info: dict[str, Any]
    stderr_path: str

    def stderr(self) -> str:
        return Path(self.stderr_path).read_text(errors="replace")


def start(script: str, *args: str, timeout: float = 20.0) -> Proc:
    """Run a simulator script and wait for its {"event":"listening"} line."""
    err = tempfile.NamedTemporaryFile(prefix="sim-", suffix=".err", delete=False)
    proc = subprocess.Popen(
        [sys.executable, str(HERE / script), *args],
        stdout=subprocess.PIPE,
        stderr=err,
        stdin=subprocess.DEVNULL,
    )
    err.close()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise RuntimeError(f"{script} did not report listening in {timeout}s")
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"{script} exited early: {Path(err.name).read_text()}")
            info = json.loads(line)
            if info.get("event") == "listening":
                return Proc(proc, info, err.name)
            raise RuntimeError(f"{script} failed to start: {info}")
    except Exception:
        proc.kill()
        proc.wait()
        raise
    finally:
        sel.close()


def stop(p: Proc) -> None:
    if p.proc.poll() is None:
        p.proc.send_signal(signal.SIGTERM)
        try:
            p.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait()
    if p.proc.stdout:
        p.proc.stdout.close()
    os.unlink(p.stderr_path)


@dataclass
class Sim:
    """A running quadtank_sim.py with a control connection."""

    p: Proc
    ctl: SimControl

    @property
    def port(self) -> int:
        return self.p.info["port"]

    @property
    def control_port(self) -> int:
        return self.p.info["control_port"]


@pytest.fixture
def quadtank() -> Iterator:
    """Factory: quadtank(*cli_args) -> Sim. Everything it started is stopped at teardown."""
    started: list[Sim] = []

    def factory(*args: str) -> Sim:
        p = start("quadtank_sim.py", "--port", "0", "--control-port", "0", *args)
        sim = Sim(p, SimControl(p.info["control_port"]))
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.ctl.close()
        stderr = sim.p.stderr()
        stop(sim.p)
        # pymodbus logs unexpected server-side failures at ERROR; none is expected in these tests.
        assert "Traceback" not in stderr, stderr


@pytest.fixture
def bench_plant() -> Iterator:
    started: list[Proc] = []

    def factory(*args: str) -> Proc:
        p = start("bench_plant.py", *args)
        started.append(p)
        return p

    yield factory
    for p in started:
        stop(p)


# --- a minimal Modbus TCP client on raw sockets, independent of pymodbus, for fault tests ------


class RawModbus:
    """Blocking Modbus TCP over a plain socket: lets tests see exactly what the wire does."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.tid = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, unit: int, fc: int, payload: bytes) -> int:
        self.tid = (self.tid + 1) & 0xFFFF
        pdu = bytes([fc]) + payload
        self.sock.sendall(struct.pack(">HHHB", self.tid, 0, len(pdu) + 1, unit) + pdu)
        return self.tid

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed by server")
            buf += chunk
        return buf

    def recv(self) -> tuple[int, int, int, bytes]:
        """Return (transaction id, unit, function code, data after the function code)."""
        tid, proto, length, unit = struct.unpack(">HHHB", self._recv_exact(7))
        assert proto == 0
        body = self._recv_exact(length - 1)
        return tid, unit, body[0], body[1:]

    def read(self, fc: int, address: int, count: int, unit: int = 1) -> tuple[int, bytes]:
        tid = self.send(unit, fc, struct.pack(">HH", address, count))
        rtid, runit, rfc, data = self.recv()
        assert (rtid, runit) == (tid, unit)
        return rfc, data
