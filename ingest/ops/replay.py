"""`ingest replay`: rebuild staging from Kafka into fresh tables beside the live ones, then switch atomically.

DuckLake (1.5.5, measured) cannot rename or re-parent a schema (`alter schema ... rename`, `alter table ...
set schema` are not implemented), but renames and drops tables inside one transaction. So a replay lands into
tables of the `staging` schema named `_replay_<id>_<name>` (its own `_cdc_offsets`, `_dead_letters`, ...,
invisible to dbt sources and to the live ingester, which only reads tables it knows), and the switch is one
transaction that drops the replaced tables and renames the replayed ones to their final names. dbt's
`source('staging', ...)` sees either every old table or every new one.

The live ingester may keep running. The comment of `_cdc_offsets` names the staging generation, and every
batch transaction checks it (see `offsets.Generation`):
1. catch up: read every matching partition from the beginning to its end (partition EOF, never watermarks);
2. pause: mark the live generation paused for a while; a live batch in flight lands (or lands nothing), the
   next ones wait;
3. tail: catch up again, so the replay holds everything the live tables held;
4. switch, in one transaction: carry the bookkeeping rows of topics that were not replayed over, delete the
   live `_cdc_offsets` rows (a batch committing concurrently then conflicts with the switch, which retries),
   drop the replaced tables, rename the replayed ones. The new `_cdc_offsets` carries the new generation;
5. the live ingester sees the new generation, reloads positions and table state from the replayed tables
   and goes on from there: nothing it read is lost, nothing is landed twice.

`--from TIMESTAMP` keeps only records whose Kafka timestamp is at or after it. It reads each partition from
the beginning and skips older records (their offsets still advance), because the dev broker's
ListOffsets-by-time is wrong (`offsets_for_times` answers 0 for every timestamp, see docs/operations.md),
and because producer (CreateTime) timestamps need not grow with the offset, so any offset lookup could
skip a later-stamped record.
"""

from __future__ import annotations

import fcntl
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ingest.core import offsets
from ingest.core.batch import Batch
from ingest.core.config import IngestSettings
from ingest.core.consumer import Ingester, decoder_for
from ingest.core.decode import Decoded, Decoder, RawRecord, Skipped
from ingest.core.lake import LAKE, quote_ident, quote_literal
from ingest.core.ownership import Member
from ingest.core.sink import STAGING, LakeSink

log = logging.getLogger(__name__)

PAUSE_S = 120.0
SWITCH_RETRIES = 10
PREFIX = "_replay_"

# Bookkeeping tables, and the column that names each row's topic (rows of topics that are not replayed
# are carried over into the new tables at the switch).
BOOKKEEPING_TOPIC_COLUMN: dict[str, str | None] = {
    "_cdc_offsets": "topic",
    "_dead_letters": "topic",
    "_cdc_quarantine": "topic",
    "_cdc_tables": "topic",
    "_cdc_transactions": "_kafka_topic",
    "_cdc_messages": "_kafka_topic",
    "_cdc_schema_changes": None,  # by table_name, through _cdc_tables
    "_dead_letter_resolutions": "topic",
}


class ReplayError(RuntimeError):
    """The replay could not finish; the live tables are untouched."""


