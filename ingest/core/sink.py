"""Landing: one micro-batch into the lake's staging schema, atomically with the offsets it consumed.

Per batch, in ONE DuckLake transaction: create or evolve staging tables, insert each table's rows, insert dead
letters, quarantined events, transaction and message records, record schema changes, and append the next
offset of every partition the batch read. A crash before COMMIT leaves nothing; after it, everything.
Commit conflicts (another process wrote the catalog first) and catalog outages roll back and retry with
exponential backoff; the in-memory view of the tables is only updated once a commit succeeded.
"""

from __future__ import annotations

import copy
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from ingest.core import contract, deadletters, offsets, ownership
from ingest.core.batch import Batch
from ingest.core.config import LakeSettings
from ingest.core.decode import RawRecord
from ingest.core.lake import LAKE, insert_arrow, qualified, quote_ident, quote_literal, scalar
from ingest.core.logs import event_fields, event_ref, offset_runs
from ingest.core.rows import ChangeRows, Origin
from ingest.core.typemap import is_inferred, is_widening

log = logging.getLogger(__name__)

STAGING = contract.STAGING
TABLES_TABLE = contract.TABLES.qualified
SCHEMA_CHANGES_TABLE = contract.SCHEMA_CHANGES.qualified
TRANSACTIONS_TABLE = contract.TRANSACTIONS.qualified
MESSAGES_TABLE = contract.MESSAGES.qualified
BATCHES_TABLE = contract.BATCHES.qualified
INGESTED_AT = f"{contract.INGESTED_AT.at_insert} as {contract.INGESTED_AT.name}"
BOOKKEEPING_DDL = (
    f"create schema if not exists {LAKE}.{STAGING}",
    *(table.ddl for table in contract.BOOKKEEPING),
)


class LandingError(RuntimeError):
    """A batch could not be committed after every retry."""


class _NotYourTurn(Exception):
    """Another writer holds the commit turn (it lost several commits in a row): wait, then retry."""


# Commits lost in a row after which a writer takes the commit turn (ownership.COMMIT_TURN).
LOST_BEFORE_TURN = 3


# How PostgreSQL / libpq / DuckDB's postgres scanner word "the catalog server is not there (now)".
_UNREACHABLE = re.compile(
    r"unable to connect|could not connect|connection refused|no such file or directory|shutting down|"
    r"server closed the connection|terminating connection|connection to server|connection not open|"
    r"not accepting connections|the database system is starting up|broken pipe|ssl syscall|"
    # A COMMIT that failed and whose ROLLBACK failed too: the connection died under the commit (a conflict
    # rolls back fine). Seen when the catalog stops mid-COMMIT.
    r'failed to execute query "rollback"',
    re.I,
)


def lost_to_another_writer(error: Exception) -> bool:
    """Whether a failed commit lost a race: another transaction changed a table it changed (DuckLake's
    conflict check), as opposed to a bad statement or a broken connection."""
    return "transaction conflict" in str(error).lower()


def catalog_unreachable(error: Exception) -> bool:
    """Whether a lake error means the catalog database is down or restarting (wait) rather than a commit
    conflict or a bad statement (retry a few times, then fail)."""
    return bool(_UNREACHABLE.search(str(error)))


@dataclass
class LandingReport:
    """What one committed batch did, for metrics: counts per table/topic and the newest source times."""

    batch_id: int
    records: int
    rows: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)  # per topic
    quarantined: dict[str, int] = field(default_factory=dict)  # per staging table
    schema_changes: dict[tuple[str, str], int] = field(default_factory=dict)  # (table, change)
    newest_source_ts: dict[str, float] = field(default_factory=dict)  # epoch seconds per table
    # Per table landed with a types file: the columns it does not type (inferred until it is pulled again).
    untyped_columns: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class TableEntry:
    """What the ingester knows of one staging table; mirrored in `_cdc_tables`."""

    table_name: str
    topic: str
    source_schema: str | None
    source_table: str | None
    primary_key: list[str] | None
    columns: dict[str, dict[str, Any]]  # lower-cased name -> {name, type, source_type, optional}
    schema_mode: str
    quarantined: str | None = None
    dirty: bool = False
    # Whether the staging table has its BEFORE_IMAGE column (added with the first update that needs it).
    # Not mirrored: the table itself says it.
    has_before: bool = False
    # Metadata columns of the contract the staging table lacks (made before the contract had them, as
    # _cdc_position): added with its next rows. Not mirrored either.
    missing_metadata: tuple[contract.Column, ...] = ()


