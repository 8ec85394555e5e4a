"""Python peer for sparkplugbench: builds and encodes the same NDATA shape with the protobuf package (upb backend)
and the Tahu schema shipped by mqtt-spb-wrapper. Prints one JSON object."""

import argparse
import gzip
import json
import os
import sys
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Peers"))
from sparkplug_tahu import DT, pb  # noqa: E402
from google.protobuf import __version__ as protobuf_version  # noqa: E402
from google.protobuf.internal import api_implementation  # noqa: E402


def ndata(i, seq, n):
    ts = 1_700_000_000_000 + i
    p = pb.Payload()
    p.timestamp = ts
    p.seq = seq
    for k in range(n):
        m = p.metrics.add()
        m.alias = k + 1
        m.timestamp = ts
        r = k % 4
        if r == 0:
            m.datatype = DT.Double
            m.double_value = i * 0.5 + k
        elif r == 1:
            m.datatype = DT.Float
            m.float_value = (i % 1000) * 0.25
        elif r == 2:
            m.datatype = DT.Int32
            m.int_value = (i * 31 - k) & 0xFFFFFFFF
        else:
            m.datatype = DT.Boolean
            m.boolean_value = i % 2 == 0
    return p


def _double(m, name, alias, ts, value):
    if name is not None:
        m.name = name
    if alias is not None:
        m.alias = alias
    m.timestamp = ts
    m.datatype = DT.Double
    m.double_value = value
    m.properties.keys.extend(["Quality", "readOnly"])
    q = m.properties.values.add()
    q.type = DT.Int32
    q.int_value = 192
    r = m.properties.values.add()
    r.type = DT.Boolean
    r.boolean_value = True


def compress(message, algorithm):
    """Tahu's PayloadUtil.compress: the encoded payload compressed whole (zlib's format for DEFLATE, as Java's
    Deflater writes it; gzip for GZIP; level 6 as Java's default) in the body of a SPBV1.0_COMPRESSED payload with the
    original's seq and timestamp and the `algorithm` metric, as the agent's SparkplugCompressor."""
    payload = message.SerializeToString()
    if algorithm == "none":
        return payload
    w = pb.Payload()
    w.timestamp = message.timestamp
    w.seq = message.seq
    w.uuid = "SPBV1.0_COMPRESSED"
    w.body = zlib.compress(payload, 6) if algorithm == "deflate" else gzip.compress(payload, compresslevel=6)
    m = w.metrics.add()
    m.name = "algorithm"
    m.datatype = DT.String
    m.string_value = algorithm.upper()
    return w.SerializeToString()


def births(metrics, members, templates, algorithm="none"):
    """NBIRTH and one DBIRTH per device of `members` Double metrics, flat or one template instance each: the shape
    sparkplugbench --births builds through EdgeNodeSession. Returns the serialized messages, compressed with
    `algorithm` (none, deflate, gzip)."""
    ts = 1_700_000_000_000
    nb = pb.Payload()
    nb.timestamp = ts
    nb.seq = 0
    for name, dt, field, value in (
        ("bdSeq", DT.Int64, "long_value", 0),
        ("Node Control/Rebirth", DT.Boolean, "boolean_value", False),
        ("Node Control/Next Server", DT.Boolean, "boolean_value", False),
    ):
        m = nb.metrics.add()
        m.name = name
        m.timestamp = ts
        m.datatype = dt
        setattr(m, field, value)
    if templates:
        d = nb.metrics.add()
        d.name = "_types_/Pump"
        d.timestamp = ts
        d.datatype = DT.Template
        d.template_value.version = "1-0000000000000000"
        d.template_value.is_definition = True
        for k in range(members):
            mm = d.template_value.metrics.add()
            mm.name = "m%d" % k
            mm.datatype = DT.Double
            mm.is_null = True
    out = [compress(nb, algorithm)]
    alias = 1
    for i in range(metrics // members):
        p = pb.Payload()
        p.timestamp = ts
        p.seq = (i + 1) % 256
        if templates:
            inst = p.metrics.add()
            inst.name = "pump%d" % i
            inst.alias = alias
            alias += 1
            inst.timestamp = ts
            inst.datatype = DT.Template
            inst.template_value.version = "1-0000000000000000"
            inst.template_value.template_ref = "Pump"
            inst.template_value.is_definition = False
            for k in range(members):
                _double(inst.template_value.metrics.add(), "m%d" % k, None, ts, (i * members + k) * 0.5)
        else:
            for k in range(members):
                _double(p.metrics.add(), "pump%d/m%d" % (i, k), alias, ts, (i * members + k) * 0.5)
                alias += 1
        out.append(compress(p, algorithm))
    return out


def births_main(args):
    result = {
        "implementation": "python protobuf %s (%s)" % (protobuf_version, api_implementation.Type()),
        "metrics": args.births,
        "members": args.members,
        "compression": args.compression,
    }
    for key, templates in (("flat", False), ("templates", True)):
        msgs = births(args.births, args.members, templates, args.compression)
        rounds = 0
        start = time.perf_counter()
        while True:
            births(args.births, args.members, templates, args.compression)
            rounds += 1
            elapsed = time.perf_counter() - start
            if elapsed >= args.seconds and rounds >= 3:
                break
        result[key] = {
            "nbirth_bytes": len(msgs[0]),
            "dbirth_bytes": sum(len(m) for m in msgs[1:]),
            "messages": len(msgs),
            "build_ms": elapsed * 1000 / rounds,
            "rounds": rounds,
        }
    print(json.dumps(result, sort_keys=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metrics", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--births", type=int, help="NBIRTH/DBIRTH for this many metrics, flat and as templates")
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--compression", choices=("none", "deflate", "gzip"), default="none")
    args = ap.parse_args()
    if args.births:
        births_main(args)
        return
    for i in range(1000):
        ndata(i, i % 256, args.metrics).SerializeToString()
    iterations = 0
    size = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < args.seconds:
        for _ in range(1000):
            size += len(ndata(iterations, iterations % 256, args.metrics).SerializeToString())
            iterations += 1
        elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "implementation": "python protobuf %s (%s)" % (protobuf_version, api_implementation.Type()),
                "metrics_per_payload": args.metrics,
                "payload_bytes": size // iterations,
                "encode_payloads_per_s": iterations / elapsed,
                "encode_metrics_per_s": iterations * args.metrics / elapsed,
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
