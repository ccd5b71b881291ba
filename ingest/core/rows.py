"""Change rows as both decoders hand them over: columnar, of one staging table and one column layout.

The SQL decoder (`decode_sql`) makes one per chunk of a topic. The Python decoder decodes record by record;
a batch gathers its rows per layout in an open segment and closes that into one (`batch.Segment.close`).
The batch and the sink then land them the same way, whichever decoder made them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from ingest.core.contract import BATCH_ID
from ingest.core.decode import RawRecord
from ingest.core.typemap import ColumnType, TableSchema


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the rows come from: their topic, and the source table its first row names."""

    topic: str
    source_schema: str | None
    source_table: str | None


@dataclass(slots=True)
class ChangeRows:
    """Change rows of one staging table sharing one column layout (one Connect schema version, or a
    compatible set of inferred columns), ready to land."""

    table: str
    mode: str  # connect | inferred
    columns: dict[str, ColumnType]  # of the row image, in landing order
    schema: TableSchema  # the table version of the first row, as the Python decoder makes it
    origin: Origin
    arrow: pa.Table  # the image's columns in transport types, then contract.DECODED_METADATA
    records: Sequence[RawRecord]  # every row's record, refused ones too: a quarantine takes them all
    key_columns: list[str] | None = None  # set on the rows that open a table version
    refused: list[tuple[RawRecord, str]] = field(default_factory=list)  # left out of `arrow`, and why
    decoder: str = "python"  # which decoder made them (python | sql): for logs and tests, never branched on

    @property
    def count(self) -> int:
        return self.arrow.num_rows

    def landing_table(self, batch_id: int) -> pa.Table:
        """The rows as they are inserted: `arrow` and the batch's id."""
        batch_ids = pa.array([batch_id] * self.arrow.num_rows, BATCH_ID.arrow_type)
        return self.arrow.append_column(pa.field(BATCH_ID.name, BATCH_ID.arrow_type), batch_ids)

    def newest_source_ts_us(self) -> int | None:
        newest = pc.max(self.arrow.column("_cdc_source_ts")).value
        return None if newest is None else int(newest)

    def next_offsets(self) -> dict[tuple[str, int], int]:
        """Per (topic, partition), the offset after the newest row's."""
        newest = self.arrow.group_by(["_kafka_topic", "_kafka_partition"], use_threads=False).aggregate(
            [("_kafka_offset", "max")]
        )
        return {
            (topic, partition): offset + 1
            for topic, partition, offset in zip(
                newest.column("_kafka_topic").to_pylist(),
                newest.column("_kafka_partition").to_pylist(),
                newest.column("_kafka_offset_max").to_pylist(),
                strict=True,
            )
        }
