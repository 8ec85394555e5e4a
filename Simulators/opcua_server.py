#!/usr/bin/env python3
"""OPC UA server simulator for EdgePilot's OPC UA client tests (asyncua).

Serves on 127.0.0.1 only. Prints one JSON line on stdout once listening:
  {"event": "listening", "endpoint": "opc.tcp://127.0.0.1:PORT/", "port": PORT, "namespace": IDX, ...}
then runs until SIGTERM/SIGINT (or is killed: the restart tests rely on a kill being harmless).

Address space (namespace "urn:edgepilot:sim", string NodeIds unless noted):
  QuadTank.h1..h4   Double levels of a quadruple-tank process, integrated every --period seconds, with a small
                    slow inflow disturbance so that they never stop changing
  QuadTank.v1, v2   Double pump voltages, writable; they drive the levels
  Scalar.<Type>     one writable variable per OPC UA built-in type
  Array.<Type>      one-dimensional arrays; Matrix.Double is a 2x3 array with ArrayDimensions
  Id.Numeric (i=4242), Id.Guid (g=...), Id.Opaque (b=...)   the other NodeId forms
  Analog.Level      writable Double, an AnalogItemType with EURange 0..100 and EngineeringUnits %, starts at 50
  Extra.N           --extra N writable Double variables, numeric NodeIds i=100000+k (bulk Read test)

Percent deadband: asyncua 2.1 accepts a DataChangeFilter with DeadbandType Percent but ignores it (it logs
"not implemented" and reports every change). This server implements it as OPC 10000-4 (DataChangeFilter) and
OPC 10000-8 (AnalogItemType) describe: a change is reported when it differs from the last reported value by more
than DeadbandValue % of the node's EURange (High - Low). A percent filter on a node without an EURange property is
refused with BadFilterNotAllowed, and a DeadbandValue outside 0..100 with BadDeadbandFilterInvalid.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import math
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto import uacrypto
from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.monitored_item_service import MonitoredItemService, MonitoredItemValues
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

NAMESPACE_URI = "urn:edgepilot:sim"
APPLICATION_URI = "urn:edgepilot:opcua-sim"
GUID_ID = uuid.UUID("72962b91-fa75-4ae6-8d28-b404dc7daf63")
OPAQUE_ID = bytes.fromhex("deadbeef0102")


class SimUserManager:
    """Anonymous is always allowed; a user name must be 'operator' with the configured password."""

    def __init__(self, password: str) -> None:
        self.password = password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username is None and password is None:
            return User(role=UserRole.User)
        if username == "operator" and password == self.password:
            return User(role=UserRole.User, name="operator")
        return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_certificate(pki_dir: Path) -> tuple[Path, Path]:
    """Reuses the pair if present, so a restarted server keeps the identity the client trusted."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    cert_path = pki_dir / "server_cert.der"
    key_path = pki_dir / "server_key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = generate_private_key()
    cert = generate_self_signed_app_certificate(
        key,
        "EdgePilot OPC UA simulator",
        {"organizationName": "EdgePilot"},
        [
            x509.UniformResourceIdentifier(APPLICATION_URI),
            x509.DNSName("localhost"),
            x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")),
        ],
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days=30,
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return cert_path, key_path


def eu_range(aspace, node_id: ua.NodeId) -> tuple[float, float] | None:
    """(Low, High) of the node's EURange property, or None if it has none."""
    data = aspace.get(node_id)
    if data is None:
        return None
    for ref in data.references:
        if (
            ref.IsForward
            and ref.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HasProperty)
            and ref.BrowseName == ua.QualifiedName("EURange", 0)
        ):
            dv = aspace.read_attribute_value(ref.NodeId, ua.AttributeIds.Value)
            value = dv.Value.Value if dv.Value is not None else None
            if isinstance(value, ua.Range):
                return float(value.Low), float(value.High)
    return None


