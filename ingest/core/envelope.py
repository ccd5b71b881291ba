"""Pydantic v2 models of what Debezium writes to Kafka (JSON converter, schemas on or off).

They describe the change-event envelope, its `source` block, the transaction-metadata topic, logical decoding
messages and the Kafka Connect schema that precedes the payload when `schemas.enable=true`. Row images stay
plain dicts here: their columns are typed by `typemap`, from the Connect schema or from the values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

UNAVAILABLE_VALUE = "__debezium_unavailable_value"
# The same placeholder, base64-encoded, is what a bytea column carries (binary.handling.mode=bytes).
UNAVAILABLE_VALUE_BASE64 = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="

ChangeOp = Literal["r", "c", "u", "d", "t"]


class _Lenient(BaseModel):
    """Connectors add fields over time; unknown ones are kept, not refused."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Source(_Lenient):
    """The `source` block: where and when the change happened in the source database."""

    version: str | None = None
    connector: str | None = None
    name: str | None = None
    ts_ms: int | None = None
    ts_us: int | None = None
    ts_ns: int | None = None
    # A string enum (true, first, first_in_data_collection, last_in_data_collection, last, false,
    # incremental); older connectors sent a boolean.
    snapshot: str | bool | None = None
    db: str | None = None
    source_schema: str | None = Field(None, alias="schema")
    table: str | None = None
    # PostgreSQL sends an integer, other connectors strings (MySQL GTIDs): kept as text.
    tx_id: str | None = Field(None, alias="txId")
    lsn: int | None = None
    sequence: str | None = None

    @field_validator("tx_id", mode="before")
    @classmethod
    def _tx_id_as_text(cls, value: Any) -> str | None:
        return None if value is None else str(value)

    @property
    def is_snapshot(self) -> bool:
        if isinstance(self.snapshot, bool):
            return self.snapshot
        return self.snapshot not in (None, "false")

    @property
    def commit_ts_us(self) -> int | None:
        if self.ts_us is not None:
            return self.ts_us
        return None if self.ts_ms is None else self.ts_ms * 1000


class TransactionBlock(_Lenient):
    """The `transaction` block of a data event (provide.transaction.metadata=true).

    `id` is "<txId>:<lsn of this event>" on PostgreSQL, so it differs between events of one transaction:
    group by `source.txId` instead.
    """

    id: str
    total_order: int | None = None
    data_collection_order: int | None = None


class ChangeEvent(_Lenient):
    """A data change: the value of a record on a `<prefix>.<schema>.<table>` topic."""

    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    source: Source
    op: ChangeOp
    ts_ms: int | None = None
    transaction: TransactionBlock | None = None

    @property
    def row(self) -> dict[str, Any] | None:
        """The row image that lands: `after`, or `before` for a delete; None for a truncate."""
        return self.before if self.op == "d" else self.after


class DataCollection(_Lenient):
    data_collection: str
    event_count: int


class TransactionEvent(_Lenient):
    """A BEGIN or END record of the `<prefix>.transaction` topic."""

    status: Literal["BEGIN", "END"]
    id: str
    event_count: int | None = None
    data_collections: list[DataCollection] | None = None
    ts_ms: int | None = None

    @property
    def tx_id(self) -> str:
        """The source transaction id: the part before the colon of `<txId>:<lsn>`."""
        return self.id.split(":", 1)[0]


class MessageBody(_Lenient):
    prefix: str
    content: str | None = None  # base64 (binary.handling.mode=bytes)


class LogicalMessage(_Lenient):
    """A logical decoding message (`pg_logical_emit_message`) on the `<prefix>.message` topic."""

    op: Literal["m"]
    ts_ms: int | None = None
    source: Source
    transaction: TransactionBlock | None = None
    message: MessageBody


class ConnectSchema(_Lenient):
    """A Kafka Connect schema as JsonConverter writes it (`schemas.enable=true`)."""

    type: str
    optional: bool = False
    name: str | None = None
    version: int | None = None
    parameters: dict[str, str] | None = None
    default: Any = None
    field: str | None = None
    doc: str | None = None
    fields: list[ConnectSchema] | None = None
    items: ConnectSchema | None = None
    keys: ConnectSchema | None = None
    values: ConnectSchema | None = None

    def field_schema(self, name: str) -> ConnectSchema | None:
        for candidate in self.fields or []:
            if candidate.field == name:
                return candidate
        return None
