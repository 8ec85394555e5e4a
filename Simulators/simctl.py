#!/usr/bin/env python3
"""Client for the quadtank simulator's fault-control channel (JSON lines over TCP, 127.0.0.1).

As a module:
    from simctl import SimControl, command
    command(port, {"cmd": "delay", "ms": 500})
    with SimControl(port) as ctl:
        ctl.drop(); state = ctl.get()

As a CLI (prints the JSON reply; exit code 1 if the simulator answered ok=false):
    python Simulators/simctl.py --port N get
    python Simulators/simctl.py --port N drop [--reset]
    python Simulators/simctl.py --port N refuse 5
    python Simulators/simctl.py --port N delay 250
    python Simulators/simctl.py --port N exception 6 [--addresses 0 1] [--functions 3 4]
    python Simulators/simctl.py --port N exception 0          # clear
    python Simulators/simctl.py --port N set --levels 10 10 2 2 --volts 4 4 --pumps on off --speed 10
    python Simulators/simctl.py --port N disturb 0 0 -5 0
    python Simulators/simctl.py --port N raw '{"cmd":"get"}'
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any


class SimControlError(RuntimeError):
    """The simulator rejected a command (its reply had ok=false)."""


class SimControl:
    """One persistent control connection. Not thread-safe; one command at a time."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._file = self._sock.makefile("rwb")

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> "SimControl":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def send(self, msg: dict[str, Any], check: bool = True) -> dict[str, Any]:
        """Send one command and return the decoded reply; raise SimControlError on ok=false."""
        self._file.write(json.dumps(msg).encode() + b"\n")
        self._file.flush()
        line = self._file.readline()
        if not line:
            raise ConnectionError("simulator closed the control connection")
        reply = json.loads(line)
        if check and not reply.get("ok"):
            raise SimControlError(reply.get("error", "unknown error"))
        return reply

    # Convenience wrappers; each mirrors one command of the protocol in README.md.
    def get(self) -> dict[str, Any]:
        return self.send({"cmd": "get"})

    def writes(self, clear: bool = False) -> list[dict[str, Any]]:
        return self.send({"cmd": "writes", "clear": clear})["writes"]

    def drop(self, reset: bool = False) -> int:
        return self.send({"cmd": "drop", "mode": "reset" if reset else "close"})["dropped"]

    def refuse(self, seconds: float) -> dict[str, Any]:
        return self.send({"cmd": "refuse", "seconds": seconds})

    def delay(self, ms: float) -> dict[str, Any]:
        return self.send({"cmd": "delay", "ms": ms})

    def exception(
        self, code: int, addresses: list[int] | None = None, functions: list[int] | None = None
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {"cmd": "exception", "code": code}
        if addresses is not None:
            msg["addresses"] = addresses
        if functions is not None:
            msg["functions"] = functions
        return self.send(msg)

    def set(self, **fields: Any) -> dict[str, Any]:
        return self.send({"cmd": "set", **fields})

    def disturb(self, flow: list[float]) -> dict[str, Any]:
        return self.send({"cmd": "disturb", "flow": flow})


def command(port: int, msg: dict[str, Any], host: str = "127.0.0.1", timeout: float = 5.0,
            check: bool = True) -> dict[str, Any]:
    """Send a single command on a fresh connection and return the reply."""
    with SimControl(port, host, timeout) as ctl:
        return ctl.send(msg, check=check)


def _build_message(a: argparse.Namespace) -> dict[str, Any]:
    if a.cmd == "get":
        return {"cmd": "get"}
    if a.cmd == "ping":
        return {"cmd": "ping"}
    if a.cmd == "drop":
        return {"cmd": "drop", "mode": "reset" if a.reset else "close"}
    if a.cmd == "refuse":
        return {"cmd": "refuse", "seconds": a.seconds, "mode": "reset" if a.reset else "close"}
    if a.cmd == "delay":
        return {"cmd": "delay", "ms": a.ms}
    if a.cmd == "exception":
        msg: dict[str, Any] = {"cmd": "exception", "code": a.code}
        if a.addresses is not None:
            msg["addresses"] = a.addresses
        if a.functions is not None:
            msg["functions"] = a.functions
        return msg
    if a.cmd == "set":
        msg = {"cmd": "set"}
        if a.levels is not None:
            msg["h"] = a.levels
        if a.volts is not None:
            msg["v"] = a.volts
        if a.pumps is not None:
            msg["pumps"] = [p == "on" for p in a.pumps]
        if a.speed is not None:
            msg["speed"] = a.speed
        if a.heartbeat_timeout is not None:
            msg["heartbeat_timeout"] = a.heartbeat_timeout
        return msg
    if a.cmd == "disturb":
        return {"cmd": "disturb", "flow": a.flow}
    if a.cmd == "shutdown":
        return {"cmd": "shutdown"}
    if a.cmd == "raw":
        return json.loads(a.json)
    raise AssertionError(a.cmd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Send a fault-control command to quadtank_sim.py.", allow_abbrev=False)
    ap.add_argument("--port", type=int, required=True, help="the simulator's control_port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--timeout", type=float, default=5.0)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("get", help="print the full state")
    sub.add_parser("ping")
    p = sub.add_parser("drop", help="close all current Modbus connections")
    p.add_argument("--reset", action="store_true", help="send RST instead of FIN")
    p = sub.add_parser("refuse", help="drop connections and refuse new ones for N seconds (0 = reopen now)")
    p.add_argument("seconds", type=float)
    p.add_argument("--reset", action="store_true")
    p = sub.add_parser("delay", help="delay every reply by MS milliseconds (0 clears)")
    p.add_argument("ms", type=float)
    p = sub.add_parser("exception", help="answer exception CODE (0 clears)")
    p.add_argument("code", type=int)
    p.add_argument("--addresses", type=int, nargs="+")
    p.add_argument("--functions", type=int, nargs="+")
    p = sub.add_parser("set", help="set plant state")
    p.add_argument("--levels", type=float, nargs=4, metavar=("H1", "H2", "H3", "H4"))
    p.add_argument("--volts", type=float, nargs=2, metavar=("V1", "V2"))
    p.add_argument("--pumps", nargs=2, choices=("on", "off"))
    p.add_argument("--speed", type=float)
    p.add_argument("--heartbeat-timeout", type=float)
    p = sub.add_parser("disturb", help="extra inflow per tank in cm^3/s (negative = leak)")
    p.add_argument("flow", type=float, nargs=4)
    sub.add_parser("shutdown", help="stop the simulator")
    p = sub.add_parser("raw", help="send a JSON object as is")
    p.add_argument("json")
    a = ap.parse_args(argv)
    try:
        reply = command(a.port, _build_message(a), a.host, a.timeout, check=False)
    except (OSError, ValueError) as exc:
        print(f"simctl: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
