"""The staging contract in code: the metadata columns of every staging table and the bookkeeping tables.

This is the one definition. The sink's DDL, the column lists and Arrow types both decoders produce, and the
Arrow tables of the bookkeeping rows are derived from it; the dbt macros' metadata columns are checked
against it (pytests/test_contract.py), and docs/staging-contract.md describes it for readers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ingest.core.lake import LAKE, quote_ident

STAGING = "staging"
UTC_US = pa.timestamp("us", tz="UTC")
UTC_MS = pa.timestamp("ms", tz="UTC")  # Kafka and Debezium's millisecond timestamps, as sent


@dataclass(frozen=True, slots=True)
class Column:
    """One column the ingester owns: its DuckDB type, the Arrow type it hands DuckDB, what it means."""

    name: str
    duckdb_type: str  # as written in DDL
    arrow_type: pa.DataType  # a JSON or BLOB column travels as text and is converted by the insert
    nullable: bool
    meaning: str
    at_insert: str | None = None  # SQL that fills it when the row is inserted (no Arrow value then)

    @property
    def ddl(self) -> str:
        return f"{quote_ident(self.name)} {self.duckdb_type.lower()}{'' if self.nullable else ' not null'}"


def _column(
    name: str, duckdb_type: str, arrow_type: pa.DataType, meaning: str, *, null: bool = False
) -> Column:
    return Column(name, duckdb_type, arrow_type, null, meaning)


def _now(name: str, meaning: str) -> Column:
    return Column(name, "TIMESTAMPTZ", UTC_US, False, meaning, at_insert="now()")


# ------------------------------------------------------------------------- staging metadata columns
# What each decoder produces per change row, in this order, after the row image's columns.
DECODED_METADATA: tuple[Column, ...] = (
    _column(
        "_cdc_op",
        "VARCHAR",
        pa.string(),
        "Operation: r snapshot read, c create, u update, d delete, t truncate.",
    ),
    _column("_cdc_deleted", "BOOLEAN", pa.bool_(), "True for a delete (_cdc_op = 'd')."),
    _column("_cdc_source_ts", "TIMESTAMPTZ", UTC_US, "Commit time in the source.", null=True),
    _column(
        "_cdc_lsn",
        "BIGINT",
        pa.int64(),
        "Position in the source log; null where the source has none.",
        null=True,
    ),
    _column(
        "_cdc_position",
        "BIGINT[]",
        pa.list_(pa.int64()),
        "Position in the source's log as its connector orders changes (core/position.py); compares "
        "element by element; null where the source block has none.",
        null=True,
    ),
    _column("_cdc_tx_id", "VARCHAR", pa.string(), "Source transaction id.", null=True),
    _column("_cdc_snapshot", "BOOLEAN", pa.bool_(), "The event comes from a snapshot."),
    _column(
        "_cdc_unavailable_columns",
        "VARCHAR[]",
        pa.list_(pa.string()),
        "Columns Debezium did not send (unchanged TOAST values); NULL in this row.",
        null=True,
    ),
    _column("_kafka_topic", "VARCHAR", pa.string(), "Kafka topic of the event."),
    _column("_kafka_partition", "INTEGER", pa.int32(), "Kafka partition of the event."),
    _column(
        "_kafka_offset",
        "BIGINT",
        pa.int64(),
        "Kafka offset of the event; (topic, partition, offset) is unique.",
    ),
    _column("_kafka_timestamp", "TIMESTAMPTZ", UTC_MS, "Timestamp of the Kafka record.", null=True),
)
BATCH_ID = _column(
    "_batch_id",
    "BIGINT",
    pa.int64(),
    "Ingester micro-batch that landed the row; batches commit in increasing order.",
)
INGESTED_AT = _now("_ingested_at", "When the batch was committed to the lake.")
# Added when a batch lands: the batch's id, and the commit time.
LANDING_METADATA: tuple[Column, ...] = (BATCH_ID, INGESTED_AT)
STAGING_METADATA: tuple[Column, ...] = DECODED_METADATA + LANDING_METADATA
# The before image of an update of a table without a primary key (REPLICA IDENTITY FULL sends it), as a JSON
# object of its columns in their staging types: the one metadata column a staging table has only once it
# needs it (added with its first such update), so it is not in STAGING_METADATA. JSON, not a STRUCT of the
# table's columns: DuckLake fails to read inlined rows of a table whose STRUCT column was altered (1.5.5).
# curated's multiset current state removes the row it names (docs/dbt.md, "Tables without a primary key").
BEFORE_IMAGE = "_cdc_before"
BEFORE_IMAGE_TYPE = "JSON"
BEFORE_IMAGE_MEANING = (
    "Before image of an update of a table without a primary key: a JSON object of its columns in their "
    "staging types (decimals as text); null for every other event."
)
METADATA_NAMES: tuple[str, ...] = tuple(c.name for c in STAGING_METADATA)
DECODED_NAMES: tuple[str, ...] = tuple(c.name for c in DECODED_METADATA)


def decoded_metadata_fields() -> list[pa.Field]:
    return [pa.field(c.name, c.arrow_type) for c in DECODED_METADATA]


def metadata_ddl() -> list[str]:
    """The metadata columns of a staging table's CREATE TABLE."""
    return [c.ddl for c in STAGING_METADATA]


