"""Tests of the OPC UA simulator's AnalogItemType variable and its percent deadband, with asyncua's own client."""

from __future__ import annotations

import asyncio

import pytest
from asyncua import Client, ua

from conftest import start, stop


class Changes:
    """asyncua subscription handler that keeps every reported value."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def datachange_notification(self, node, val, data) -> None:
        self.values.append(val)


@pytest.fixture
def opcua_sim():
    p = start("opcua_server.py", "--port", "0")
    yield p
    stderr = p.stderr()
    stop(p)
    assert "Traceback" not in stderr, stderr


async def settle(changes: Changes, count: int, timeout: float = 3.0) -> None:
    """Waits until `count` values were reported, or `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(changes.values) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)


def test_analog_item_has_type_eurange_and_units(opcua_sim):
    async def run() -> None:
        async with Client(opcua_sim.info["endpoint"]) as c:
            ns = opcua_sim.info["namespace"]
            level = c.get_node(ua.NodeId("Analog.Level", ns))
            assert await level.read_type_definition() == ua.NodeId(ua.ObjectIds.AnalogItemType)
            assert await level.read_value() == 50.0
            eu = await (await level.get_child("0:EURange")).read_value()
            assert (eu.Low, eu.High) == (0.0, 100.0)
            units = await (await level.get_child("0:EngineeringUnits")).read_value()
            assert units.DisplayName.Text == "%" and units.UnitId == 0x5031

    asyncio.run(run())


def test_percent_deadband_reports_only_changes_beyond_the_share_of_the_eurange(opcua_sim):
    async def run() -> None:
        async with Client(opcua_sim.info["endpoint"]) as c:
            level = c.get_node(ua.NodeId("Analog.Level", opcua_sim.info["namespace"]))
            changes = Changes()
            sub = await c.create_subscription(50, changes)
            await sub.deadband_monitor(level, 2.0, deadbandtype=ua.DeadbandType.Percent)
            await settle(changes, 1)
            assert changes.values == [50.0]
            # 2 % of 0..100 is 2.0. Each step is 0.5 from the last; the deadband is measured from the last value
            # reported (50.0), so 51.5 is still inside it and 52.5 is not.
            for v in (50.5, 51.0, 51.5):
                await level.write_value(ua.Variant(v, ua.VariantType.Double))
                await asyncio.sleep(0.15)
            assert changes.values == [50.0]
            await level.write_value(ua.Variant(52.5, ua.VariantType.Double))
            await settle(changes, 2)
            assert changes.values == [50.0, 52.5]
            # Small steps add up: 53.5 is 1.0 from 52.5 (quiet), 54.6 is 2.1 from it (reported).
            await level.write_value(ua.Variant(53.5, ua.VariantType.Double))
            await asyncio.sleep(0.15)
            await level.write_value(ua.Variant(54.6, ua.VariantType.Double))
            await settle(changes, 3)
            assert changes.values == [50.0, 52.5, 54.6]
            await level.write_value(ua.Variant(50.0, ua.VariantType.Double))

    asyncio.run(run())


def test_percent_deadband_needs_an_eurange_and_a_value_from_0_to_100(opcua_sim):
    async def run() -> None:
        async with Client(opcua_sim.info["endpoint"]) as c:
            ns = opcua_sim.info["namespace"]
            sub = await c.create_subscription(50, Changes())
            plain = c.get_node(ua.NodeId("Scalar.Double", ns))
            with pytest.raises(ua.UaStatusCodeError) as e:
                await sub.deadband_monitor(plain, 2.0, deadbandtype=ua.DeadbandType.Percent)
            assert e.value.code == ua.StatusCodes.BadFilterNotAllowed
            level = c.get_node(ua.NodeId("Analog.Level", ns))
            with pytest.raises(ua.UaStatusCodeError) as e:
                await sub.deadband_monitor(level, 150.0, deadbandtype=ua.DeadbandType.Percent)
            assert e.value.code == ua.StatusCodes.BadDeadbandFilterInvalid
            # Absolute deadbands are asyncua's own and still work on any numeric node.
            assert isinstance(await sub.deadband_monitor(plain, 1.0), int)

    asyncio.run(run())
