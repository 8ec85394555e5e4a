"""Tests of the benchmark plant: N servers, M tags each, values as documented in README.md."""

from __future__ import annotations

import math
import struct
import time

from pymodbus.client import ModbusTcpClient

from bench_plant import PERIOD_S


def read_all(port: int, registers: int) -> list[int]:
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
    assert c.connect()
    try:
        out: list[int] = []
        for a in range(0, registers, 125):
            r = c.read_holding_registers(a, count=min(125, registers - a), device_id=1)
            assert not r.isError(), r
            out += r.registers
        return out
    finally:
        c.close()


def test_float32_tags_identify_device_and_index(bench_plant):
    p = bench_plant("--devices", "3", "--tags", "150", "--dtype", "float32")
    info = p.info
    assert len(info["ports"]) == 3 and len(set(info["ports"])) == 3
    assert info["registers_per_device"] == 300
    for d, port in enumerate(info["ports"]):
        regs = read_all(port, 300)
        values = [struct.unpack(">f", struct.pack(">HH", regs[2 * i], regs[2 * i + 1]))[0] for i in range(150)]
        assert [round(v) for v in values] == [d * 150 + i for i in range(150)]
        # The fraction is the documented sine, |0.25 sin| <= 0.25, and not constant.
        assert all(abs(v - round(v)) <= 0.25 + 1e-6 for v in values)
        assert len({round(v - round(v), 4) for v in values}) > 10


def test_uint16_tags_follow_the_documented_formula(bench_plant):
    p = bench_plant("--devices", "2", "--tags", "300")
    n_dev, m = 2, 300
    for d, port in enumerate(p.info["ports"]):
        regs = read_all(port, m)
        t = int(time.time())
        # The read takes three requests of at most 125 registers, which may straddle a second boundary: each request
        # is answered from one image, from this second or one of the two before.
        candidates = [
            [round(10000 + 5000 * math.sin(2 * math.pi * (tt / PERIOD_S + (d * m + i) / (n_dev * m)))) for i in range(m)]
            for tt in (t, t - 1, t - 2)
        ]
        for a in range(0, m, 125):
            assert any(regs[a : a + 125] == c[a : a + 125] for c in candidates), f"registers {a}… match no image"


def test_writes_are_refused(bench_plant):
    p = bench_plant("--devices", "1", "--tags", "10")
    c = ModbusTcpClient("127.0.0.1", port=p.info["ports"][0], timeout=3, retries=0)
    assert c.connect()
    try:
        r = c.write_register(0, 1, device_id=1)
        assert r.isError() and r.exception_code == 1
        r = c.read_holding_registers(10, count=1, device_id=1)
        assert r.isError() and r.exception_code == 2
    finally:
        c.close()