def install_percent_deadband() -> None:
    """Teaches asyncua's MonitoredItemService the percent deadband (see the module docstring).

    The span (DeadbandValue % of the EURange) is fixed when the item is created, as the specification allows, and
    kept on the item's MonitoredItemValues together with the last value reported.
    """
    create = MonitoredItemService._create_data_change_monitored_item
    exceeded = MonitoredItemService._is_deadband_exceeded

    async def create_with_percent(self, params):
        flt = params.RequestedParameters.Filter
        # Decoded filters are asyncua.ua.uaprotocol_auto.DataChangeFilter, not the ua.DataChangeFilter subclass,
        # so look at the field rather than the class.
        if getattr(flt, "DeadbandType", None) != ua.DeadbandType.Percent:
            return await create(self, params)
        refused = None
        limits = eu_range(self.aspace, params.ItemToMonitor.NodeId)
        if not 0.0 <= flt.DeadbandValue <= 100.0:
            refused = ua.StatusCodes.BadDeadbandFilterInvalid
        elif limits is None:
            refused = ua.StatusCodes.BadFilterNotAllowed
        if refused is not None:
            result = ua.MonitoredItemCreateResult()
            result.StatusCode = ua.StatusCode(refused)
            return result
        result = await create(self, params)
        if result.StatusCode.is_good():
            values = self._monitored_items[result.MonitoredItemId].mvalue
            values.percent_span = (limits[1] - limits[0]) * flt.DeadbandValue / 100.0
        return result

    def exceeded_with_percent(self, values: MonitoredItemValues, flt: ua.DataChangeFilter) -> bool:
        if flt.DeadbandType != ua.DeadbandType.Percent:
            return exceeded(self, values, flt)
        current = values.get_current_datavalue()
        if current is None or current.Value is None or not isinstance(current.Value.Value, (int, float)):
            return True
        value = float(current.Value.Value)
        span = getattr(values, "percent_span", None)
        last = getattr(values, "last_reported", None)
        # The initial value (reported while the item is being created, before the span is known) always goes.
        if span is None or last is None or abs(value - last) > span:
            values.last_reported = value
            return True
        return False

    MonitoredItemService._create_data_change_monitored_item = create_with_percent
    MonitoredItemService._is_deadband_exceeded = exceeded_with_percent


async def add_analog_item(
    parent, node_id: ua.NodeId, name: ua.QualifiedName, value: float, low: float, high: float
) -> object:
    """A writable Double of AnalogItemType with an EURange and EngineeringUnits (percent)."""
    idx = node_id.NamespaceIndex
    node = await parent.add_variable(node_id, name, ua.Variant(value, ua.VariantType.Double))
    await node.delete_reference(
        ua.NodeId(ua.ObjectIds.BaseDataVariableType), ua.ObjectIds.HasTypeDefinition, forward=True, bidirectional=False
    )
    await node.add_reference(
        ua.NodeId(ua.ObjectIds.AnalogItemType), ua.ObjectIds.HasTypeDefinition, forward=True, bidirectional=False
    )
    await node.add_property(
        ua.NodeId(f"{node_id.Identifier}.EURange", idx),
        ua.QualifiedName("EURange", 0),
        ua.Variant(ua.Range(Low=low, High=high), ua.VariantType.ExtensionObject),
        datatype=ua.NodeId(ua.ObjectIds.Range),
    )
    percent = ua.EUInformation(
        NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
        UnitId=0x5031,  # UNECE code "P1", percent
        DisplayName=ua.LocalizedText("%"),
        Description=ua.LocalizedText("percent"),
    )
    await node.add_property(
        ua.NodeId(f"{node_id.Identifier}.EngineeringUnits", idx),
        ua.QualifiedName("EngineeringUnits", 0),
        ua.Variant(percent, ua.VariantType.ExtensionObject),
        datatype=ua.NodeId(ua.ObjectIds.EUInformation),
    )
    await node.set_writable()
    return node


