"""Kafka offsets stored in the lake, committed in the same transaction as the rows they produced.

The table is append-only (one row per partition per batch), so the ingester never deletes under a reader;
the resume position of a partition is its largest `next_offset`. Broker-side group offsets are never read.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pyarrow as pa

from ingest.lake import LAKE

OFFSETS_TABLE = f"{LAKE}.staging._cdc_offsets"
OFFSETS_DDL = f"""
create table if not exists {OFFSETS_TABLE} (
    topic varchar not null,
    "partition" integer not null,
    next_offset bigint not null,
    batch_id bigint not null,
    committed_at timestamptz not null
)"""

Positions = dict[tuple[str, int], int]


def load_positions(con: duckdb.DuckDBPyConnection) -> Positions:
    """The next offset to read per (topic, partition), as committed with the landed rows."""
    rows = con.execute(
        f'select topic, "partition", max(next_offset) from {OFFSETS_TABLE} group by all'
    ).fetchall()
    return {(topic, partition): next_offset for topic, partition, next_offset in rows}


def last_batch_id(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute(f"select coalesce(max(batch_id), 0) from {OFFSETS_TABLE}").fetchone()[0]


def positions_arrow(positions: Mapping[tuple[str, int], int], batch_id: int) -> pa.Table:
    items = sorted(positions.items())
    return pa.table(
        {
            "topic": pa.array([t for (t, _), _ in items], pa.string()),
            "partition": pa.array([p for (_, p), _ in items], pa.int32()),
            "next_offset": pa.array([o for _, o in items], pa.int64()),
            "batch_id": pa.array([batch_id] * len(items), pa.int64()),
        }
    )
