"""Python peer for sparkplugbench: builds and encodes the same NDATA shape with the protobuf package (upb backend)
and the Tahu schema shipped by mqtt-spb-wrapper. Prints one JSON object."""

import argparse
import json
import os
import sys
import time

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metrics", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
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