def scalar_samples() -> list[tuple[str, object, ua.VariantType]]:
    now = datetime.datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=datetime.timezone.utc)
    return [
        ("Boolean", True, ua.VariantType.Boolean),
        ("SByte", -12, ua.VariantType.SByte),
        ("Byte", 200, ua.VariantType.Byte),
        ("Int16", -30000, ua.VariantType.Int16),
        ("UInt16", 60000, ua.VariantType.UInt16),
        ("Int32", -2_000_000_000, ua.VariantType.Int32),
        ("UInt32", 4_000_000_000, ua.VariantType.UInt32),
        ("Int64", -9_000_000_000_000_000_000, ua.VariantType.Int64),
        ("UInt64", 18_000_000_000_000_000_000, ua.VariantType.UInt64),
        ("Float", 1.5, ua.VariantType.Float),
        ("Double", 3.141592653589793, ua.VariantType.Double),
        ("String", "Grüße, OPC UA", ua.VariantType.String),
        ("DateTime", now, ua.VariantType.DateTime),
        ("Guid", GUID_ID, ua.VariantType.Guid),
        ("ByteString", b"\x00\x01\x02\xff", ua.VariantType.ByteString),
        ("XmlElement", ua.XmlElement("<a>1</a>"), ua.VariantType.XmlElement),
        ("NodeId", ua.NodeId("Some.Node", 2), ua.VariantType.NodeId),
        ("ExpandedNodeId", ua.ExpandedNodeId(1234, 0, NamespaceUri="urn:x", ServerIndex=3), ua.VariantType.ExpandedNodeId),
        ("StatusCode", ua.StatusCode(ua.StatusCodes.BadTypeMismatch), ua.VariantType.StatusCode),
        ("QualifiedName", ua.QualifiedName("Name", 2), ua.VariantType.QualifiedName),
        ("LocalizedText", ua.LocalizedText("Hallo", "de-DE"), ua.VariantType.LocalizedText),
    ]


