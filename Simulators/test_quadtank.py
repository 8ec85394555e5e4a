"""Tests of the quadruple-tank simulator against the running subprocess, over real TCP.

Modbus traffic uses pymodbus's client (an independent client implementation) and, for the
fault switches, a raw-socket client that shows what happens on the wire.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import subprocess
import sys
import time

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from conftest import HERE, RawModbus
from quadtank_sim import (
    P_MINUS_LEVELS,
    QuadTankParams,
    derivatives,
    equilibrium,
    rk4_step,
)

UNIT = 1


def client(port: int, timeout: float = 3.0) -> ModbusTcpClient:
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0)
    assert c.connect()
    return c


def ok(r):
    assert not r.isError(), r
    return r


def words_to_bytes(regs: list[int]) -> bytes:
    return b"".join(struct.pack(">H", r) for r in regs)


def f32(regs: list[int], order: str) -> float:
    """Decode written independently of the simulator's helpers: explicit byte shuffles."""
    b = words_to_bytes(regs)
    if order == "ABCD":
        pass
    elif order == "CDAB":
        b = b[2:4] + b[0:2]
    elif order == "BADC":
        b = bytes([b[1], b[0], b[3], b[2]])
    elif order == "DCBA":
        b = b[::-1]
    return struct.unpack(">f", b)[0]


def read_levels(c: ModbusTcpClient) -> list[float]:
    r = ok(c.read_input_registers(0, count=8, device_id=UNIT)).registers
    return [f32(r[0:2], "ABCD"), f32(r[2:4], "ABCD"), f32(r[4:6], "CDAB"), f32(r[6:8], "ABCD")]


def sim_time(c: ModbusTcpClient) -> int:
    r = ok(c.read_input_registers(200, count=2, device_id=UNIT)).registers
    return (r[0] << 16) | r[1]


