"""Dead letters and quarantine: events that cannot land, kept with their raw bytes and the reason.

`_dead_letters` holds records that did not decode (bad JSON, an envelope that does not validate, a value
that does not fit its type). `_cdc_quarantine` holds every event of a table whose schema changed in a way the
staging table cannot follow, from that event on, so the table's order is kept for a later retry.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pyarrow as pa

from ingest.core.decode import RawRecord
from ingest.core.lake import LAKE

DEAD_LETTERS_TABLE = f"{LAKE}.staging._dead_letters"
QUARANTINE_TABLE = f"{LAKE}.staging._cdc_quarantine"

_COLUMNS = """
    topic varchar not null,
    "partition" integer not null,
    "offset" bigint not null,
    "key" blob,
    "value" blob,
    headers json,
    kafka_timestamp timestamptz,
    error varchar not null,
    failed_at timestamptz not null,
    batch_id bigint not null"""

DEAD_LETTERS_DDL = f"create table if not exists {DEAD_LETTERS_TABLE} ({_COLUMNS})"
QUARANTINE_DDL = f"create table if not exists {QUARANTINE_TABLE} (table_name varchar not null,{_COLUMNS})"


def _headers_json(record: RawRecord) -> str | None:
    if not record.headers:
        return None
    decoded = [
        [name, None if v is None else v.decode("utf-8", "backslashreplace")] for name, v in record.headers
    ]
    return orjson.dumps(decoded).decode()


def failed_records_arrow(
    records: Sequence[RawRecord], errors: Sequence[str], batch_id: int, tables: Sequence[str] | None = None
) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    if tables is not None:
        columns["table_name"] = pa.array(tables, pa.string())
    columns.update(
        {
            "topic": pa.array([r.topic for r in records], pa.string()),
            "partition": pa.array([r.partition for r in records], pa.int32()),
            "offset": pa.array([r.offset for r in records], pa.int64()),
            "key": pa.array([r.key for r in records], pa.binary()),
            "value": pa.array([r.value for r in records], pa.binary()),
            "headers": pa.array([_headers_json(r) for r in records], pa.string()),
            "kafka_timestamp": pa.array([r.timestamp_ms for r in records], pa.timestamp("ms", tz="UTC")),
            "error": pa.array(list(errors), pa.string()),
            "batch_id": pa.array([batch_id] * len(records), pa.int64()),
        }
    )
    return pa.table(columns)


# A dead letter or quarantined event is open until a row here names it (by kind, position and failed_at):
# `ingest dead-letters retry` writes that row in the same transaction as the retried event's landing, so a
# crash neither loses nor doubles it. A retry that fails again writes a new dead letter (the new reason) in
# that same transaction, which stays open.
RESOLUTIONS_TABLE = f"{LAKE}.staging._dead_letter_resolutions"
RESOLUTIONS_DDL = f"""create table if not exists {RESOLUTIONS_TABLE} (
    kind varchar not null,
    topic varchar not null,
    "partition" integer not null,
    "offset" bigint not null,
    failed_at timestamptz not null,
    outcome varchar not null,
    detail varchar,
    batch_id bigint not null,
    resolved_at timestamptz not null
)"""