async def build_address_space(server: Server, idx: int, extra: int) -> dict[str, object]:
    objects = server.nodes.objects
    tank = await objects.add_object(ua.NodeId("QuadTank", idx), ua.QualifiedName("QuadTank", idx))
    nodes: dict[str, object] = {}
    for name, value in (("h1", 12.4), ("h2", 12.7), ("h3", 1.8), ("h4", 1.4)):
        nodes[name] = await tank.add_variable(
            ua.NodeId(f"QuadTank.{name}", idx), ua.QualifiedName(name, idx), ua.Variant(value, ua.VariantType.Double)
        )
    for name in ("v1", "v2"):
        node = await tank.add_variable(
            ua.NodeId(f"QuadTank.{name}", idx), ua.QualifiedName(name, idx), ua.Variant(3.0, ua.VariantType.Double)
        )
        await node.set_writable()
        nodes[name] = node

    scalars = await objects.add_folder(ua.NodeId("Scalar", idx), ua.QualifiedName("Scalar", idx))
    for name, value, vtype in scalar_samples():
        node = await scalars.add_variable(ua.NodeId(f"Scalar.{name}", idx), name, ua.Variant(value, vtype))
        await node.set_writable()

    arrays = await objects.add_folder(ua.NodeId("Array", idx), ua.QualifiedName("Array", idx))
    array_values = [
        ("Boolean", [True, False, True], ua.VariantType.Boolean),
        ("Int32", [1, -2, 3, -4], ua.VariantType.Int32),
        ("Double", [0.5, 1.5, -2.25], ua.VariantType.Double),
        ("String", ["a", "", "ç"], ua.VariantType.String),
        ("ByteString", [b"\x01", b""], ua.VariantType.ByteString),
    ]
    for name, value, vtype in array_values:
        node = await arrays.add_variable(ua.NodeId(f"Array.{name}", idx), name, ua.Variant(value, vtype))
        await node.set_writable()
    matrix_value = ua.Variant([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], ua.VariantType.Double, Dimensions=[2, 3])
    matrix = await arrays.add_variable(ua.NodeId("Matrix.Double", idx), "Matrix", matrix_value)
    # add_variable drops the dimensions of the initial value; writing it again keeps them.
    await matrix.write_value(ua.DataValue(matrix_value))
    await matrix.set_writable()

    ids = await objects.add_folder(ua.NodeId("Ids", idx), ua.QualifiedName("Ids", idx))
    await ids.add_variable(ua.NodeId(4242, idx), "Id.Numeric", ua.Variant(42, ua.VariantType.Int32))
    await ids.add_variable(ua.NodeId(GUID_ID, idx), "Id.Guid", ua.Variant("guid", ua.VariantType.String))
    await ids.add_variable(
        ua.NodeId(OPAQUE_ID, idx, ua.NodeIdType.ByteString), "Id.Opaque", ua.Variant("opaque", ua.VariantType.String)
    )

    analog = await objects.add_folder(ua.NodeId("Analog", idx), ua.QualifiedName("Analog", idx))
    nodes["analog"] = await add_analog_item(
        analog, ua.NodeId("Analog.Level", idx), ua.QualifiedName("Level", idx), 50.0, 0.0, 100.0
    )

    if extra > 0:
        # asyncua checks every new reference against all of the parent's references (quadratic), so the
        # extra variables go into groups of 100 to keep start-up at seconds rather than a minute.
        folder = await objects.add_folder(ua.NodeId("Extra", idx), ua.QualifiedName("Extra", idx))
        group = folder
        for k in range(extra):
            if k % 100 == 0:
                group = await folder.add_folder(ua.NodeId(f"Extra.Group{k // 100}", idx), f"Group{k // 100}")
            node = await group.add_variable(
                ua.NodeId(100000 + k, idx), f"Extra.{k}", ua.Variant(float(k), ua.VariantType.Double)
            )
            await node.set_writable()
    return nodes


async def run_churn(server: Server, idx: int, extra: int, period: float) -> None:
    """Changes every Extra.N value each period (to k + tick, so a client can tell a missed change), for subscription
    throughput benchmarks and the reconnect tests; each change carries its source timestamp, as a device's would."""
    ids = [ua.NodeId(100000 + k, idx) for k in range(extra)]
    tick = 0
    while True:
        tick += 1
        now = datetime.datetime.now(datetime.timezone.utc)
        for k, node_id in enumerate(ids):
            await server.write_attribute_value(
                node_id, ua.DataValue(ua.Variant(float(k + tick), ua.VariantType.Double), SourceTimestamp=now)
            )
        await asyncio.sleep(period)


async def run_tank(nodes: dict[str, object], period: float) -> None:
    """A quadruple-tank process (Johansson 2000, minimum-phase parameters), Euler-integrated."""
    a = [0.071, 0.057, 0.071, 0.057]
    area = [28.0, 32.0, 28.0, 32.0]
    k1, k2, g1, g2, grav = 3.33, 3.35, 0.7, 0.6, 981.0
    # A small, slow inflow disturbance on every tank (about ±0.05 cm in the levels): a real plant never sits at an
    # exact fixed point, and a simulated one that does stops sending data changes, which clients need to see.
    sim_time = 0.0
    while True:
        h = [await nodes[n].read_value() for n in ("h1", "h2", "h3", "h4")]
        v1 = await nodes["v1"].read_value()
        v2 = await nodes["v2"].read_value()
        q = [a[i] * math.sqrt(2 * grav * max(h[i], 0.0)) for i in range(4)]
        dh = [
            (-q[0] + q[2] + g1 * k1 * v1) / area[0],
            (-q[1] + q[3] + g2 * k2 * v2) / area[1],
            (-q[2] + (1 - g2) * k2 * v2) / area[2],
            (-q[3] + (1 - g1) * k1 * v1) / area[3],
        ]
        # Time runs 10x faster than wall clock so that levels visibly move in short tests.
        dt = period * 10.0
        sim_time += dt
        disturbance = 0.002 * math.sin(2.0 * math.pi * sim_time / 200.0)
        dh = [d + disturbance for d in dh]
        for i, name in enumerate(("h1", "h2", "h3", "h4")):
            await nodes[name].write_value(ua.Variant(max(h[i] + dh[i] * dt, 0.0), ua.VariantType.Double))
        await asyncio.sleep(period)