def parse_from(value: str) -> int | None:
    """`earliest` -> None; an ISO-8601 time (UTC unless it says otherwise) or epoch milliseconds -> ms."""
    if value == "earliest":
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ReplayError(
            f"--from {value!r}: expected 'earliest', an ISO-8601 time such as 2026-11-21T08:00:00Z, "
            "or epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


class SkipOlder(Decoder):
    """The decoder, skipping records stamped before `since_ms` (their offsets still advance)."""

    def __init__(self, since_ms: int | None, base: Decoder) -> None:
        super().__init__(base.skip_heartbeats, base.skip_schema_changes, base.source_types)
        self.since_ms = since_ms
        self.older = 0

    def decode(self, record: RawRecord) -> Decoded:
        if (
            self.since_ms is not None
            and record.timestamp_ms is not None
            and record.timestamp_ms < self.since_ms
        ):
            self.older += 1
            return Skipped(record, "older than --from")
        return super().decode(record)


@dataclass
class ReplayResult:
    replay_id: str
    records: int = 0
    rows: int = 0
    dead_letters: int = 0
    skipped_older: int = 0
    switched: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    switch_attempts: int = 0
    seconds: float = 0.0


def new_replay_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dt%H%M%S") + f"{random.randrange(16**4):04x}"


@contextmanager
def replay_lock(state_dir: Path, target: str) -> Iterator[None]:
    """One replay per target at a time (a second one would fight over the switch)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / f"replay-{target}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReplayError(f"another `ingest replay` runs on target {target}") from None
        yield


def staging_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "select table_name from duckdb_tables() where database_name = ? and schema_name = ?", [LAKE, STAGING]
    ).fetchall()
    return {name for (name,) in rows}


def _table(name: str) -> str:
    return f"{LAKE}.{quote_ident(STAGING)}.{quote_ident(name)}"


def _in_list(values: list[str]) -> str:
    return ", ".join(quote_literal(v) for v in values)


class Replay:
    def __init__(
        self,
        settings: IngestSettings,
        connect: Callable[[], duckdb.DuckDBPyConnection],
        topics: str | None = None,
        since_ms: int | None = None,
        console: Console | None = None,
    ) -> None:
        self.settings = settings
        self.connect = connect
        self.topics = topics or settings.topics
        self.pattern = re.compile(self.topics)
        self.since_ms = since_ms
        self.console = console or Console(stderr=True)
        self.replay_id = new_replay_id()
        self.prefix = f"{PREFIX}{self.replay_id}_"
        self.generation = offsets.Generation(f"replay-{self.replay_id}")
        self.result = ReplayResult(self.replay_id)
        # From the beginning, the ingester's own decoder (which decodes plain chunks in SQL); from a time,
        # one that sees every record.
        decoder = decoder_for(settings)
        self.decoder = SkipOlder(since_ms, decoder) if since_ms is not None else decoder

    # ------------------------------------------------------------------------------------------ run
    def run(self) -> ReplayResult:
        started = time.monotonic()
        with replay_lock(self.settings.state_dir, self.settings.target):
            con = self.connect()
            try:
                self._discard_leftovers(con)
                # Its tables become the live ones: they belong to the live group.
                member = Member.this_process(self.settings.group_id)
                sink = LakeSink.for_lake(
                    self.connect, self.settings.lake, table_prefix=self.prefix, member=member
                )
                try:
                    self._create(sink)
                    self._catch_up(sink, "replaying")
                    live = self._pause(con)
                    try:
                        self._catch_up(sink, "tail")
                        self._switch(con)
                    except BaseException:
                        self._unpause(con, live)
                        raise
                finally:
                    sink.close()
            except BaseException:
                self._discard_leftovers(con)
                raise
            finally:
                con.close()
        self.result.skipped_older = getattr(self.decoder, "older", 0)
        self.result.seconds = time.monotonic() - started
        return self.result

    def _create(self, sink: LakeSink) -> None:
        sink.open()
        offsets.write_generation(sink.con, self.generation, sink.bookkeeping(offsets.OFFSETS_TABLE))
        sink.generation = self.generation

    def _catch_up(self, sink: LakeSink, phase: str) -> None:
        """Read every matching partition to its end into the replay tables, with a progress bar."""
        settings = self.settings.model_copy(
            update={"topics": self.topics, "group_id": f"{self.settings.group_id}-replay"}
        )
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("records"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task(f"{phase} {self.topics}", total=None)
            ingester: Ingester | None = None

            def on_batch(batch: Batch, _elapsed: float) -> None:
                assert ingester is not None
                self.result.records += batch.size
                self.result.rows += batch.change_rows
                self.result.dead_letters += len(batch.dead_letters)
                high = ingester.high_watermarks()
                done = sum(ingester.positions.get(tp, 0) for tp in high)
                progress.update(task, completed=done, total=max(done, sum(high.values())) or None)

            # The replay is the only writer of its tables: it reads every partition itself.
            ingester = Ingester(
                settings, sink, decoder=self.decoder, on_batch=on_batch, share_partitions=False
            )
            stats = ingester.run(until_caught_up=True, stop=threading.Event())
            positions = sum(ingester.positions.values())
            progress.update(task, completed=positions, total=positions)
        log.info("%s: %d records in %d batches", phase, stats.records, stats.batches)

    # --------------------------------------------------------------------------------- live writer
    def _pause(self, con: duckdb.DuckDBPyConnection) -> offsets.Generation | None:
        """Mark the live generation paused; live batches stop landing until the switch or the deadline."""
        if "_cdc_offsets" not in staging_tables(con):
            return None
        live = offsets.read_generation(con)
        paused = offsets.Generation(live.name, time.time() + PAUSE_S)
        self._retry("pause the live ingester", lambda: offsets.write_generation(con, paused), con)
        return live

    def _unpause(self, con: duckdb.DuckDBPyConnection, live: offsets.Generation | None) -> None:
        if live is None:
            return
        try:
            if "_cdc_offsets" in staging_tables(con) and offsets.read_generation(con).name == live.name:
                offsets.write_generation(con, live)
        except duckdb.Error as error:  # the pause expires by itself
            log.warning("could not lift the pause of the live ingester: %s", error)

    # -------------------------------------------------------------------------------------- switch
    def _switch(self, con: duckdb.DuckDBPyConnection) -> None:
        self._retry("switch staging to the replayed tables", lambda: self._switch_once(con), con)

    def _switch_once(self, con: duckdb.DuckDBPyConnection) -> None:
        self.result.switch_attempts += 1
        con.execute("begin transaction")
        tables = staging_tables(con)
        replayed = sorted(t[len(self.prefix) :] for t in tables if t.startswith(self.prefix))
        # bookkeeping the replay wrote too; any other (e.g. dbt build records) is not touched
        live_books = [b for b in replayed if b.startswith("_") and b in tables]
        live_entries: dict[str, str] = {}
        if "_cdc_tables" in tables:
            live_entries = dict(
                con.execute(f"select table_name, topic from {_table('_cdc_tables')}").fetchall()
            )
        kept_tables = sorted(t for t, topic in live_entries.items() if not self.pattern.search(topic))
        for book in live_books:
            if book not in BOOKKEEPING_TOPIC_COLUMN:
                where = "true"  # not per topic (e.g. batch records): the history is kept whole
            elif (column := BOOKKEEPING_TOPIC_COLUMN[book]) is None:
                where = f"table_name in ({_in_list(kept_tables)})" if kept_tables else "false"
            else:
                topics = [
                    t for (t,) in con.execute(f"select distinct {column} from {_table(book)}").fetchall()
                ]
                kept = [t for t in topics if not self.pattern.search(t)]
                where = f"{column} in ({_in_list(kept)})" if kept else "false"
            if where != "false":
                con.execute(
                    f"insert into {_table(self.prefix + book)} by name select * from {_table(book)} "
                    f"where {where}"
                )
        self._continue_batch_ids(con, tables)
        if "_cdc_offsets" in tables:
            # Conflicts with a live batch committing meanwhile: the switch then retries, never loses it.
            con.execute(f"delete from {_table('_cdc_offsets')}")
        replaced_data = {t for t, topic in live_entries.items() if self.pattern.search(topic)}
        to_drop = sorted((replaced_data | set(replayed)) & tables)
        for name in to_drop:
            con.execute(f"drop table {_table(name)}")
        for name in replayed:
            con.execute(f"alter table {_table(self.prefix + name)} rename to {quote_ident(name)}")
        con.execute("commit")
        self.result.switched = [t for t in replayed if not t.startswith("_")]
        self.result.dropped = [t for t in to_drop if not t.startswith("_") and t not in replayed]

    def _continue_batch_ids(self, con: duckdb.DuckDBPyConnection, tables: set[str]) -> None:
        """Batch ids go on above every id landed so far (live or replayed): dbt's incremental models
        select `_batch_id` above the last one they saw, so the next live batch must be above it."""
        new = _table(self.prefix + "_cdc_offsets")
        highest = con.execute(f"select coalesce(max(batch_id), 0) from {new}").fetchone()[0]
        if "_cdc_offsets" in tables:
            live = con.execute(f"select coalesce(max(batch_id), 0) from {_table('_cdc_offsets')}").fetchone()[
                0
            ]
            highest = max(highest, live)
        con.execute(
            f'insert into {new} select topic, "partition", max(next_offset), {int(highest) + 1}, now() '
            f"from {new} group by all"
        )

    def _retry(self, what: str, action: Callable[[], None], con: duckdb.DuckDBPyConnection) -> None:
        for attempt in range(SWITCH_RETRIES):
            try:
                action()
                return
            except duckdb.Error as error:
                with suppress(duckdb.Error):
                    con.execute("rollback")
                if attempt == SWITCH_RETRIES - 1:
                    raise ReplayError(f"could not {what}: {error}") from error
                delay = min(5.0, 0.1 * 2**attempt) * (0.5 + random.random())
                log.warning(
                    "could not %s (attempt %d): %s; retrying in %.2fs", what, attempt + 1, error, delay
                )
                time.sleep(delay)

    # ------------------------------------------------------------------------------------- cleanup
    def _discard_leftovers(self, con: duckdb.DuckDBPyConnection) -> None:
        """Drop the tables of replays that did not finish (a crash, an error): they were never switched."""
        leftovers = sorted(t for t in staging_tables(con) if t.startswith(PREFIX))
        if not leftovers:
            return

        def drop() -> None:
            con.execute("begin transaction")
            for name in leftovers:
                con.execute(f"drop table if exists {_table(name)}")
            con.execute("commit")

        self._retry("drop the tables of an unfinished replay", drop, con)
        log.info("dropped %d tables of unfinished replays", len(leftovers))