@dataclass
class LakeState:
    tables: dict[str, TableEntry] = field(default_factory=dict)

    def copy(self) -> LakeState:
        return copy.deepcopy(self)


@dataclass
class _Pending:
    """Rows gathered while a batch is written, inserted at the end of its transaction."""

    schema_changes: list[tuple[str, str, str | None, str | None, str | None]] = field(default_factory=list)
    quarantine: list[tuple[str, RawRecord, str]] = field(default_factory=list)
    dead_letters: list[tuple[RawRecord, str]] = field(default_factory=list)


class LakeSink:
    def __init__(
        self,
        connect: Callable[[], duckdb.DuckDBPyConnection],
        commit_retries: int = 8,
        table_prefix: str = "",
        threads: int | None = None,
        member: ownership.Member | None = None,
    ) -> None:
        self._connect = connect
        # Who lands: the lake refuses a member of another consumer group, and each batch row names its run.
        self.member = member or ownership.Member("")
        self.threads = threads  # DuckDB threads of the writer connection (None: DuckDB's default)
        # `ingest replay` lands beside the live tables, every name prefixed, and later renames them.
        self.table_prefix = table_prefix
        self.generation: offsets.Generation | None = None
        self.holds_pause = False  # the writer that paused the others (a dead-letter retry) lands anyway
        # The lake snapshot read by this writer's last committed batch, whose generation check passed.
        self._checked_snapshot: int | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self.commit_retries = commit_retries
        self.state = LakeState()
        self.commit_retry_count = 0
        self.conflict_count = 0  # commits lost to another writer's (retried without limit)
        self._last_batch_id = 0  # the lake's, as of this writer's last commit
        self._holds_turn = False
        # The batch id of the last COMMIT sent for the batch being written (None: none yet): only such a
        # commit can have landed unbeknown. Ids are taken per attempt, so an earlier id says nothing.
        self._commit_sent: int | None = None
        self.on_retry: Callable[[Exception, int], None] | None = None
        self.last_landing: LandingReport | None = None
        # Runs inside each batch's transaction just before COMMIT (dead-letter retries mark their letters).
        self.before_commit: Callable[[duckdb.DuckDBPyConnection], None] | None = None

    @classmethod
    def for_lake(
        cls,
        connect: Callable[[], duckdb.DuckDBPyConnection],
        lake: LakeSettings,
        table_prefix: str = "",
        member: ownership.Member | None = None,
    ) -> LakeSink:
        """A sink as the target's lake settings configure it (commit retries, writer threads)."""
        return cls(connect, lake.commit_retries, table_prefix, lake.writer_threads, member)

    # ----------------------------------------------------------------------------------- lifecycle
    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = self._connect()
            if self.threads is not None:
                con.execute(f"set threads = {int(self.threads)}")
            self._con = con
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def open(self) -> tuple[offsets.Positions, int]:
        """Create the bookkeeping tables if needed; return the stored positions and the last batch id."""
        return self._retrying("open the lake", self._open)

    def _open(self) -> tuple[offsets.Positions, int]:
        self._checked_snapshot = None
        for ddl in BOOKKEEPING_DDL:
            self.con.execute(self.bookkeeping(ddl))
        self._add_missing_columns()
        self.state = self._load_state()
        self.generation = offsets.read_generation(self.con, self.table_prefix + "_cdc_offsets")
        offsets_table = self.bookkeeping(offsets.OFFSETS_TABLE)
        fence = self.bookkeeping(ownership.FENCE_TABLE)
        self._last_batch_id = ownership.last_batch_id(self.con, fence, offsets_table)
        ownership.seed_fence(self.con, fence, self.member, self._last_batch_id)
        return offsets.load_positions(self.con, offsets_table), self._last_batch_id

    def _add_missing_columns(self) -> None:
        """Lakes made before batches named their run. Only when missing: every ALTER is a new schema
        version, and DuckLake merges no files across schema versions."""
        table = self.table_prefix + contract.BATCHES.name
        present = scalar(
            self.con,
            "select count(*) from duckdb_columns() where database_name = ? and schema_name = ? "
            "and table_name = ? and column_name = 'run_id'",
            [LAKE, STAGING, table],
        )
        if not present:
            self.con.execute(f"alter table {self.bookkeeping(BATCHES_TABLE)} add column run_id varchar")

    def load_positions(self) -> offsets.Positions:
        """The lake's positions now (a member given partitions: another may have landed them)."""
        table = self.bookkeeping(offsets.OFFSETS_TABLE)
        return self._retrying("read the lake's positions", lambda: offsets.load_positions(self.con, table))

    def record_assignment(self, partitions: set[tuple[str, int]]) -> None:
        table = self.bookkeeping(ownership.ASSIGNMENTS_TABLE)
        ownership.record_assignment(self.con, table, self.member, partitions)

    def bookkeeping(self, sql: str) -> str:
        """`sql` with every `lake.staging._cdc...` name turned into this sink's (prefixed) table."""
        return sql.replace(f"{LAKE}.{STAGING}._", f"{LAKE}.{STAGING}.{self.table_prefix}_")

    def staging_table(self, table: str) -> str:
        return qualified(STAGING, self.table_prefix + table)

    def _take_batch_id(self, con: duckdb.DuckDBPyConnection, batch: Batch, alone: bool) -> int:
        """Inside the batch's (serialised) transaction: check that the batch's partitions are where it
        started from and that the lake is still this group's; return the lake's next batch id, which grows in
        commit order across all members (dbt's incremental models rely on that)."""
        if alone:  # nobody committed since this writer's last batch: nothing can have moved
            return self._last_batch_id + 1
        if not self._holds_turn:
            holder = ownership.lease_holder(
                con, self.bookkeeping(ownership.LEASES_TABLE), ownership.COMMIT_TURN
            )
            if holder is not None and holder != self.member.holder:
                con.execute("rollback")
                raise _NotYourTurn(holder)
        # One scan of each table (these reads are inside the lake's serialised commits).
        owners, fence_batch = ownership.read_fence(con, self.bookkeeping(ownership.FENCE_TABLE))
        try:
            ownership.check_owners(owners, self.member)
        except ownership.WrongGroup:
            con.execute("rollback")
            raise
        positions, positions_batch = offsets.load_positions_and_last_batch(
            con, self.bookkeeping(offsets.OFFSETS_TABLE)
        )
        if batch.started_from is not None:
            moved = ownership.moved_partitions(batch.started_from, positions)
            if moved:
                con.execute("rollback")
                raise ownership.PositionsMoved(ownership.moved_message(moved))
        # ownership.last_batch_id from the reads above (a dead-letter retry's batch moves no position).
        return max(fence_batch, positions_batch) + 1

    def _check_generation(self, con: duckdb.DuckDBPyConnection, checked: int | None) -> tuple[int, bool]:
        """Inside the batch's transaction: refuse to land if staging was switched or is being switched.
        Returns the lake snapshot the transaction reads, and whether nobody else committed since this
        writer's last batch.

        Reading the marker lists the lake's tables (~10 ms on a quiet machine, more than inserting 10,000
        rows), so it is skipped when the only commit since this writer's last checked batch is that batch
        itself: DuckLake numbers snapshots one by one, so snapshot = checked + 1 means nobody else
        committed. `checked`: the snapshot this writer's last committed batch read (None: unknown)."""
        snapshot = scalar(con, f"select id from {LAKE}.current_snapshot()")
        if checked is not None and snapshot == checked + 1:
            return snapshot, True
        current = offsets.read_generation(con, self.table_prefix + "_cdc_offsets")
        paused = current.paused and not self.holds_pause
        if current.name != (self.generation.name if self.generation else "") or paused:
            con.execute("rollback")
            raise offsets.StagingReplaced(
                f"staging generation is now {current.comment()!r} (this writer opened "
                f"{self.generation.comment() if self.generation else ''!r})"
            )
        return snapshot, False

    def _load_state(self) -> LakeState:
        state = LakeState()
        rows = self.con.execute(
            f"select table_name, topic, source_schema, source_table, primary_key, columns, schema_mode, "
            f"quarantined from {self.bookkeeping(TABLES_TABLE)}"
        ).fetchall()
        for name, topic, schema, table, key, columns, mode, quarantined in rows:
            described = {c["name"].lower(): c for c in orjson.loads(columns)}
            state.tables[name] = TableEntry(name, topic, schema, table, key, described, mode, quarantined)
        # The staging tables themselves are the truth for column types (a crash may have left a table
        # without its _cdc_tables row, never the other way round: both commit together).
        actual: dict[str, dict[str, str]] = {}
        with_before: set[str] = set()
        metadata: dict[str, set[str]] = {}
        for table, column, data_type in self.con.execute(
            "select substr(table_name, length($prefix) + 1), column_name, data_type from duckdb_columns() "
            f"where database_name = '{LAKE}' and schema_name = '{STAGING}' "
            "and starts_with(table_name, $prefix) "
            "and not starts_with(substr(table_name, length($prefix) + 1), '_')",
            {"prefix": self.table_prefix},
        ).fetchall():
            if column == contract.BEFORE_IMAGE:
                with_before.add(table)
            elif column in contract.METADATA_NAMES:
                metadata.setdefault(table, set()).add(column)
            else:
                actual.setdefault(table, {})[column.lower()] = data_type
        for table, columns in actual.items():
            entry = state.tables.get(table)
            if entry is None:
                continue
            entry.has_before = table in with_before
            present = metadata.get(table, set())
            entry.missing_metadata = tuple(c for c in contract.STAGING_METADATA if c.name not in present)
            for lower, data_type in columns.items():
                entry.columns.setdefault(lower, {"name": lower, "source_type": None, "optional": True})
                entry.columns[lower]["type"] = data_type
        return state

    # ------------------------------------------------------------------------------------- writing
    def write(self, batch: Batch) -> None:
        """Land the batch and its offsets in one transaction, retrying conflicts; raise LandingError."""
        started = time.time()
        attempts = 0
        self._commit_sent = None
        batch.close()

        def land() -> None:
            nonlocal attempts
            attempts += 1
            # A commit whose answer was lost (the catalog went away during COMMIT) may have landed: landing
            # it again would duplicate every row, so look for its row in the batch log first.
            if attempts > 1 and self._commit_sent is not None and self._batch_landed(self._commit_sent):
                log.warning(
                    "batch %d was committed before the catalog connection broke; not landing it again",
                    batch.batch_id,
                )
                self.state = self._load_state()
                return
            if attempts > 1:
                # Another member may have created or evolved a table meanwhile (its batch added the column
                # this one adds): the lake's tables are the truth.
                self.state = self._load_state()
            self._write_once(batch, started)

        self._retrying(f"land a batch of {batch.size} records", land)

    def _batch_landed(self, batch_id: int) -> bool:
        """Batch ids are unique in a lake (taken inside serialised commits): the id with this run's name."""
        return bool(
            scalar(
                self.con,
                f"select count(*) from {self.bookkeeping(BATCHES_TABLE)} where batch_id = ? "
                "and run_id is not distinct from ?",
                [batch_id, self.member.run_id],
            )
        )

    def _retrying(self, what: str, action: Callable[[], Any]) -> Any:
        """Retry commit conflicts `commit_retries` times with backoff; wait for an unreachable catalog as long
        as it takes (saying so), since nothing is lost by waiting: the batch stays in memory, uncommitted."""
        attempt = conflicts = lost = 0
        outage_since: float | None = None
        while True:
            attempt += 1
            try:
                result = action()
            except _NotYourTurn:
                time.sleep(0.02 + 0.05 * random.random())
                continue
            except duckdb.Error as error:
                self._rollback()
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                if catalog_unreachable(error):
                    if outage_since is None:
                        outage_since = time.monotonic()
                        log.error(
                            "the lake's catalog is unreachable, cannot %s: %s. Waiting for it to come back "
                            "and retrying; nothing is lost (the batch is held in memory and its offsets are "
                            "not committed until it lands)",
                            what,
                            reason,
                        )
                    delay = min(10.0, 0.5 * 2 ** min(attempt, 5))
                    log.warning(
                        "catalog still unreachable after %.0f s (attempt %d); next try in %.1f s",
                        time.monotonic() - outage_since,
                        attempt,
                        delay,
                    )
                elif lost_to_another_writer(error):
                    # Another member committed first (every batch replaces the fence row): that is progress
                    # of the lake, not a failure of this batch, so it is retried as long as it takes.
                    self.conflict_count += 1
                    lost += 1
                    if lost >= LOST_BEFORE_TURN:  # take (or renew) the turn: the others wait for this one
                        self._holds_turn = self._take_turn()
                    delay = 0.0 if self._holds_turn else min(0.5, 0.01 * 2**lost) * (0.5 + random.random())
                    log.debug(
                        "could not %s (attempt %d): %s; retrying in %.2fs", what, attempt, reason, delay
                    )
                    time.sleep(delay)
                    continue
                else:
                    conflicts += 1
                    if conflicts > self.commit_retries:
                        raise LandingError(f"could not {what} after {attempt} attempts: {error}") from error
                    delay = min(30.0, 0.05 * 2 ** (conflicts - 1)) * (0.5 + random.random())
                    log.warning(
                        "could not %s (attempt %d): %s; retrying in %.2fs", what, attempt, reason, delay
                    )
                self.commit_retry_count += 1
                if self.on_retry is not None:
                    self.on_retry(error, attempt)
                time.sleep(delay)
                continue
            if outage_since is not None:
                log.warning(
                    "the lake's catalog is reachable again after %.0f s: %s done",
                    time.monotonic() - outage_since,
                    what,
                )
            return result

    def _take_turn(self) -> bool:
        leases = self.bookkeeping(ownership.LEASES_TABLE)
        taken = ownership.take_lease(
            self.con, leases, ownership.COMMIT_TURN, self.member, ownership.COMMIT_TURN_S
        )
        if taken and not self._holds_turn:
            log.info("lost %d commits in a row to other writers: taking the commit turn", LOST_BEFORE_TURN)
        return taken

    def _rollback(self) -> None:
        if self._con is None:
            return
        try:
            self._con.execute("rollback")
        except duckdb.Error:
            # The connection itself is gone (catalog restarted): reconnect on the next attempt.
            self.close()

    def _write_once(self, batch: Batch, started: float | None = None) -> None:
        con = self.con
        state = self.state.copy()
        pending = _Pending()
        # Forgotten until this batch commits: a failed attempt proves nothing about who committed since.
        previous, self._checked_snapshot = self._checked_snapshot, None
        con.execute("begin transaction")
        snapshot, alone = self._check_generation(con, previous)
        batch.batch_id = self._take_batch_id(con, batch, alone)
        for table, segments in batch.segments.items():
            for rows in segments:
                self._land_rows(con, state, pending, table, rows, batch.batch_id)
        self._insert_failed(con, batch, pending)
        self._insert_transactions(con, batch)
        self._insert_messages(con, batch)
        self._insert_schema_changes(con, pending, batch.batch_id)
        self._upsert_table_entries(con, state)
        if batch.next_offsets:  # a dead-letter retry advances no position
            self._insert_into(
                con, contract.OFFSETS, offsets.positions_arrow(batch.next_offsets, batch.batch_id)
            )
        self._insert_batch_row(con, batch, pending, started or time.time())
        ownership.replace_fence(
            con, self.bookkeeping(ownership.FENCE_TABLE), self.member, batch.batch_id, alone
        )
        if self._holds_turn:
            ownership.release_lease(
                con, self.bookkeeping(ownership.LEASES_TABLE), ownership.COMMIT_TURN, self.member
            )
        if self.before_commit is not None:
            self.before_commit(con)
        self._commit_sent = batch.batch_id
        con.execute("commit")
        self._holds_turn = False
        self._checked_snapshot = snapshot
        self._last_batch_id = batch.batch_id
        for entry in state.tables.values():
            entry.dirty = False
        self.state = state
        self.last_landing = _landing_report(batch, pending)
        _log_failed(pending)

    # ------------------------------------------------------------------------- staging tables
    def _land_rows(
        self,
        con: duckdb.DuckDBPyConnection,
        state: LakeState,
        pending: _Pending,
        table: str,
        rows: ChangeRows,
        batch_id: int,
    ) -> None:
        entry = state.tables.get(table)
        if entry is not None and entry.quarantined:
            pending.quarantine.extend(
                (table, record, f"table is quarantined: {entry.quarantined}") for record in rows.records
            )
            return
        if entry is not None and (other := other_source(entry, rows.origin)) is not None:
            pending.quarantine.extend((table, record, other) for record in rows.records)
            return
        if entry is None:
            entry = self._create_table(con, state, pending, table, rows)
        else:
            reason = self._evolve_table(con, entry, pending, rows)
            if reason is not None:
                log.error("quarantining staging.%s: %s", table, reason)
                entry.quarantined = reason
                entry.dirty = True
                pending.schema_changes.append((table, "quarantine", None, None, reason))
                pending.quarantine.extend((table, record, reason) for record in rows.records)
                return
        if rows.key_columns is not None and entry.primary_key != rows.key_columns:
            entry.primary_key = rows.key_columns
            entry.dirty = True
        pending.dead_letters.extend(rows.refused)
        for column in entry.missing_metadata:
            con.execute(f"alter table {self.staging_table(table)} add column {column.ddl}")
        entry.missing_metadata = ()
        has_before = contract.BEFORE_IMAGE in rows.arrow.column_names
        if has_before and not entry.has_before:
            before = quote_ident(contract.BEFORE_IMAGE)
            con.execute(
                f"alter table {self.staging_table(table)} add column {before} {contract.BEFORE_IMAGE_TYPE}"
            )
            entry.has_before = True
        if not rows.count:
            return
        casts = {name: column.sql for name, column in rows.columns.items() if column.sql}
        if has_before:
            casts[contract.BEFORE_IMAGE] = _before_image_sql(entry, rows)
        arrow = rows.landing_table(batch_id)
        insert_arrow(con, self.staging_table(table), arrow, casts=casts, extra=INGESTED_AT)

    def _create_table(
        self,
        con: duckdb.DuckDBPyConnection,
        state: LakeState,
        pending: _Pending,
        table: str,
        rows: ChangeRows,
    ) -> TableEntry:
        origin = rows.origin
        columns = [f"{quote_ident(c.name)} {c.duckdb_type}" for c in rows.columns.values()]
        columns += contract.metadata_ddl()
        con.execute(f"create table if not exists {self.staging_table(table)} ({', '.join(columns)})")
        entry = TableEntry(
            table_name=table,
            topic=origin.topic,
            source_schema=origin.source_schema,
            source_table=origin.source_table,
            primary_key=rows.key_columns,
            columns={c.name.lower(): c.describe() for c in rows.columns.values()},
            schema_mode=rows.mode,
            dirty=True,
        )
        state.tables[table] = entry
        pending.schema_changes.append((table, "create", None, None, None))
        log.info("created staging.%s (%d columns, %s types)", table, len(rows.columns), rows.mode)
        if rows.mode == "inferred":
            log.warning(
                "staging.%s: its events carry no Connect schema and no types file lists %s.%s, so its column "
                "types are inferred from the values (dates as epoch days, precise decimals as base64 text); "
                "`ingest types pull --source-dsn postgresql://...` writes the source's types (docs/dbt.md)",
                table,
                origin.source_schema,
                origin.source_table,
            )
        return entry

    def _evolve_table(
        self, con: duckdb.DuckDBPyConnection, entry: TableEntry, pending: _Pending, rows: ChangeRows
    ) -> str | None:
        """Add new columns and widen widened ones; return why not, if the change cannot be followed."""
        target = self.staging_table(entry.table_name)
        alterations: list[tuple[str, str, str | None, str]] = []
        for column in rows.columns.values():
            known = entry.columns.get(column.name.lower())
            if known is None:
                alterations.append(("add_column", column.name, None, column.duckdb_type))
                continue
            old = known["type"]
            if old == column.duckdb_type or self._fits(old, column.duckdb_type, rows.mode):
                if rows.mode == "declared" and is_inferred(known.get("source_type")) != is_inferred(
                    column.source_type
                ):  # the types file was pulled again (or lost a column): the table says so
                    known["source_type"] = column.source_type
                    entry.dirty = True
                continue
            if is_widening(old, column.duckdb_type):
                alterations.append(("widen", known["name"], old, column.duckdb_type))
                continue
            return (
                f"column {column.name!r} changed type from {old} to {column.duckdb_type} "
                f"({column.source_type}), which is not a widening"
            )
        for change, name, old, new in alterations:
            if change == "add_column":
                con.execute(f"alter table {target} add column {quote_ident(name)} {new}")
            else:
                con.execute(f"alter table {target} alter column {quote_ident(name)} set type {new}")
            pending.schema_changes.append((entry.table_name, change, name, old, new))
            described = rows.columns[name].describe() if name in rows.columns else {}
            entry.columns[name.lower()] = {**entry.columns.get(name.lower(), {}), **described, "type": new}
            entry.dirty = True
            log.info("staging.%s: %s %s %s -> %s", entry.table_name, change, name, old or "", new)
        return None

    @staticmethod
    def _fits(existing: str, incoming: str, mode: str) -> bool:
        """An incoming value type that the existing column holds without change."""
        if is_widening(incoming, existing):  # e.g. int32 events replayed after a widening to int64
            return True
        return mode == "inferred" and (
            existing == "VARCHAR" or (existing == "DOUBLE" and incoming == "BIGINT")
        )

    # ------------------------------------------------------------------------------ side tables
    def _insert_failed(self, con: duckdb.DuckDBPyConnection, batch: Batch, pending: _Pending) -> None:
        failed = [(d.record, d.error) for d in batch.dead_letters] + pending.dead_letters
        if failed:
            records, errors = zip(*failed, strict=True)
            arrow = deadletters.failed_records_arrow(records, errors, batch.batch_id)
            self._insert_into(con, contract.DEAD_LETTERS, arrow)
        if pending.quarantine:
            tables, records, errors = zip(*pending.quarantine, strict=True)
            arrow = deadletters.failed_records_arrow(records, errors, batch.batch_id, tables=tables)
            self._insert_into(con, contract.QUARANTINE, arrow)

    def _insert_batch_row(
        self, con: duckdb.DuckDBPyConnection, batch: Batch, pending: _Pending, started: float
    ) -> None:
        """One row per committed batch (`ingest status`): its size and how long landing took."""
        arrow = contract.BATCHES.arrow(
            {
                "batch_id": [batch.batch_id],
                "records": [batch.size],
                "change_rows": [batch.change_rows],
                "dead_letters": [len(batch.dead_letters) + len(pending.dead_letters)],
                "quarantined": [len(pending.quarantine)],
                "started_at": [int(started * 1000)],
                "landing_ms": [(time.time() - started) * 1000],
                "run_id": [self.member.run_id],
            }
        )
        self._insert_into(con, contract.BATCHES, arrow)

    def _insert_transactions(self, con: duckdb.DuckDBPyConnection, batch: Batch) -> None:
        if not batch.transactions:
            return
        events = [t.event for t in batch.transactions]
        arrow = contract.TRANSACTIONS.arrow(
            {
                "status": [e.status for e in events],
                "tx_id": [e.tx_id for e in events],
                "id": [e.id for e in events],
                "event_count": [e.event_count for e in events],
                "data_collections": [
                    None
                    if e.data_collections is None
                    else orjson.dumps([d.model_dump() for d in e.data_collections]).decode()
                    for e in events
                ],
                "ts": [e.ts_ms for e in events],
                **_position_values([t.record for t in batch.transactions], batch.batch_id),
            }
        )
        self._insert_into(con, contract.TRANSACTIONS, arrow, casts={"data_collections": "cast({} as json)"})

    def _insert_messages(self, con: duckdb.DuckDBPyConnection, batch: Batch) -> None:
        if not batch.messages:
            return
        messages = [m.message for m in batch.messages]
        arrow = contract.MESSAGES.arrow(
            {
                "prefix": [m.message.prefix for m in messages],
                "content": [m.message.content for m in messages],
                "transactional": [m.transaction is not None for m in messages],
                "tx_id": [m.source.tx_id for m in messages],
                "lsn": [m.source.lsn for m in messages],
                "source_ts": [m.source.commit_ts_us for m in messages],
                **_position_values([m.record for m in batch.messages], batch.batch_id),
            }
        )
        self._insert_into(con, contract.MESSAGES, arrow, casts={"content": "from_base64({})"})

    def _insert_schema_changes(
        self, con: duckdb.DuckDBPyConnection, pending: _Pending, batch_id: int
    ) -> None:
        if not pending.schema_changes:
            return
        tables, changes, names, olds, news = zip(*pending.schema_changes, strict=True)
        arrow = contract.SCHEMA_CHANGES.arrow(
            {
                "table_name": tables,
                "change": changes,
                "column_name": names,
                "old_type": olds,
                "new_type": news,
                "batch_id": [batch_id] * len(tables),
            }
        )
        self._insert_into(con, contract.SCHEMA_CHANGES, arrow)

    def _upsert_table_entries(self, con: duckdb.DuckDBPyConnection, state: LakeState) -> None:
        dirty = [e for e in state.tables.values() if e.dirty]
        if not dirty:
            return
        names = ", ".join(quote_literal(e.table_name) for e in dirty)
        con.execute(f"delete from {self.bookkeeping(TABLES_TABLE)} where table_name in ({names})")
        arrow = contract.TABLES.arrow(
            {
                "table_name": [e.table_name for e in dirty],
                "topic": [e.topic for e in dirty],
                "source_schema": [e.source_schema for e in dirty],
                "source_table": [e.source_table for e in dirty],
                "primary_key": [e.primary_key for e in dirty],
                "columns": [orjson.dumps(list(e.columns.values())).decode() for e in dirty],
                "schema_mode": [e.schema_mode for e in dirty],
                "quarantined": [e.quarantined for e in dirty],
            }
        )
        self._insert_into(con, contract.TABLES, arrow, casts={"columns": "cast({} as json)"})

    def _insert_into(
        self,
        con: duckdb.DuckDBPyConnection,
        table: contract.Table,
        arrow: pa.Table,
        casts: dict[str, str] | None = None,
    ) -> None:
        """Insert into this sink's copy of a bookkeeping table; SQL fills what the contract says it fills."""
        insert_arrow(con, self.bookkeeping(table.qualified), arrow, casts=casts, extra=table.at_insert)


