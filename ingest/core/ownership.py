"""Several ingesters on one lake: who they are, and the fence that keeps each partition landed once.

The members of a lake form one Kafka consumer group and split the partitions between them, but the group's
view of who owns what can be stale (a member paused past its session timeout still believes it owns its
partitions). So the lake decides, not the broker: every batch replaces the single row of `_cdc_fence` in its
own transaction. DuckLake detects conflicts per table (docs/scale-out.md), so of two batches committing at
the same time one fails and retries; commits are serialised. Inside that serialised transaction a batch
checks that its partitions' positions are still the ones it started from, and takes the next batch id.
A batch whose partitions moved (another member landed them) lands nothing: `PositionsMoved`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import orjson

from ingest.core import contract, offsets
from ingest.core.lake import scalar

FENCE_TABLE = contract.FENCE.qualified
ASSIGNMENTS_TABLE = contract.ASSIGNMENTS.qualified
LEASES_TABLE = contract.LEASES.qualified
# The lease a writer takes after losing several commits in a row: the others then wait instead of
# committing, so a slow batch (a large one, a loaded machine) is not starved by faster members forever.
COMMIT_TURN = "commit-turn"
COMMIT_TURN_S = 10.0
# A writer alone appends to the fence (replace_fence); this often it deletes what it appended.
FENCE_COMPACT_EVERY = 64


@dataclass(frozen=True)
class Member:
    """One process writing staging: its consumer group and the id of its run."""

    group_id: str
    run_id: str | None = None
    host: str = ""
    pid: int = 0

    @classmethod
    def this_process(cls, group_id: str, run_id: str | None = None) -> Member:
        """This process as a member of `group_id`, under a run id of its own unless one is given."""
        return cls(group_id, run_id or new_run_id(), socket.gethostname(), os.getpid())

    @property
    def holder(self) -> str:
        """How leases name this writer."""
        return self.run_id or f"{self.host}:{self.pid}"


def new_run_id() -> str:
    """Unique per process start: host, pid and second."""
    return f"{socket.gethostname()}-{os.getpid()}-{int(time.time())}"


class WrongGroup(RuntimeError):
    """The lake's staging belongs to another consumer group."""


class PositionsMoved(offsets.StagingReplaced):
    """Another member landed a partition of this batch since it started: reload positions, re-read."""


def wrong_group_message(owner: str, member: Member) -> str:
    return (
        f"the lake's staging is owned by consumer group {owner!r}; this ingester's group_id is "
        f"{member.group_id!r}. Ingesters of one lake must share one group (they split its partitions): set "
        f"group_id to {owner!r} (profiles/ingest.yml or INGEST_GROUP_ID), or point this one at another lake"
    )


def seed_fence(con: duckdb.DuckDBPyConnection, table: str, member: Member, last_batch_id: int) -> None:
    """Give a lake without a fence row its row (two members seeding at once leave two rows: every batch
    replaces all of them); refuse a lake owned by another group."""
    con.execute(
        f"insert into {table} select ?, ?, ?, now() where not exists (select 1 from {table})",
        [member.group_id, last_batch_id, member.run_id],
    )
    check_group(con, table, member)


def check_group(con: duckdb.DuckDBPyConnection, table: str, member: Member) -> None:
    check_owners(read_fence(con, table)[0], member)


def check_owners(owners: Iterable[str], member: Member) -> None:
    """WrongGroup if the lake's staging belongs to a group other than the member's."""
    if not member.group_id:  # a tool that consumes no Kafka (repair, a dead-letter listing): any group
        return
    for owner in owners:
        if owner != member.group_id:
            raise WrongGroup(wrong_group_message(owner, member))


def read_fence(con: duckdb.DuckDBPyConnection, table: str) -> tuple[list[str], int]:
    """The groups named by the fence (one, or none yet) and the batch id it holds, in one unfiltered scan
    (a filtered DuckLake scan costs more than reading its row or two)."""
    rows = con.execute(f"select group_id, batch_id from {table}").fetchall()
    return sorted({group for group, _ in rows if group}), max((b or 0 for _, b in rows), default=0)


def last_batch_id(con: duckdb.DuckDBPyConnection, fence_table: str, offsets_table: str) -> int:
    """The highest batch id of the lake (a dead-letter retry's batch moves no position, so the fence and
    the offsets are both asked)."""
    return max(read_fence(con, fence_table)[1], offsets.load_positions_and_last_batch(con, offsets_table)[1])