def refuse_services(names: list[str]) -> None:
    """Answers the named services with BadServiceUnsupported, as a server without them would (the client's
    fallbacks after a reactivation: no TransferSubscriptions, no Republish)."""
    from asyncua.common.utils import ServiceError
    from asyncua.server.internal_session import InternalSession

    if "TransferSubscriptions" in names:

        async def no_transfer(self, *args, **kwargs):
            raise ServiceError(ua.StatusCodes.BadServiceUnsupported)

        InternalSession.transfer_subscriptions = no_transfer
    if "Republish" in names:

        def no_republish(self, *args, **kwargs):
            raise ServiceError(ua.StatusCodes.BadServiceUnsupported)

        InternalSession.republish = no_republish


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--pki-dir", type=Path, help="directory for the server certificate; enables secure endpoints")
    parser.add_argument("--password", default="secret", help="password of user 'operator'")
    parser.add_argument("--extra", type=int, default=0, help="number of extra Double variables (Extra.N)")
    parser.add_argument("--period", type=float, default=0.1, help="seconds between tank updates")
    parser.add_argument(
        "--churn-period", type=float, default=0.0, help="if > 0, rewrite every Extra.N value this often (benchmarks)"
    )
    parser.add_argument("--no-anonymous", action="store_true", help="reject anonymous sessions")
    parser.add_argument(
        "--refuse-service",
        action="append",
        default=[],
        choices=["TransferSubscriptions", "Republish"],
        help="answer this service with BadServiceUnsupported (repeatable)",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr)
    install_percent_deadband()
    refuse_services(args.refuse_service)
    server = Server(user_manager=SimUserManager(args.password))
    await server.init()
    server.set_server_name("EdgePilot OPC UA simulator")
    await server.set_application_uri(APPLICATION_URI)
    tokens = [ua.UserNameIdentityToken] if args.no_anonymous else [ua.AnonymousIdentityToken, ua.UserNameIdentityToken]
    server.set_identity_tokens(tokens)
    info: dict[str, object] = {}
    if args.pki_dir is not None:
        cert_path, key_path = ensure_certificate(args.pki_dir)
        await server.load_certificate(str(cert_path))
        await server.load_private_key(str(key_path))
        server.set_security_policy(
            [
                ua.SecurityPolicyType.NoSecurity,
                ua.SecurityPolicyType.Basic256Sha256_Sign,
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
                ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
            ]
        )
        info["certificate"] = str(cert_path)
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])

    idx = await server.register_namespace(NAMESPACE_URI)
    nodes = await build_address_space(server, idx, args.extra)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # The port is chosen as late as possible: building a large address space takes seconds, and a port picked
    # before it could be taken by another process meanwhile (seen as "address already in use" in parallel tests).
    port = args.port or free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/"
    server.set_endpoint(endpoint)
    async with server:
        tank_task = asyncio.create_task(run_tank(nodes, args.period))
        churn_task = (
            asyncio.create_task(run_churn(server, idx, args.extra, args.churn_period)) if args.churn_period > 0 else None
        )
        print(
            json.dumps(
                {"event": "listening", "endpoint": endpoint, "port": port, "namespace": idx, "pid": os.getpid(), **info}
            ),
            flush=True,
        )
        await stop.wait()
        tank_task.cancel()
        if churn_task is not None:
            churn_task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