def other_source(entry: TableEntry, origin: Origin) -> str | None:
    """Why rows of `origin` must not land in the staging table of `entry`: they come from another topic
    and another source table. Another topic of the same source table continues it (a topic re-created under
    a new name)."""
    theirs = (origin.source_schema, origin.source_table)
    ours = (entry.source_schema, entry.source_table)
    if origin.topic == entry.topic or None in theirs or None in ours or theirs == ours:
        return None
    theirs_text, ours_text = ".".join(map(str, theirs)), ".".join(map(str, ours))
    return (
        f"rows of {theirs_text} (topic {origin.topic}) would land in staging.{entry.table_name}, which "
        f"holds {ours_text} (topic {entry.topic}): name them apart with staging_table "
        "'{server}__{schema}__{table}' or staging_tables (docs/staging-contract.md)"
    )


def _before_image_sql(entry: TableEntry, rows: ChangeRows) -> str:
    """SQL turning the rows' before images (a struct of the segment's columns in transport types) into the
    BEFORE_IMAGE JSON: each field converted to its staging type as its column is, decimals as their exact
    text (a JSON number reads back as a double)."""
    fields = []
    for name, column in rows.columns.items():
        value = f"struct_extract({{0}}, {_braced(quote_literal(name))})"
        if column.sql:
            value = column.sql.replace("{}", value)
        staging_type = str(entry.columns.get(name.lower(), {}).get("type", column.duckdb_type))
        if staging_type.upper().startswith("DECIMAL"):
            value = f"cast(cast({value} as {staging_type}) as varchar)"
        fields.append(f"{_braced(quote_ident(name))} := {value}")
    return f"case when {{0}} is not null then to_json(struct_pack({', '.join(fields)})) end"


