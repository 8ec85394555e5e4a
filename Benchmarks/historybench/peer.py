"""Peer for historybench: the same batched ingest with Python's sqlite3 executemany.

Usage: peer.py PATH SAMPLES BATCH TAGS
PATH must already hold the EdgePilot history schema (historybench creates it with HistoryStore); this inserts
SAMPLES rows in transactions of BATCH rows, with the same pragmas as HistoryStore (WAL, synchronous=FULL,
foreign keys) and the same per-batch counter update, and prints the rate in samples/s on one line.
"""

import sqlite3
import sys
import time


def main() -> None:
    path, samples, batch, tags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    conn = sqlite3.connect(path, isolation_level=None)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    assert mode == "wal", mode
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    tag_ids = []
    for t in range(tags):
        conn.execute("INSERT OR IGNORE INTO tags(name) VALUES (?)", (f"tag.{t}",))
        tag_ids.append(conn.execute("SELECT id FROM tags WHERE name = ?", (f"tag.{t}",)).fetchone()[0])
    base = 1_700_000_000_000_000
    rows = [(tag_ids[i % tags], base + i * 1000, i * 0.25, 0, 0) for i in range(samples)]
    insert = "INSERT INTO samples(tag_id, ts, value, quality, quality_detail) VALUES (?, ?, ?, ?, ?)"
    start = time.perf_counter()
    for offset in range(0, samples, batch):
        chunk = rows[offset : offset + batch]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, chunk)
        conn.execute("UPDATE counters SET value = value + ? WHERE name = 'sample_rows'", (len(chunk),))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    count = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
    assert count == samples, (count, samples)
    conn.close()
    print(f"{samples / elapsed:.0f}")


if __name__ == "__main__":
    main()