def moved_partitions(
    started_from: dict[tuple[str, int], int | None], lake: offsets.Positions
) -> list[tuple[str, int, int | None, int | None]]:
    """(topic, partition, started from, the lake's now) of every partition whose position is not the one
    the batch started from."""
    return [
        (topic, partition, start, lake.get((topic, partition)))
        for (topic, partition), start in sorted(started_from.items())
        if lake.get((topic, partition)) != start
    ]


def moved_message(moved: list[tuple[str, int, int | None, int | None]]) -> str:
    shown = ", ".join(f"{t}[{p}] {start} -> {now}" for t, p, start, now in moved[:5])
    return (
        f"{len(moved)} partitions of this batch were landed by another member meanwhile ({shown}); "
        "dropping the batch and re-reading from the lake's positions"
    )


def replace_fence(
    con: duckdb.DuckDBPyConnection, table: str, member: Member, batch_id: int, alone: bool = False
) -> None:
    """Inside a batch's transaction: the change to the fence that makes concurrent batch commits conflict.

    A real delete conflicts with every concurrent insert or delete of the table, and an insert with every
    concurrent delete (docs/scale-out.md). A writer alone (nobody committed since its last batch) only
    appends its row: whoever commits beside it is not alone and deletes, so the two still conflict, and the
    append costs a fifth of the delete. Every FENCE_COMPACT_EVERY-th batch deletes anyway, so the appended
    rows stay few."""
    group = member.group_id
    if not group:  # keep the owner's name
        group = scalar(con, f"select coalesce(max(group_id), '') from {table}")
    if not alone or batch_id % FENCE_COMPACT_EVERY == 0:
        con.execute(f"delete from {table}")
    con.execute(f"insert into {table} values (?, ?, ?, now())", [group, batch_id, member.run_id])


def record_assignment(
    con: duckdb.DuckDBPyConnection, table: str, member: Member, partitions: Iterable[tuple[str, int]]
) -> None:
    """Append what this member owns now (its own transaction: an append never conflicts)."""
    owned = orjson.dumps(sorted([topic, partition] for topic, partition in partitions)).decode()
    con.execute(
        f"insert into {table} values (?, ?, ?, ?, cast(? as json), now())",
        [member.run_id, member.group_id, member.host, member.pid, owned],
    )


# ------------------------------------------------------------------------------------------ leases
def lease_holder(con: duckdb.DuckDBPyConnection, table: str, name: str) -> str | None:
    """Who holds the lease `name` now (None: nobody, or it expired).

    The table holds a row or two per lease name, so it is read whole and chosen from here: a DuckLake scan
    with a filter costs ~4 times a plain one (32 ms against 16 ms on the dev catalog), and every batch that
    follows another member's commit asks this inside the lake's serialised commits."""
    now = datetime.now(UTC)  # the clock DuckDB's now() reads too
    rows = con.execute(f"select name, run_id, expires_at from {table}").fetchall()
    live = [(until, run_id) for lease, run_id, until in rows if lease == name and until > now]
    return str(max(live)[1]) if live else None


def take_lease(con: duckdb.DuckDBPyConnection, table: str, name: str, member: Member, seconds: float) -> bool:
    """Take or renew the lease `name` in a transaction of its own; False if another holds it (or took it
    at the same moment: the delete makes two takers conflict, one wins)."""
    try:
        _seed_lease(con, table, name)
        con.execute("begin transaction")
        holder = lease_holder(con, table, name)
        if holder is not None and holder != member.holder:
            con.execute("rollback")
            return False
        con.execute(f"delete from {table} where name = ?", [name])
        con.execute(
            f"insert into {table} values (?, ?, ?, ?, now() + to_microseconds(?))",
            [name, member.holder, member.host, member.pid, int(seconds * 1_000_000)],
        )
        con.execute("commit")
        return True
    except duckdb.Error:
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")
        return False


def _seed_lease(con: duckdb.DuckDBPyConnection, table: str, name: str) -> None:
    """A lease nobody took yet gets an expired row first: two takers then both delete it and conflict. (Two
    appends never conflict in DuckLake: without the row both would take it. Two seeds are harmless.)"""
    if scalar(con, f"select count(*) from {table} where name = ?", [name]) == 0:
        con.execute(f"insert into {table} values (?, '', '', 0, timestamptz 'epoch')", [name])


def release_lease(con: duckdb.DuckDBPyConnection, table: str, name: str, member: Member) -> None:
    """Inside a transaction (or on its own): give the lease back."""
    con.execute(f"delete from {table} where name = ? and run_id = ?", [name, member.holder])