def wait_until(pred, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- physics, in process --------------------------------------------------------------------


def test_equilibrium_is_a_fixed_point_and_close_to_the_papers_p_minus():
    p = QuadTankParams()
    eq = equilibrium((3.0, 3.0), p)
    assert all(abs(d) < 1e-12 for d in derivatives(eq, (3.0, 3.0), p))
    # The paper's P- levels are rounded; the exact fixed point is within 0.2 cm of them.
    assert all(abs(a - b) < 0.2 for a, b in zip(eq, P_MINUS_LEVELS)), eq
    # Linearised time constants T_i = A_i/a_i*sqrt(2 h_i/g); Johansson tabulates (62, 90, 23, 30) s
    # for P- from the rounded levels, the exact levels give T2 = 90.6 s.
    T = [A / a * math.sqrt(2 * h / p.g) for A, a, h in zip(p.A, p.a, eq)]
    assert [round(x) for x in T] == [62, 91, 23, 30]


def test_rk4_settles_at_equilibrium_from_p_minus_and_from_empty():
    p = QuadTankParams()
    eq = equilibrium((3.0, 3.0), p)
    for start in (P_MINUS_LEVELS, (0.0, 0.0, 0.0, 0.0)):
        h = start
        for _ in range(30000):  # 3000 s, about 33 slowest time constants
            h = rk4_step(h, (3.0, 3.0), 0.1, p)
        assert all(abs(a - b) < 1e-4 for a, b in zip(h, eq)), (start, h)
    # Starting at the paper's point it stays put apart from the rounding drift.
    h = P_MINUS_LEVELS
    for _ in range(600):
        h = rk4_step(h, (3.0, 3.0), 0.1, p)
        assert all(abs(a - b) < 0.2 for a, b in zip(h, P_MINUS_LEVELS)), h


def test_levels_clamp_to_tank_limits():
    p = QuadTankParams()
    h = (19.9, 19.9, 19.9, 19.9)
    for _ in range(2000):
        h = rk4_step(h, (10.0, 10.0), 0.1, p)
    assert max(h) == 20.0 and min(h) >= 0.0
    h = (0.5, 0.5, 0.5, 0.5)
    for _ in range(5000):
        h = rk4_step(h, (0.0, 0.0), 0.1, p)
    assert min(h) >= 0.0 and max(h) < 1e-3


# --- register map -----------------------------------------------------------------------------


def test_levels_float32_word_orders_match_int16_copies_and_state(quadtank):
    sim = quadtank("--speed", "0")  # frozen physics: every read sees the same state
    sim.ctl.set(h=[11.25, 7.5, 3.125, 19.75])
    c = client(sim.port)
    try:
        levels = read_levels(c)
        assert levels == [11.25, 7.5, 3.125, 19.75]  # exactly representable in float32
        ints = ok(c.read_input_registers(100, count=4, device_id=UNIT)).registers
        assert [x / 100 for x in ints] == [11.25, 7.5, 3.12, 19.75] or [x / 100 for x in ints] == [11.25, 7.5, 3.13, 19.75]
        # h3 really is word-swapped: read as ABCD it is garbage, not 3.125.
        raw = ok(c.read_input_registers(4, count=2, device_id=UNIT)).registers
        assert f32(raw, "ABCD") != 3.125
        assert sim.ctl.get()["h_measured"] == [11.25, 7.5, 3.125, 19.75]
    finally:
        c.close()


def test_typed_holding_registers(quadtank):
    sim = quadtank("--speed", "0")
    c = client(sim.port)
    try:
        r = ok(c.read_holding_registers(30, count=22, device_id=UNIT)).registers
        b = words_to_bytes(r)
        assert struct.unpack(">i", b[0:4])[0] == -123456
        assert struct.unpack(">I", b[4:8])[0] == 3000000000
        assert struct.unpack(">q", b[8:16])[0] == -1234567890123
        assert struct.unpack(">d", b[16:24])[0] == 3.14159265358979
        assert f32(r[12:14], "BADC") == 12.5
        assert f32(r[14:16], "DCBA") == -7.25
        assert b[32:40] == b"EP-DEMO1"
        assert struct.unpack(">h", b[40:42])[0] == -42
        assert struct.unpack(">H", b[42:44])[0] == 65000
        # pymodbus's own converters agree for the big-endian ones.
        assert c.convert_from_registers(r[0:2], c.DATATYPE.INT32) == -123456
        assert c.convert_from_registers(r[8:12], c.DATATYPE.FLOAT64) == 3.14159265358979
        # Writable: a written int32 reads back and shows in the control state.
        ok(c.write_registers(30, c.convert_to_registers(987654, c.DATATYPE.INT32), device_id=UNIT))
        assert c.convert_from_registers(ok(c.read_holding_registers(30, count=2, device_id=UNIT)).registers, c.DATATYPE.INT32) == 987654
        assert sim.ctl.get()["typed"]["int32_abcd"] == 987654
    finally:
        c.close()


def test_voltage_writes_update_both_representations_and_clamp(quadtank):
    sim = quadtank("--speed", "0")
    c = client(sim.port)
    try:
        hr = lambda a, n: ok(c.read_holding_registers(a, count=n, device_id=UNIT)).registers  # noqa: E731
        assert [f32(hr(0, 4)[0:2], "ABCD"), f32(hr(0, 4)[2:4], "ABCD")] == [3.0, 3.0]
        assert hr(10, 2) == [300, 300]

        ok(c.write_registers(0, c.convert_to_registers(4.5, c.DATATYPE.FLOAT32), device_id=UNIT))
        assert hr(10, 2) == [450, 300]
        ok(c.write_register(11, 725, device_id=UNIT))
        assert f32(hr(2, 2), "ABCD") == 7.25
        assert sim.ctl.get()["v"] == [4.5, 7.25]

        # Out of range: clamped to 0..10 V in both representations; FC6 reply still echoes.
        ok(c.write_registers(2, c.convert_to_registers(12.0, c.DATATYPE.FLOAT32), device_id=UNIT))
        assert hr(10, 2) == [450, 1000]
        r = ok(c.write_register(10, (-250) & 0xFFFF, device_id=UNIT))
        assert r.registers == [(-250) & 0xFFFF]
        assert f32(hr(0, 2), "ABCD") == 0.0 and hr(10, 1) == [0]

        # NaN is refused with ILLEGAL DATA VALUE and changes nothing.
        r = c.write_registers(0, c.convert_to_registers(float("nan"), c.DATATYPE.FLOAT32), device_id=UNIT)
        assert r.isError() and r.exception_code == 3
        assert sim.ctl.get()["v"] == [0.0, 10.0]
    finally:
        c.close()


def test_writes_journal_records_what_the_plant_applied(quadtank):
    sim = quadtank("--speed", "0")
    c = client(sim.port)
    try:
        t0 = time.time()
        ok(c.write_registers(0, c.convert_to_registers(4.5, c.DATATYPE.FLOAT32), device_id=UNIT))
        ok(c.write_registers(2, c.convert_to_registers(12.0, c.DATATYPE.FLOAT32), device_id=UNIT))
        writes = sim.ctl.send({"cmd": "writes"})["writes"]
        # As written (before clamping), in order, with the time the plant applied them.
        assert [(w[1], w[2]) for w in writes] == [(0, 4.5), (1, 12.0)]
        assert t0 <= writes[0][0] <= writes[1][0] <= time.time()
    finally:
        c.close()


def test_illegal_addresses_and_wrong_unit(quadtank):
    sim = quadtank("--speed", "0")
    c = client(sim.port)
    try:
        for r in (
            c.read_input_registers(8, count=1, device_id=UNIT),  # gap after the float levels
            c.read_input_registers(0, count=9, device_id=UNIT),  # runs into the gap
            c.read_holding_registers(4, count=1, device_id=UNIT),
            c.read_coils(0, count=3, device_id=UNIT),  # only coils 0 and 1 exist
            c.read_discrete_inputs(2, count=1, device_id=UNIT),
            c.write_coil(5, True, device_id=UNIT),
        ):
            assert r.isError() and r.exception_code == 2, r
        r = c.read_input_registers(0, count=8, device_id=7)
        assert r.isError() and r.exception_code == 0x0B
        ok(c.read_input_registers(0, count=8, device_id=UNIT))  # the connection survived all that
    finally:
        c.close()


def test_unit_zero_answers_any_unit_id(quadtank):
    sim = quadtank("--speed", "0", "--unit", "0")
    c = client(sim.port)
    try:
        for unit in (0, 1, 17, 247):
            assert len(ok(c.read_input_registers(100, count=4, device_id=unit)).registers) == 4
    finally:
        c.close()


def test_high_level_alarm(quadtank):
    sim = quadtank("--speed", "0")
    c = client(sim.port)
    try:
        assert ok(c.read_discrete_inputs(0, count=1, device_id=UNIT)).bits[0] is False
        sim.ctl.set(h=[12.0, 12.0, 19.5, 1.0])
        assert ok(c.read_discrete_inputs(0, count=1, device_id=UNIT)).bits[0] is True
        sim.ctl.set(h=[12.0, 12.0, 18.9, 1.0])
        assert ok(c.read_discrete_inputs(0, count=1, device_id=UNIT)).bits[0] is False
    finally:
        c.close()


# --- physics through the server ----------------------------------------------------------------


def test_server_physics_matches_in_process_rk4(quadtank):
    """The served trajectory is exactly the model integrated offline over the same sim time."""
    sim = quadtank("--speed", "50", "--step-seconds", "0.1")
    start = [10.0, 11.0, 3.0, 2.0]
    t0 = sim.ctl.set(h=start, v=[6.0, 1.5])["t"]
    wait_until(lambda: sim.ctl.get()["t"] >= t0 + 30.0, 20, "30 simulated seconds")
    st = sim.ctl.get()
    n = round((st["t"] - t0) / 0.1)
    h = tuple(start)
    for _ in range(n):
        h = rk4_step(h, (6.0, 1.5), 0.1, QuadTankParams())
    assert all(abs(a - b) < 1e-9 for a, b in zip(h, st["h"])), (h, st["h"], n)


def test_voltages_move_levels_in_the_expected_direction(quadtank):
    sim = quadtank("--speed", "20")
    c = client(sim.port)
    try:
        # More pump-1 voltage: tank 1 (gamma1 share) and tank 4 (1-gamma1 share) fill.
        sim.ctl.set(h=list(P_MINUS_LEVELS))
        t0, h0 = sim_time(c), read_levels(c)
        ok(c.write_registers(0, c.convert_to_registers(6.0, c.DATATYPE.FLOAT32), device_id=UNIT))
        wait_until(lambda: sim_time(c) >= t0 + 40, 20, "40 simulated seconds")
        h1 = read_levels(c)
        assert h1[0] > h0[0] + 1.0 and h1[3] > h0[3] + 1.0, (h0, h1)

        # Less pump-2 voltage (pump 1 back at 3 V): tanks 2 and 3 drain.
        ok(c.write_register(10, 300, device_id=UNIT))
        ok(c.write_register(11, 100, device_id=UNIT))
        sim.ctl.set(h=list(P_MINUS_LEVELS))
        t0, h0 = sim_time(c), read_levels(c)
        wait_until(lambda: sim_time(c) >= t0 + 40, 20, "40 simulated seconds")
        h1 = read_levels(c)
        assert h1[1] < h0[1] - 0.5 and h1[2] < h0[2] - 0.3, (h0, h1)
    finally:
        c.close()


def test_pump_coil_off_stops_its_flow(quadtank):
    sim = quadtank("--speed", "20")
    c = client(sim.port)
    try:
        assert ok(c.read_coils(0, count=2, device_id=UNIT)).bits[:2] == [True, True]
        ok(c.write_coil(0, False, device_id=UNIT))
        assert ok(c.read_coils(0, count=2, device_id=UNIT)).bits[:2] == [False, True]
        assert sim.ctl.get()["pumps"] == [False, True]
        # Tank 4 is fed by pump 1 only: with pump 1 off it can only drain.
        t0, h0 = sim_time(c), read_levels(c)
        wait_until(lambda: sim_time(c) >= t0 + 20, 20, "20 simulated seconds")
        h1 = read_levels(c)
        assert h1[3] < h0[3] - 0.3, (h0, h1)
        # The voltage setpoint is kept while the pump is off.
        assert sim.ctl.get()["v"] == [3.0, 3.0]
        ok(c.write_coils(0, [True, True], device_id=UNIT))
        assert sim.ctl.get()["pumps"] == [True, True]
    finally:
        c.close()


def test_noise_is_on_measurements_only(quadtank):
    sim = quadtank("--speed", "0", "--noise", "0.5", "--seed", "7")
    st = sim.ctl.get()
    assert st["h"] == list(P_MINUS_LEVELS)
    assert st["h_measured"] != st["h"]
    assert all(abs(a - b) < 5 * 0.5 for a, b in zip(st["h_measured"], st["h"]))
    c = client(sim.port)
    try:
        assert [round(x, 4) for x in read_levels(c)] == [round(x, 4) for x in st["h_measured"]]
    finally:
        c.close()


# --- watchdog -------------------------------------------------------------------------------


def test_heartbeat_watchdog(quadtank):
    sim = quadtank("--speed", "0", "--heartbeat-timeout", "1.0")
    c = client(sim.port)
    try:
        lost = lambda: ok(c.read_discrete_inputs(1, count=1, device_id=UNIT)).bits[0]  # noqa: E731
        age = lambda: ok(c.read_input_registers(21, count=1, device_id=UNIT)).registers[0]  # noqa: E731
        ok(c.write_register(20, 1, device_id=UNIT))
        assert lost() is False
        assert age() <= 1
        assert sim.ctl.get()["heartbeat"]["changes"] == 1
        wait_until(lost, 10, "heartbeat lost")
        assert age() >= 1
        # Writing the same value is not a heartbeat: only a change counts.
        ok(c.write_register(20, 1, device_id=UNIT))
        assert lost() is True
        ok(c.write_register(20, 2, device_id=UNIT))
        assert lost() is False
        st = sim.ctl.get()["heartbeat"]
        assert st["value"] == 2 and st["changes"] == 2
        assert ok(c.read_holding_registers(20, count=1, device_id=UNIT)).registers == [2]
    finally:
        c.close()


# --- fault switches ---------------------------------------------------------------------------


def test_drop_closes_tcp_connections(quadtank):
    sim = quadtank("--speed", "0")
    a, b = RawModbus(sim.port), RawModbus(sim.port)
    try:
        for raw in (a, b):
            fc, _ = raw.read(4, 0, 8)
            assert fc == 4
        assert sim.ctl.get()["stats"]["connections_active"] == 2
        assert sim.ctl.drop() == 2
        for raw in (a, b):
            raw.sock.settimeout(5)
            assert raw.sock.recv(16) == b""  # orderly FIN from the server
        st = sim.ctl.get()["stats"]
        assert st["connections_active"] == 0 and st["connections_dropped"] == 2
    finally:
        a.close()
        b.close()
    # The server keeps listening; new clients are served.
    c = client(sim.port)
    try:
        ok(c.read_input_registers(0, count=8, device_id=UNIT))
    finally:
        c.close()


def test_drop_reset_sends_rst(quadtank):
    sim = quadtank("--speed", "0")
    raw = RawModbus(sim.port)
    try:
        assert raw.read(4, 0, 8)[0] == 4
        assert sim.ctl.drop(reset=True) == 1
        raw.sock.settimeout(5)
        with pytest.raises(ConnectionResetError):
            raw.sock.recv(16)
    finally:
        raw.close()


def test_refuse_rejects_connects_then_reopens_same_port(quadtank):
    sim = quadtank("--speed", "0")
    raw = RawModbus(sim.port)
    try:
        assert raw.read(4, 0, 8)[0] == 4
        r = sim.ctl.refuse(1.5)
        assert r["dropped"] == 1
        raw.sock.settimeout(5)
        assert raw.sock.recv(16) == b""
    finally:
        raw.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sim.port), timeout=2).close()
    assert sim.ctl.get()["faults"]["refusing_s"] > 0

    def connects() -> bool:
        try:
            socket.create_connection(("127.0.0.1", sim.port), timeout=2).close()
            return True
        except ConnectionRefusedError:
            return False

    wait_until(connects, 15, "listener to reopen", interval=0.1)
    c = client(sim.port)
    try:
        ok(c.read_input_registers(0, count=8, device_id=UNIT))
    finally:
        c.close()
    # refuse 0 while listening is harmless; refuse then 0 reopens at once.
    sim.ctl.refuse(30)
    sim.ctl.refuse(0)
    assert connects()


