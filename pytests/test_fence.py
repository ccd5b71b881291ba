"""The lake's fence, sink by sink on a real lake: a batch whose partition another writer landed since it
started lands nothing, and a writer alone on the lake skips the checks (they cost more than the rows)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import duckdb
import orjson
import pytest

from conftest import REPO
from ingest.core.batch import Batch
from ingest.core.config import load_settings
from ingest.core.decode import Decoder, RawRecord
from ingest.core.ownership import FENCE_COMPACT_EVERY, Member, PositionsMoved
from ingest.core.sink import LakeSink
from ingest.embedded.catalog import connect_lake

TOPIC = "fence.s.items"
# What a batch reads to check the lake when another writer may have committed since its last batch.
CHECK_READS = ("duckdb_tables()", "_cdc_leases", "_cdc_fence", "max(next_offset)")


class CountingConnection:
    """A DuckDB connection that remembers the statements run through it."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.statements: list[str] = []

    def execute(self, sql: str, *args: Any) -> Any:
        self.statements.append(" ".join(str(sql).split()))
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def batch_of(offsets: range, started_from: int | None) -> Batch:
    decoder, batch = Decoder(), Batch()
    for offset in offsets:
        value = {"op": "c", "after": {"id": offset}, "source": {"lsn": offset, "ts_ms": 1}}
        batch.add(decoder.decode(RawRecord(TOPIC, 0, offset, b"{}", orjson.dumps(value))))
    batch.started_from = {(TOPIC, 0): started_from}
    return batch


@pytest.fixture
def connect(lake) -> Callable[[], duckdb.DuckDBPyConnection]:
    settings = load_settings("dev", project_dir=REPO, environ=lake.env)
    return lambda: connect_lake(settings)


def sink_of(connect: Callable[[], duckdb.DuckDBPyConnection], wrap=lambda con: con) -> LakeSink:
    # Two members of one process: a run id each (the default names the process and the second it started,
    # and a batch of the same run id counts as this member's own when its commit is retried).
    member = Member.this_process("fence-group", run_id=f"fence-{uuid.uuid4().hex[:8]}")
    sink = LakeSink(lambda: wrap(connect()), member=member)
    sink.open()
    return sink


def landed_ids(lake) -> list[int]:
    return [row[0] for row in lake.query("select id from lake.staging.s__items order by id")]


def test_a_batch_whose_partition_another_writer_landed_lands_nothing(lake, connect):
    first, second = sink_of(connect), sink_of(connect)
    try:
        first.write(batch_of(range(0, 5), None))
        with pytest.raises(PositionsMoved):  # it read the partition from the start too
            second.write(batch_of(range(0, 5), None))
        second.write(batch_of(range(5, 8), 5))  # re-read from the lake's position: lands
        with pytest.raises(PositionsMoved):  # the first one's view is stale now
            first.write(batch_of(range(5, 10), 5))
    finally:
        first.close()
        second.close()
    assert landed_ids(lake) == list(range(8))


def test_a_writer_alone_skips_the_checks_until_another_commits(lake, connect):
    counted: list[CountingConnection] = []

    def wrap(con: duckdb.DuckDBPyConnection) -> CountingConnection:
        counted.append(CountingConnection(con))
        return counted[-1]

    def checks_in(write: Callable[[], None]) -> int:
        """The statements of `write` that read the lake's marker, commit-turn lease, fence or positions."""
        before = len(counted[-1].statements)
        write()
        reads = [s for s in counted[-1].statements[before:] if s.lower().startswith("select")]
        return sum(any(t in s for t in CHECK_READS) for s in reads)

    alone, other = sink_of(connect, wrap), sink_of(connect)
    try:
        assert checks_in(lambda: alone.write(batch_of(range(0, 3), None))) > 0  # first batch: unknown
        assert checks_in(lambda: alone.write(batch_of(range(3, 6), 3))) == 0
        assert checks_in(lambda: alone.write(batch_of(range(6, 9), 6))) == 0
        other.write(batch_of(range(9, 10), 9))
        assert checks_in(lambda: alone.write(batch_of(range(10, 12), 10))) > 0
        assert checks_in(lambda: alone.write(batch_of(range(12, 14), 12))) == 0
    finally:
        alone.close()
        other.close()
    assert landed_ids(lake) == list(range(14))


def land_during_commit(sink: LakeSink, land: Callable[[], None]) -> None:
    """Make `land` run inside the next commit of `sink`, after its statements and before its COMMIT."""

    def hook(_con: duckdb.DuckDBPyConnection) -> None:
        sink.before_commit = None
        land()

    sink.before_commit = hook


@pytest.mark.parametrize("first_to_commit", ["the other writer", "the writer alone"])
def test_a_writer_alone_still_conflicts_with_a_writer_committing_beside_it(lake, connect, first_to_commit):
    """A writer alone only appends to the fence; a writer beside it deletes the fence, and DuckLake fails
    whichever of the two commits second (an insert after a delete, or a delete after an insert)."""
    alone, other = sink_of(connect), sink_of(connect)
    try:
        alone.write(batch_of(range(0, 3), None))  # from now on, alone until the other commits
        if first_to_commit == "the other writer":
            land_during_commit(alone, lambda: other.write(batch_of(range(3, 6), 3)))
            with pytest.raises(PositionsMoved):  # its retry sees partition 0 moved to 6
                alone.write(batch_of(range(3, 6), 3))
        else:
            land_during_commit(other, lambda: alone.write(batch_of(range(3, 6), 3)))
            with pytest.raises(PositionsMoved):
                other.write(batch_of(range(3, 6), 3))
        assert alone.conflict_count + other.conflict_count == 1
    finally:
        alone.close()
        other.close()
    assert landed_ids(lake) == list(range(6))


def test_the_fence_of_a_writer_alone_stays_small(lake, connect):
    sink = sink_of(connect)
    try:
        for start in range(0, 2 * FENCE_COMPACT_EVERY + 5):
            sink.write(batch_of(range(start, start + 1), start or None))
    finally:
        sink.close()
    assert lake.query("select count(*) from lake.staging._cdc_fence")[0][0] <= FENCE_COMPACT_EVERY
    assert landed_ids(lake) == list(range(2 * FENCE_COMPACT_EVERY + 5))
