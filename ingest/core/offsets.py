"""Kafka offsets stored in the lake, committed in the same transaction as the rows they produced.

The table is append-only (one row per partition per batch), so the ingester never deletes under a reader;
the resume position of a partition is its largest `next_offset`. Broker-side group offsets are never read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from ingest.core import contract
from ingest.core.lake import LAKE

OFFSETS_TABLE = contract.OFFSETS.qualified
OFFSETS_DDL = contract.OFFSETS.ddl

Positions = dict[tuple[str, int], int]


def load_positions(con: duckdb.DuckDBPyConnection, table: str = OFFSETS_TABLE) -> Positions:
    """The next offset to read per (topic, partition), as committed with the landed rows."""
    return load_positions_and_last_batch(con, table)[0]


def load_positions_and_last_batch(
    con: duckdb.DuckDBPyConnection, table: str = OFFSETS_TABLE
) -> tuple[Positions, int]:
    """`load_positions` and the highest batch id that moved a position, in one scan."""
    rows = con.execute(
        f'select topic, "partition", max(next_offset), coalesce(max(batch_id), 0) from {table} group by all'
    ).fetchall()
    positions = {(topic, partition): next_offset for topic, partition, next_offset, _ in rows}
    return positions, max((batch_id for *_, batch_id in rows), default=0)


def positions_arrow(positions: Mapping[tuple[str, int], int], batch_id: int) -> pa.Table:
    items = sorted(positions.items())
    return contract.OFFSETS.arrow(
        {
            "topic": [t for (t, _), _ in items],
            "partition": [p for (_, p), _ in items],
            "next_offset": [o for _, o in items],
            "batch_id": [batch_id] * len(items),
        }
    )


# ------------------------------------------------------------------------------------- generation
# The comment of `_cdc_offsets` names the generation of the staging tables: `ingest replay` switches to
# tables of a new generation, and may first pause writers for a while ("<generation> paused-until <epoch>").
# A writer reads it inside each batch's transaction; a different generation or a pause means its positions
# and table state are stale, so it lands nothing, waits out the pause and reloads (`StagingReplaced`).
PAUSED_UNTIL = " paused-until "


class StagingReplaced(RuntimeError):
    """Staging was switched (or is being switched) under this writer: reload positions and state."""


@dataclass(frozen=True)
class Generation:
    name: str
    paused_until: float = 0.0

    @property
    def paused(self) -> bool:
        return self.paused_until > time.time()

    def comment(self) -> str:
        if not self.paused_until:
            return self.name
        return f"{self.name}{PAUSED_UNTIL}{self.paused_until:.3f}"

    @classmethod
    def parse(cls, comment: str | None) -> Generation:
        name, _, until = (comment or "").partition(PAUSED_UNTIL)
        try:
            return cls(name, float(until) if until else 0.0)
        except ValueError:
            return cls(comment or "")


def read_generation(con: duckdb.DuckDBPyConnection, table_name: str = "_cdc_offsets") -> Generation:
    row = con.execute(
        "select comment from duckdb_tables() where database_name = ? and schema_name = 'staging' "
        "and table_name = ?",
        [LAKE, table_name],
    ).fetchone()
    return Generation.parse(row[0] if row else None)


def write_generation(
    con: duckdb.DuckDBPyConnection, generation: Generation, table: str = OFFSETS_TABLE
) -> None:
    comment = generation.comment().replace("'", "''")
    con.execute(f"comment on table {table} is '{comment}'")