def test_delay_holds_every_reply(quadtank):
    sim = quadtank("--speed", "0")
    raw = RawModbus(sim.port)
    try:
        sim.ctl.delay(800)
        # A client with a shorter timeout gives up: nothing arrives within 0.3 s ...
        raw.sock.settimeout(0.3)
        t0 = time.monotonic()
        tid = raw.send(UNIT, 4, struct.pack(">HH", 0, 8))
        with pytest.raises(socket.timeout):
            raw.sock.recv(1)
        # ... and the late reply still comes, never earlier than the delay.
        raw.sock.settimeout(10)
        rtid, _unit, fc, _data = raw.recv()
        assert (rtid, fc) == (tid, 4)
        assert time.monotonic() - t0 >= 0.79
        # Exception replies are delayed too.
        t0 = time.monotonic()
        fc, data = raw.read(4, 8, 1)
        assert (fc, data) == (0x84, b"\x02")
        assert time.monotonic() - t0 >= 0.79
        sim.ctl.delay(0)
        assert sim.ctl.get()["faults"]["delay_ms"] == 0
        assert raw.read(4, 0, 8)[0] == 4
    finally:
        raw.close()
    # What a Modbus client library sees: its own timeout.
    sim.ctl.delay(1500)
    c = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=0.4, retries=0)
    try:
        assert c.connect()
        with pytest.raises(ModbusException):
            r = c.read_input_registers(0, count=8, device_id=UNIT)
            if r.isError():  # some versions return instead of raising
                raise ModbusException(str(r))
    finally:
        c.close()