# ------------------------------------------------------------------------------ bookkeeping tables
@dataclass(frozen=True, slots=True)
class Table:
    """A bookkeeping table of the staging schema."""

    name: str
    grain: str  # one row per ...
    columns: tuple[Column, ...]

    @property
    def qualified(self) -> str:
        # Unquoted on purpose: `LakeSink.bookkeeping` prefixes `lake.staging._` names in SQL text.
        return f"{LAKE}.{STAGING}.{self.name}"

    @property
    def ddl(self) -> str:
        columns = ",\n".join(f"    {c.ddl}" for c in self.columns)
        return f"create table if not exists {self.qualified} (\n{columns}\n)"

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")

    def arrow(self, values: Mapping[str, Sequence[Any]]) -> pa.Table:
        """Rows to insert, column by column, in the contract's Arrow types."""
        return pa.table({name: pa.array(v, self.column(name).arrow_type) for name, v in values.items()})

    @property
    def at_insert(self) -> str | None:
        """The select items that fill the columns SQL fills at insert (`now() as committed_at`)."""
        items = [f"{c.at_insert} as {quote_ident(c.name)}" for c in self.columns if c.at_insert]
        return ", ".join(items) or None


_KAFKA_POSITION = tuple(
    c for c in STAGING_METADATA if c.name in ("_kafka_topic", "_kafka_partition", "_kafka_offset")
)
_TOPIC = _column("topic", "VARCHAR", pa.string(), "Kafka topic.")
_PARTITION = _column("partition", "INTEGER", pa.int32(), "Kafka partition.")
_OFFSET = _column("offset", "BIGINT", pa.int64(), "Kafka offset.")
_BATCH = _column("batch_id", "BIGINT", pa.int64(), "The batch that wrote the row.")
_TABLE_NAME = _column("table_name", "VARCHAR", pa.string(), "Staging table name (<schema>__<table>).")

