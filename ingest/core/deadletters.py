"""Dead letters and quarantine: events that cannot land, kept with their raw bytes and the reason.

`_dead_letters` holds records that did not decode (bad JSON, an envelope that does not validate, a value
that does not fit its type). `_cdc_quarantine` holds every event of a table whose schema changed in a way the
staging table cannot follow, from that event on, so the table's order is kept for a later retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from ingest.core import contract
from ingest.core.decode import RawRecord

DEAD_LETTERS_TABLE = contract.DEAD_LETTERS.qualified
QUARANTINE_TABLE = contract.QUARANTINE.qualified
DEAD_LETTERS_DDL = contract.DEAD_LETTERS.ddl
QUARANTINE_DDL = contract.QUARANTINE.ddl


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
    columns: dict[str, Sequence[Any]] = {}
    if tables is not None:
        columns["table_name"] = tables
    columns.update(
        {
            "topic": [r.topic for r in records],
            "partition": [r.partition for r in records],
            "offset": [r.offset for r in records],
            "key": [r.key for r in records],
            "value": [r.value for r in records],
            "headers": [_headers_json(r) for r in records],
            "kafka_timestamp": [r.timestamp_ms for r in records],
            "error": list(errors),
            "batch_id": [batch_id] * len(records),
        }
    )
    return (contract.DEAD_LETTERS if tables is None else contract.QUARANTINE).arrow(columns)


# A dead letter or quarantined event is open until a row here names it (by kind, position and failed_at):
# `ingest dead-letters retry` writes that row in the same transaction as the retried event's landing, so a
# crash neither loses nor doubles it. A retry that fails again writes a new dead letter (the new reason) in
# that same transaction, which stays open.
RESOLUTIONS_TABLE = contract.RESOLUTIONS.qualified
RESOLUTIONS_DDL = contract.RESOLUTIONS.ddl