def _braced(sql: str) -> str:
    """`sql` kept as it is by str.format (insert_arrow formats each cast with the column's name)."""
    return sql.replace("{", "{{").replace("}", "}}")


def _landing_report(batch: Batch, pending: _Pending) -> LandingReport:
    report = LandingReport(batch.batch_id, batch.size)
    quarantined_tables = {table for table, _, _ in pending.quarantine}
    for table, segments in batch.segments.items():
        if table in quarantined_tables:
            continue
        count = sum(rows.count for rows in segments)  # refused rows are not in their `arrow`
        if count:
            report.rows[table] = count
            times = [rows.newest_source_ts_us() for rows in segments]
            newest = max((t for t in times if t is not None), default=None)
            if newest is not None:
                report.newest_source_ts[table] = newest / 1_000_000
        declared = [rows for rows in segments if rows.mode == "declared"]
        if declared:
            untyped = {n for rows in declared for n, c in rows.columns.items() if is_inferred(c.source_type)}
            report.untyped_columns[table] = sorted(untyped)
    for record in [d.record for d in batch.dead_letters] + [r for r, _ in pending.dead_letters]:
        report.dead_letters[record.topic] = report.dead_letters.get(record.topic, 0) + 1
    for table, _, _ in pending.quarantine:
        report.quarantined[table] = report.quarantined.get(table, 0) + 1
    for table, change, *_ in pending.schema_changes:
        report.schema_changes[(table, change)] = report.schema_changes.get((table, change), 0) + 1
    return report


def _log_failed(pending: _Pending) -> None:
    """After the commit: where each refused row and each run of quarantined events came from."""
    for record, reason in pending.dead_letters:
        where = event_ref(record.topic, record.partition, record.offset)
        log.warning(
            "dead letter %s: %s",
            where,
            reason,
            extra=event_fields(record.topic, record.partition, record.offset),
        )
    by_table: dict[str, list[tuple[RawRecord, str]]] = {}
    for table, record, reason in pending.quarantine:
        by_table.setdefault(table, []).append((record, reason))
    for table, items in by_table.items():
        reason = items[0][1]
        for run in offset_runs((r.topic, r.partition, r.offset) for r, _ in items):
            log.warning(
                "quarantined %d events of staging.%s %s: %s",
                run.events,
                table,
                run.ref,
                reason,
                extra={**run.fields, "table": table},
            )


def _position_values(records: list[RawRecord], batch_id: int) -> dict[str, list[Any]]:
    return {
        "_kafka_topic": [r.topic for r in records],
        "_kafka_partition": [r.partition for r in records],
        "_kafka_offset": [r.offset for r in records],
        "_batch_id": [batch_id] * len(records),
    }