def test_injected_exceptions_by_address_and_function(quadtank):
    sim = quadtank("--speed", "0")
    c = client(sim.port)
    try:
        sim.ctl.exception(6, addresses=[101])
        r = c.read_input_registers(100, count=4, device_id=UNIT)
        assert r.isError() and r.exception_code == 6
        r = c.read_input_registers(102, count=2, device_id=UNIT)  # does not touch 101
        ok(r)
        ok(c.read_input_registers(0, count=8, device_id=UNIT))

        # Only FC16: the write is refused and not applied, reads still work.
        sim.ctl.exception(4, addresses=[0, 1], functions=[16])
        r = c.write_registers(0, c.convert_to_registers(9.0, c.DATATYPE.FLOAT32), device_id=UNIT)
        assert r.isError() and r.exception_code == 4
        assert sim.ctl.get()["v"] == [3.0, 3.0]
        ok(c.read_holding_registers(0, count=4, device_id=UNIT))

        # Every request, then cleared.
        sim.ctl.exception(11)
        for r in (
            c.read_coils(0, count=2, device_id=UNIT),
            c.read_holding_registers(30, count=2, device_id=UNIT),
            c.write_register(20, 5, device_id=UNIT),
        ):
            assert r.isError() and r.exception_code == 11, r
        sim.ctl.exception(0)
        ok(c.read_coils(0, count=2, device_id=UNIT))
        st = sim.ctl.get()["stats"]
        assert st["exceptions_injected"] == 5
        assert st["requests"] >= 9
    finally:
        c.close()