OFFSETS = Table(
    "_cdc_offsets",
    "landed batch and partition",
    (
        _TOPIC,
        _PARTITION,
        _column(
            "next_offset", "BIGINT", pa.int64(), "The next offset to read; the ingester resumes from the max."
        ),
        _BATCH,
        _now("committed_at", "When the batch committed."),
    ),
)
_FAILED_RECORD = (
    _TOPIC,
    _PARTITION,
    _OFFSET,
    _column("key", "BLOB", pa.binary(), "The record's key.", null=True),
    _column("value", "BLOB", pa.binary(), "The record's value.", null=True),
    _column("headers", "JSON", pa.string(), "The record's headers, [[name, value], ...].", null=True),
    _column("kafka_timestamp", "TIMESTAMPTZ", UTC_MS, "The record's timestamp.", null=True),
    _column("error", "VARCHAR", pa.string(), "Why it did not land."),
    _now("failed_at", "When the batch that set it apart committed."),
    _BATCH,
)
DEAD_LETTERS = Table("_dead_letters", "event that could not be decoded", _FAILED_RECORD)
QUARANTINE = Table("_cdc_quarantine", "event of a quarantined table", (_TABLE_NAME, *_FAILED_RECORD))
RESOLUTIONS = Table(
    "_dead_letter_resolutions",
    "retried dead letter or quarantined event",
    (
        _column("kind", "VARCHAR", pa.string(), "dl (dead letter) or q (quarantined)."),
        _TOPIC,
        _PARTITION,
        _OFFSET,
        _column("failed_at", "TIMESTAMPTZ", UTC_US, "failed_at of the row it resolves."),
        _column("outcome", "VARCHAR", pa.string(), "landed, failed again or skipped."),
        _column("detail", "VARCHAR", pa.string(), "What happened.", null=True),
        _BATCH,
        _now("resolved_at", "When the retry committed."),
    ),
)
TABLES = Table(
    "_cdc_tables",
    "staging table",
    (
        _TABLE_NAME,
        _TOPIC,
        _column("source_schema", "VARCHAR", pa.string(), "Schema in the source database.", null=True),
        _column("source_table", "VARCHAR", pa.string(), "Table in the source database.", null=True),
        _column(
            "primary_key",
            "VARCHAR[]",
            pa.list_(pa.string()),
            "Key columns, from the Debezium key.",
            null=True,
        ),
        _column("columns", "JSON", pa.string(), "[{name, type, source_type, optional}, ...]."),
        _column("schema_mode", "VARCHAR", pa.string(), "connect or inferred."),
        _column("quarantined", "VARCHAR", pa.string(), "Why the table is quarantined, if it is.", null=True),
        _now("updated_at", "When the row was written."),
    ),
)
SCHEMA_CHANGES = Table(
    "_cdc_schema_changes",
    "change to a staging table",
    (
        _TABLE_NAME,
        _column("change", "VARCHAR", pa.string(), "create, add_column, widen or quarantine."),
        _column("column_name", "VARCHAR", pa.string(), "The column changed.", null=True),
        _column("old_type", "VARCHAR", pa.string(), "Its type before.", null=True),
        _column(
            "new_type", "VARCHAR", pa.string(), "Its type after (the reason, for a quarantine).", null=True
        ),
        _BATCH,
        _now("changed_at", "When the batch committed."),
    ),
)
TRANSACTIONS = Table(
    "_cdc_transactions",
    "BEGIN or END record of the transaction topic",
    (
        _column("status", "VARCHAR", pa.string(), "BEGIN or END."),
        _column("tx_id", "VARCHAR", pa.string(), "Source transaction id (_cdc_tx_id of its events)."),
        _column("id", "VARCHAR", pa.string(), "Debezium's transaction id."),
        _column("event_count", "BIGINT", pa.int64(), "Events of the transaction (END).", null=True),
        _column("data_collections", "JSON", pa.string(), "Events per table (END).", null=True),
        _column("ts", "TIMESTAMPTZ", UTC_MS, "When Debezium processed it.", null=True),
        *_KAFKA_POSITION,
        *LANDING_METADATA,
    ),
)
MESSAGES = Table(
    "_cdc_messages",
    "logical decoding message",
    (
        _column("prefix", "VARCHAR", pa.string(), "The message's prefix."),
        _column("content", "BLOB", pa.string(), "Its content (sent as base64).", null=True),
        _column("transactional", "BOOLEAN", pa.bool_(), "Sent inside a transaction."),
        _column("tx_id", "VARCHAR", pa.string(), "Source transaction id.", null=True),
        _column("lsn", "BIGINT", pa.int64(), "Position in the source log.", null=True),
        _column("source_ts", "TIMESTAMPTZ", UTC_US, "Commit time in the source.", null=True),
        *_KAFKA_POSITION,
        *LANDING_METADATA,
    ),
)
BATCHES = Table(
    "_cdc_batches",
    "committed batch",
    (
        _BATCH,
        _column("records", "BIGINT", pa.int64(), "Kafka records of the batch."),
        _column("change_rows", "BIGINT", pa.int64(), "Change rows among them."),
        _column("dead_letters", "BIGINT", pa.int64(), "Dead letters among them."),
        _column("quarantined", "BIGINT", pa.int64(), "Quarantined events among them."),
        _column("started_at", "TIMESTAMPTZ", UTC_MS, "When landing started."),
        _column("landing_ms", "DOUBLE", pa.float64(), "How long landing took."),
        _now("committed_at", "When it committed (in the batch's transaction)."),
        _column("run_id", "VARCHAR", pa.string(), "The `ingest run` (member) that landed it.", null=True),
    ),
)
_GROUP = _column("group_id", "VARCHAR", pa.string(), "The Kafka consumer group of the ingesters.")
# One row, replaced by every batch: the delete makes any two concurrent batch commits conflict (DuckLake
# detects conflicts per table, docs/scale-out.md), so commits of all members are serialised, which is what
# lets a batch check its partitions' positions and take the next batch id inside its own transaction.
FENCE = Table(
    "_cdc_fence",
    "lake (a single row, replaced by every batch)",
    (
        _GROUP,
        _column("batch_id", "BIGINT", pa.int64(), "The last batch committed."),
        _column("run_id", "VARCHAR", pa.string(), "The member that committed it.", null=True),
        _now("committed_at", "When it committed."),
    ),
)
_HOST = _column("host", "VARCHAR", pa.string(), "Host name of the process.")
_PID = _column("pid", "INTEGER", pa.int32(), "Its process id.")
RUNS = Table(
    "_cdc_runs",
    "`ingest run` process",
    (
        _column("run_id", "VARCHAR", pa.string(), "A fresh id per run."),
        _column("target", "VARCHAR", pa.string(), "The profile target it ran with."),
        _HOST,
        _PID,
        _column("started_at", "TIMESTAMPTZ", UTC_US, "When it started."),
        _column("stopped_at", "TIMESTAMPTZ", UTC_US, "When it stopped (NULL while it runs).", null=True),
        _column("exit_status", "VARCHAR", pa.string(), "How it stopped.", null=True),
        _column("metrics_port", "INTEGER", pa.int32(), "Its metrics endpoint's port.", null=True),
        _column("dbt_build_every", "VARCHAR", pa.string(), "Continuous builds' interval.", null=True),
    ),
)
_RUN_ID = _column("run_id", "VARCHAR", pa.string(), "The `ingest run` process (member).")
ASSIGNMENTS = Table(
    "_cdc_assignments",
    "change of a member's partitions (appended on every rebalance, and as a heartbeat)",
    (
        _RUN_ID,
        _GROUP,
        _HOST,
        _PID,
        _column("partitions", "JSON", pa.string(), "The partitions it owns now: [[topic, partition], ...]."),
        _now("assigned_at", "When it took effect."),
    ),
)
LEASES = Table(
    "_cdc_leases",
    "piece of lake-wide work and the member doing it (continuous builds, maintenance)",
    (
        _column("name", "VARCHAR", pa.string(), "The work: dbt-builds, maintenance."),
        _RUN_ID,
        _HOST,
        _PID,
        _column("expires_at", "TIMESTAMPTZ", UTC_US, "Until when it holds unless renewed."),
    ),
)
DBT_BUILDS = Table(
    "_cdc_dbt_builds",
    "dbt invocation that reached the lake",
    (
        _column("invocation_id", "VARCHAR", pa.string(), "dbt's invocation id."),
        _column("command", "VARCHAR", pa.string(), "build, run, test, seed or snapshot."),
        _column("target", "VARCHAR", pa.string(), "The profile target."),
        _column("status", "VARCHAR", pa.string(), "Its result."),
        _column("requested_at", "TIMESTAMPTZ", UTC_US, "When dbt started."),
        _column("started_at", "TIMESTAMPTZ", UTC_US, "When it took the run lock."),
        _column("finished_at", "TIMESTAMPTZ", UTC_US, "When it finished."),
        _column("elapsed_s", "DOUBLE", pa.float64(), "Seconds from the lock to the end."),
        _column("selection", "VARCHAR", pa.string(), "Its --select.", null=True),
        _column("counts", "JSON", pa.string(), "Nodes per status, from run_results.json.", null=True),
        _column("message", "VARCHAR", pa.string(), "What went wrong, if anything.", null=True),
        _column("trigger", "VARCHAR", pa.string(), "Who started it (by hand, continuous, ...)."),
        _HOST,
        _PID,
    ),
)
# In creation order, by the sink. RUNS and DBT_BUILDS are created by ingest.ops (status, dbt_plugin).
BOOKKEEPING: tuple[Table, ...] = (
    OFFSETS,
    DEAD_LETTERS,
    QUARANTINE,
    RESOLUTIONS,
    TABLES,
    SCHEMA_CHANGES,
    TRANSACTIONS,
    BATCHES,
    MESSAGES,
    FENCE,
    ASSIGNMENTS,
    LEASES,
)
