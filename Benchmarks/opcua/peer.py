#!/usr/bin/env python3
"""asyncua's own client as the peer for Benchmarks/opcua/run.py.

  peer.py read URL NS COUNT BATCH ROUNDS     -> {"ms": [per-round milliseconds of reading COUNT nodes]}
  peer.py subscribe URL NS COUNT PERIOD_MS SECONDS
        -> {"changes": n, "seconds": s, "cpu_seconds": c, "rss_kib": r}   (after all items are created)
"""

import asyncio
import json
import resource
import sys
import time

from asyncua import Client, ua


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def read(url: str, ns: int, count: int, batch: int, rounds: int) -> None:
    async with Client(url, timeout=30) as client:
        ids = [ua.NodeId(100000 + k, ns) for k in range(count)]
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for start in range(0, count, batch):
                params = ua.ReadParameters()
                params.TimestampsToReturn = ua.TimestampsToReturn.Both
                for node_id in ids[start : start + batch]:
                    rv = ua.ReadValueId()
                    rv.NodeId = node_id
                    rv.AttributeId = ua.AttributeIds.Value
                    params.NodesToRead.append(rv)
                results = await client.uaclient.read(params)
                assert len(results) == len(params.NodesToRead)
            times.append((time.perf_counter() - t0) * 1000)
        print(json.dumps({"ms": times}), flush=True)


class Counter:
    def __init__(self) -> None:
        self.changes = 0

    def datachange_notification(self, node, val, data) -> None:
        self.changes += 1


async def subscribe(url: str, ns: int, count: int, period_ms: float, seconds: float) -> None:
    async with Client(url, timeout=60) as client:
        handler = Counter()
        sub = await client.create_subscription(period_ms, handler)
        nodes = [client.get_node(ua.NodeId(100000 + k, ns)) for k in range(count)]
        for start in range(0, count, 1000):
            await sub.subscribe_data_change(nodes[start : start + 1000], queuesize=1, sampling_interval=period_ms)
        await asyncio.sleep(2)  # initial values and warm-up
        c0, t0 = handler.changes, time.perf_counter()
        u0 = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.sleep(seconds)
        u1 = resource.getrusage(resource.RUSAGE_SELF)
        result = {
            "changes": handler.changes - c0,
            "seconds": time.perf_counter() - t0,
            "cpu_seconds": (u1.ru_utime - u0.ru_utime) + (u1.ru_stime - u0.ru_stime),
            "rss_kib": rss_kib(),
        }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    mode, url, ns, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if mode == "read":
        asyncio.run(read(url, ns, count, int(sys.argv[5]), int(sys.argv[6])))
    else:
        asyncio.run(subscribe(url, ns, count, float(sys.argv[5]), float(sys.argv[6])))