def test_control_channel_rejects_bad_commands_and_keeps_serving(quadtank):
    sim = quadtank("--speed", "0")
    for msg in (
        {"cmd": "nope"},
        {"cmd": "delay", "ms": -5},
        {"cmd": "set", "h": [1, 2, 3]},
        {"cmd": "set", "h": [1, 2, 3, 4], "pumps": [1, 0]},
        {"cmd": "exception", "code": 3, "addresses": ["x"]},
        ["cmd", "get"],
    ):
        r = sim.ctl.send(msg, check=False)  # type: ignore[arg-type]
        assert r["ok"] is False and r["error"], msg
    # A rejected "set" changes nothing, even the fields that were valid.
    assert sim.ctl.get()["h"] == list(P_MINUS_LEVELS)
    # Garbage bytes on a separate connection.
    with socket.create_connection(("127.0.0.1", sim.control_port), timeout=5) as s:
        s.sendall(b"\xff\xfe not json\n")
        assert json.loads(s.makefile("rb").readline())["ok"] is False
    assert sim.ctl.send({"cmd": "ping"})["ok"] is True


def test_disturbance_flow_changes_levels(quadtank):
    sim = quadtank("--speed", "50")
    base = sim.ctl.get()
    sim.ctl.disturb([0.0, 0.0, 0.0, -3.0])  # leak out of tank 4
    t0 = sim.ctl.get()["t"]
    wait_until(lambda: sim.ctl.get()["t"] >= t0 + 30, 20, "30 simulated seconds")
    assert sim.ctl.get()["h"][3] < base["h"][3] - 0.5


def test_simctl_cli(quadtank):
    sim = quadtank("--speed", "0")
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, str(HERE / "simctl.py"), "--port", str(sim.control_port), *a],
        capture_output=True, text=True, timeout=30,
    )
    r = run("get")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["v"] == [3.0, 3.0]
    r = run("set", "--volts", "4", "5", "--pumps", "on", "off")
    assert r.returncode == 0, r.stderr
    st = sim.ctl.get()
    assert st["v"] == [4.0, 5.0] and st["pumps"] == [True, False]
    r = run("raw", '{"cmd":"bogus"}')
    assert r.returncode == 1 and json.loads(r.stdout)["ok"] is False
    r = run("drop")
    assert r.returncode == 0 and json.loads(r.stdout)["dropped"] == 0
