"""A synthetic Debezium source: the inventory database, as the PostgreSQL connector + JsonConverter emit it.

The output is shaped like the recorded corpus (Debezium 3.6.3.Final, pgoutput, `provide.transaction.metadata`,
`tombstones.on.delete`, SimpleHeaderConverter headers), so the ingester cannot tell it from the real thing:

* a snapshot (`op: r`) of the seed rows of `01_setup.sql`, with Debezium's `source.snapshot` markers;
* then a stream of realistic, foreign-key-consistent transactions on products, products_on_hand, customers,
  addresses and orders: creates, updates, deletes (each followed by a tombstone), primary-key changes
  (d + tombstone + c on one LSN), multi-table transactions with BEGIN/END on `<prefix>.transaction`, and
  `ALTER TABLE customers ADD COLUMN phone` part-way through.

Three layers, the first two pure and deterministic per seed:

* `InventoryGenerator` iterates `Record`s from a seeded in-memory database. It holds only the live rows
  (each table capped at `max_rows`) and a few counters, so it can stream for hours in bounded memory.
* `DeliveryFaults` wraps any record stream with at-least-once redelivery (duplicates) and late records
  (held back relative to *other* keys only: one key's records never overtake each other).
* `produce_records` is the I/O: pre-create the topics, produce with Kafka's default (murmur2) partitioning,
  pace at a fixed rate, flush, and report counts.
"""

from __future__ import annotations

import base64
import collections
import heapq
import itertools
import logging
import random
import signal
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

import orjson

from ingest.devtools.corpus import producer_config
from ingest.embedded.broker import ensure_topics

log = logging.getLogger(__name__)

DEFAULT_TOPIC_PREFIX = "dbserver1"
DEBEZIUM_VERSION = "3.6.3.Final"
DATABASE = "inventory"
SCHEMA = "inventory"
DAY_US = 86_400_000_000
# A fixed start instant (the corpus's own snapshot time) keeps the pure generator deterministic.
DEFAULT_START_US = 1_795_241_511_195_107

Row = dict[str, Any]
Headers = list[tuple[str, bytes]]


class Record(NamedTuple):
    """One Kafka record, ready to produce: the key decides the partition (murmur2, like Kafka's default)."""

    topic: str
    key: bytes | None
    value: bytes | None  # None = tombstone
    headers: Headers


# ----------------------------------------------------------------------------------- Connect schemas
# Field schemas exactly as JsonConverter writes them (key order matters for byte-identical output).
_SERIAL = {"type": "int32", "optional": False, "default": 0}  # Debezium can't evaluate nextval(): default 0
_INT32 = {"type": "int32", "optional": False}
_STRING = {"type": "string", "optional": False}
_OPT_STRING = {"type": "string", "optional": True}
_OPT_DOUBLE = {"type": "double", "optional": True}
_DATE = {"type": "int32", "optional": False, "name": "io.debezium.time.Date", "version": 1}
_ADDRESS_TYPE = {
    "type": "string",
    "optional": False,
    "name": "io.debezium.data.Enum",
    "version": 1,
    "parameters": {"allowed": "SHIPPING,BILLING,LIVING"},
}
_SNAPSHOT_MARKERS = "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"
SOURCE_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        {"type": "string", "optional": False, "field": "version"},
        {"type": "string", "optional": False, "field": "connector"},
        {"type": "string", "optional": False, "field": "name"},
        {"type": "int64", "optional": False, "field": "ts_ms"},
        {
            "type": "string",
            "optional": True,
            "name": "io.debezium.data.Enum",
            "version": 1,
            "parameters": {"allowed": _SNAPSHOT_MARKERS},
            "default": "false",
            "field": "snapshot",
        },
        {"type": "string", "optional": False, "field": "db"},
        {"type": "string", "optional": True, "field": "sequence"},
        {"type": "int64", "optional": True, "field": "ts_us"},
        {"type": "int64", "optional": True, "field": "ts_ns"},
        {"type": "string", "optional": False, "field": "schema"},
        {"type": "string", "optional": False, "field": "table"},
        {"type": "int64", "optional": True, "field": "txId"},
        {"type": "int64", "optional": True, "field": "lsn"},
        {"type": "int64", "optional": True, "field": "xmin"},
        {"type": "string", "optional": True, "field": "origin"},
        {"type": "int64", "optional": True, "field": "origin_lsn"},
    ],
    "optional": False,
    "name": "io.debezium.connector.postgresql.Source",
    "version": 1,
    "field": "source",
}
TRANSACTION_BLOCK_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        {"type": "string", "optional": False, "field": "id"},
        {"type": "int64", "optional": False, "field": "total_order"},
        {"type": "int64", "optional": False, "field": "data_collection_order"},
    ],
    "optional": True,
    "name": "event.block",
    "version": 1,
    "field": "transaction",
}
MESSAGE_KEY_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [{"type": "string", "optional": True, "field": "prefix"}],
    "optional": False,
    "name": "io.debezium.connector.postgresql.MessageKey",
    "version": 1,
}
MESSAGE_VALUE_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        {"type": "string", "optional": False, "field": "op"},
        {"type": "int64", "optional": True, "field": "ts_ms"},
        SOURCE_SCHEMA,
        TRANSACTION_BLOCK_SCHEMA,
        {
            "type": "struct",
            "fields": [
                {"type": "string", "optional": True, "field": "prefix"},
                {"type": "bytes", "optional": True, "field": "content"},
            ],
            "optional": False,
            "name": "io.debezium.connector.postgresql.Message",
            "version": 1,
            "field": "message",
        },
    ],
    "optional": False,
    "name": "io.debezium.connector.postgresql.MessageValue",
    "version": 1,
}
# The END record of a transaction that only emitted a logical message names this (a Debezium bug: the
# monitor's key object's toString, with a Java identity hash); see the corpus README.
MESSAGE_DATA_COLLECTION = (
    "io.debezium.connector.postgresql.LogicalDecodingMessageMonitor$LogicalDecodingMessageId@"
)
MESSAGE_PREFIXES = ("inventory-audit", "price-review", "batch-marker")
TRANSACTION_KEY_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [{"type": "string", "optional": False, "field": "id"}],
    "optional": False,
    "name": "io.debezium.connector.common.TransactionMetadataKey",
    "version": 1,
}
TRANSACTION_VALUE_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        {"type": "string", "optional": False, "field": "status"},
        {"type": "string", "optional": False, "field": "id"},
        {"type": "int64", "optional": True, "field": "event_count"},
        {
            "type": "array",
            "items": {
                "type": "struct",
                "fields": [
                    {"type": "string", "optional": False, "field": "data_collection"},
                    {"type": "int64", "optional": False, "field": "event_count"},
                ],
                "optional": True,
                "name": "event.collection",
                "version": 1,
            },
            "optional": True,
            "field": "data_collections",
        },
        {"type": "int64", "optional": False, "field": "ts_ms"},
    ],
    "optional": False,
    "name": "io.debezium.connector.common.TransactionMetadataValue",
    "version": 1,
}


# ------------------------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class Column:
    name: str
    schema: dict[str, Any]  # Connect field schema without "field"

    @property
    def zero(self) -> Any:
        """What a REPLICA IDENTITY DEFAULT delete shows for a non-key column: the type's zero if NOT NULL."""
        if self.schema["optional"]:
            return None
        return {"string": "", "double": 0.0}.get(self.schema["type"], 0)


@dataclass(frozen=True)
class Table:
    name: str
    key: str
    full_identity: bool  # REPLICA IDENTITY FULL: complete `before` on u/d
    columns: tuple[Column, ...]

    @property
    def data_collection(self) -> str:
        return f"{SCHEMA}.{self.name}"

    def with_column(self, column: Column) -> Table:
        return Table(self.name, self.key, self.full_identity, (*self.columns, column))


PHONE = Column("phone", _OPT_STRING)
TABLES: tuple[Table, ...] = (  # Debezium snapshots tables in name order
    Table(
        "addresses",
        "id",
        False,
        (
            Column("id", _SERIAL),
            Column("customer_id", _INT32),
            Column("street", _STRING),
            Column("city", _STRING),
            Column("state", _STRING),
            Column("zip", _STRING),
            Column("type", _ADDRESS_TYPE),
        ),
    ),
    Table(
        "customers",
        "id",
        True,
        (
            Column("id", _SERIAL),
            Column("first_name", _STRING),
            Column("last_name", _STRING),
            Column("email", _STRING),
        ),
    ),
    Table(
        "orders",
        "id",
        False,
        (
            Column("id", _SERIAL),
            Column("order_date", _DATE),
            Column("purchaser", _INT32),
            Column("quantity", _INT32),
            Column("product_id", _INT32),
        ),
    ),
    Table(
        "products",
        "id",
        False,
        (
            Column("id", _SERIAL),
            Column("name", _STRING),
            Column("description", _OPT_STRING),
            Column("weight", _OPT_DOUBLE),
        ),
    ),
    Table(
        "products_on_hand",
        "product_id",
        False,
        (
            Column("product_id", _INT32),
            Column("quantity", _INT32),
        ),
    ),
)


def _days(iso: str) -> int:
    return (date.fromisoformat(iso) - date(1970, 1, 1)).days


def seed_rows() -> dict[str, list[Row]]:
    """The rows of 01_setup.sql, in insertion (= snapshot) order."""
    products = [
        ("scooter", "Small 2-wheel scooter", 3.14),
        ("car battery", "12V car battery", 8.1),
        ("12-pack drill bits", "12-pack of drill bits with sizes ranging from #40 to #3", 0.8),
        ("hammer", "12oz carpenter's hammer", 0.75),
        ("hammer", "14oz carpenter's hammer", 0.875),
        ("hammer", "16oz carpenter's hammer", 1.0),
        ("rocks", "box of assorted rocks", 5.3),
        ("jacket", "water resistent black wind breaker", 0.1),
        ("spare tire", "24 inch spare tire", 22.2),
    ]
    customers = [
        ("Sally", "Thomas", "sally.thomas@acme.com"),
        ("George", "Bailey", "gbailey@foobar.com"),
        ("Edward", "Walker", "ed@walker.com"),
        ("Anne", "Kretchmar", "annek@noanswer.org"),
    ]
    addresses = [
        (1001, "3183 Moore Avenue", "Euless", "Texas", "76036", "SHIPPING"),
        (1001, "2389 Hidden Valley Road", "Harrisburg", "Pennsylvania", "17116", "BILLING"),
        (1002, "281 Riverside Drive", "Augusta", "Georgia", "30901", "BILLING"),
        (1003, "3787 Brownton Road", "Columbus", "Mississippi", "39701", "SHIPPING"),
        (1003, "2458 Lost Creek Road", "Bethlehem", "Pennsylvania", "18018", "SHIPPING"),
        (1003, "4800 Simpson Square", "Hillsdale", "Oklahoma", "74743", "BILLING"),
        (1004, "1289 University Hill Road", "Canehill", "Arkansas", "72717", "LIVING"),
    ]
    orders = [
        ("2016-01-16", 1001, 1, 102),
        ("2016-01-17", 1002, 2, 105),
        ("2016-02-19", 1002, 2, 106),
        ("2016-02-21", 1003, 1, 107),
    ]
    on_hand = [(101, 3), (102, 8), (103, 18), (104, 4), (105, 5), (106, 0), (107, 44), (108, 2), (109, 5)]
    return {
        "addresses": [
            dict(
                zip(
                    ("id", "customer_id", "street", "city", "state", "zip", "type"), (10 + i, *a), strict=True
                )
            )
            for i, a in enumerate(addresses)
        ],
        "customers": [
            {"id": 1001 + i, "first_name": f, "last_name": la, "email": e}
            for i, (f, la, e) in enumerate(customers)
        ],
        "orders": [
            {"id": 10001 + i, "order_date": _days(d), "purchaser": c, "quantity": q, "product_id": p}
            for i, (d, c, q, p) in enumerate(orders)
        ],
        "products": [
            {"id": 101 + i, "name": n, "description": d, "weight": w} for i, (n, d, w) in enumerate(products)
        ],
        "products_on_hand": [{"product_id": p, "quantity": q} for p, q in on_hand],
    }


# Next values of the SERIAL sequences after the seed rows.
SEQUENCE_START = {"addresses": 17, "customers": 1005, "orders": 10005, "products": 110}


def value_schema(prefix: str, table: Table, field_name: str) -> dict[str, Any]:
    return {
        "type": "struct",
        "fields": [{**c.schema, "field": c.name} for c in table.columns],
        "optional": True,
        "name": f"{prefix}.{SCHEMA}.{table.name}.Value",
        "field": field_name,
    }


def key_schema(prefix: str, table: Table) -> dict[str, Any]:
    key = next(c for c in table.columns if c.name == table.key)
    return {
        "type": "struct",
        "fields": [{**key.schema, "field": key.name}],
        "optional": False,
        "name": f"{prefix}.{SCHEMA}.{table.name}.Key",
    }


def envelope_schema(prefix: str, table: Table) -> dict[str, Any]:
    return {
        "type": "struct",
        "fields": [
            value_schema(prefix, table, "before"),
            value_schema(prefix, table, "after"),
            SOURCE_SCHEMA,
            TRANSACTION_BLOCK_SCHEMA,
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
            {"type": "int64", "optional": True, "field": "ts_us"},
            {"type": "int64", "optional": True, "field": "ts_ns"},
        ],
        "optional": False,
        "name": f"{prefix}.{SCHEMA}.{table.name}.Envelope",
        "version": 2,
    }


class _Wrapper:
    """JsonConverter framing: `{"schema":S,"payload":P}` with schemas, the bare payload without."""

    def __init__(self, schema: dict[str, Any] | None) -> None:
        self._head = None if schema is None else b'{"schema":' + orjson.dumps(schema) + b',"payload":'

    def __call__(self, payload: Any) -> bytes:
        body = orjson.dumps(payload)
        return body if self._head is None else self._head + body + b"}"


@dataclass(frozen=True)
class _TableCodec:
    table: Table
    topic: str
    key: _Wrapper
    value: _Wrapper


def _table_codec(prefix: str, table: Table, schemas: bool) -> _TableCodec:
    return _TableCodec(
        table,
        f"{prefix}.{SCHEMA}.{table.name}",
        _Wrapper(key_schema(prefix, table) if schemas else None),
        _Wrapper(envelope_schema(prefix, table) if schemas else None),
    )


def snapshot_marker(table_index: int, tables: int, row_index: int, rows: int) -> str:
    """Debezium's `source.snapshot` for a snapshot record."""
    if table_index == 0 and row_index == 0:
        return "first"
    if table_index == tables - 1 and row_index == rows - 1:
        return "last"
    if row_index == 0:
        return "first_in_data_collection"
    if row_index == rows - 1:
        return "last_in_data_collection"
    return "true"


def java_string_hash(text: str) -> int:
    h = 0
    for char in text:
        h = (31 * h + ord(char)) & 0xFFFFFFFF
    return h


def java_hashmap_order(names: Sequence[str], capacity: int = 16) -> list[str]:
    """Iteration order of a java.util.HashMap filled with `names` in this order (no resize: <= 12 keys).

    END's `data_collections` comes from such a map, so the real connector lists tables in this order."""

    def bucket(name: str) -> int:
        h = java_string_hash(name)
        return (h ^ (h >> 16)) & (capacity - 1)

    position = {name: i for i, name in enumerate(names)}
    return sorted(names, key=lambda n: (bucket(n), position[n]))


# -------------------------------------------------------------------------------------------- state
class KeyPool:
    """The keys of one table, with O(1) add, remove and uniform random choice."""

    def __init__(self) -> None:
        self._keys: list[int] = []
        self._index: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: int) -> None:
        self._index[key] = len(self._keys)
        self._keys.append(key)

    def remove(self, key: int) -> None:
        position = self._index.pop(key)
        last = self._keys.pop()
        if last != key:
            self._keys[position] = last
            self._index[last] = position

    def choice(self, rng: random.Random) -> int:
        return self._keys[rng.randrange(len(self._keys))]


# Foreign keys the planner needs to look up children of a row without scanning: (table, column).
_INDEXED = (("addresses", "customer_id"), ("orders", "purchaser"), ("orders", "product_id"))


class Inventory:
    """The live rows of the source database, plus the foreign-key indexes; nothing else is remembered."""

    def __init__(self, tables: Iterable[Table]) -> None:
        self.keys = {t.name: t.key for t in tables}
        self.rows: dict[str, dict[int, Row]] = {t: {} for t in self.keys}
        self.pools = {t: KeyPool() for t in self.keys}
        self.children: dict[tuple[str, str], dict[int, set[int]]] = {ix: {} for ix in _INDEXED}
        self.sequences = dict(SEQUENCE_START)

    def size(self) -> int:
        """Entries held in memory: rows plus index entries (the bound the generator promises)."""
        rows = sum(len(r) for r in self.rows.values())
        return rows + sum(len(ids) for index in self.children.values() for ids in index.values())

    def next_id(self, table: str) -> int:
        value = self.sequences[table]
        self.sequences[table] = value + 1
        return value

    def get(self, table: str, key: int) -> Row:
        return self.rows[table][key]

    def choice(self, table: str, rng: random.Random) -> Row | None:
        pool = self.pools[table]
        return self.rows[table][pool.choice(rng)] if len(pool) else None

    def children_of(self, table: str, column: str, parent: int) -> list[int]:
        return sorted(self.children[(table, column)].get(parent, ()))

    def insert(self, table: str, row: Row) -> None:
        key = row[self.keys[table]]
        self.rows[table][key] = row
        self.pools[table].add(key)
        self._index(table, row, add=True)

    def clear(self, table: str) -> None:
        for row in list(self.rows[table].values()):
            self.delete(table, row)

    def delete(self, table: str, row: Row) -> None:
        key = row[self.keys[table]]
        del self.rows[table][key]
        self.pools[table].remove(key)
        self._index(table, row, add=False)

    def update(self, table: str, old: Row, new: Row) -> None:
        self._index(table, old, add=False)
        self.rows[table][new[self.keys[table]]] = new
        self._index(table, new, add=True)

    def _index(self, table: str, row: Row, add: bool) -> None:
        key = row[self.keys[table]]
        for (indexed_table, column), index in self.children.items():
            if indexed_table != table:
                continue
            if add:
                index.setdefault(row[column], set()).add(key)
                continue
            siblings = index[row[column]]
            siblings.discard(key)
            if not siblings:  # drop empty sets, or the index would grow with every parent ever seen
                del index[row[column]]


@dataclass(frozen=True, slots=True)
class Change:
    """One row change of a planned transaction. op `k` is a primary-key change (before = old row), `t` a
    TRUNCATE of the table (no rows), `m` a logical decoding message (prefix, content, transactional)."""

    table: str
    op: str  # c | u | d | k | t | m
    before: Row | None
    after: Row | None

    @property
    def events(self) -> int:
        return 2 if self.op == "k" else 1


# ---------------------------------------------------------------------------------- domain content
FIRST_NAMES = (
    "Sally",
    "George",
    "Edward",
    "Anne",
    "Maria",
    "James",
    "Aiko",
    "Liam",
    "Fatima",
    "Noah",
    "Olga",
    "Ravi",
    "Chloe",
    "Mateo",
    "Ingrid",
    "Kwame",
    "Lucia",
    "Hiroshi",
    "Amara",
    "Tomasz",
)
LAST_NAMES = (
    "Thomas",
    "Bailey",
    "Walker",
    "Kretchmar",
    "Garcia",
    "Nguyen",
    "Okafor",
    "Schmidt",
    "Rossi",
    "Kowalski",
    "Tanaka",
    "Haddad",
    "Larsen",
    "Dubois",
    "Silva",
    "Patel",
    "Murphy",
    "Novak",
)
DOMAINS = ("acme.com", "example.com", "foobar.com", "noanswer.org", "walker.com")
STREETS = (
    "Moore Avenue",
    "Hidden Valley Road",
    "Riverside Drive",
    "Brownton Road",
    "Lost Creek Road",
    "Simpson Square",
    "University Hill Road",
    "Market St",
    "Oak Lane",
    "Cedar Court",
    "Infinite Loop",
)
PLACES = (
    ("Euless", "Texas", "76036"),
    ("Harrisburg", "Pennsylvania", "17116"),
    ("Augusta", "Georgia", "30901"),
    ("Columbus", "Mississippi", "39701"),
    ("Portland", "Oregon", "97201"),
    ("San Francisco", "California", "94105"),
    ("Denver", "Colorado", "80202"),
    ("Madison", "Wisconsin", "53703"),
    ("Canehill", "Arkansas", "72717"),
)
ADDRESS_TYPES = ("SHIPPING", "BILLING", "LIVING")
PRODUCTS = (
    ("bike lock", "U-lock with two keys"),
    ("tent", "2-person dome tent"),
    ("headlamp", "rechargeable LED headlamp"),
    ("wrench", "adjustable 10 inch wrench"),
    ("helmet", "cycling helmet, size M"),
    ("rope", "30 m climbing rope"),
    ("screwdriver set", "6-piece precision screwdriver set"),
    ("tire pump", "floor pump with gauge"),
)
ORDER_SIZES = (1, 1, 1, 2, 2, 3, 5)

# Transaction kinds and their relative frequency. Kinds that add rows have a substitute used when a table is
# full, so every table stays near or below `max_rows` however long the generator runs.
KIND_WEIGHTS = {
    "place_order": 30,
    "restock": 10,
    "signup": 10,
    "customer_update": 8,
    "cancel_order": 8,
    "address_update": 5,
    "product_update": 5,
    "amend_order": 4,
    "new_product": 3,
    "remove_address": 3,
    "close_account": 3,
    "discontinue_product": 2,
    "renumber": 2,
    "bulk_restock": 2,
    "message": 2,  # pg_logical_emit_message(): topic <prefix>.message
    "stock_take": 1,  # TRUNCATE products_on_hand, then every counted stock row again, in one transaction
}
_KINDS = list(KIND_WEIGHTS)
_WEIGHTS = [KIND_WEIGHTS[k] for k in _KINDS]
SUBSTITUTES = {"signup": "close_account", "place_order": "cancel_order", "new_product": "discontinue_product"}
MIN_ROWS = 3  # never delete customers or products below this: orders need somebody and something
MAX_STOCK_TAKE = 500  # stock rows a TRUNCATE + re-insert transaction may hold
STOCK_TAKE_SPACING = 1000  # change events between stock takes: a periodic event, not a constant one


@dataclass(frozen=True)
class GeneratorConfig:
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    events: int = 1000  # change events after the snapshot (d and c of a PK change count 2; tombstones 0)
    seed: int = 0
    schemas: bool = True
    add_column_after: int | None = None  # change events before ADD COLUMN phone; None = halfway
    max_rows: int = 2000  # per table: the bound on live state
    start_us: int = DEFAULT_START_US  # simulated clock start (when no wall clock is given)
    event_interval_us: int = 10_000  # simulated time per change event
    # Continue a source that already produced up to this position (a restarted database whose log goes on):
    # every LSN and transaction id generated is above these.
    after_lsn: int = 0
    after_tx_id: int = 0
    # Continue the source of earlier runs with this seed and these event counts: their snapshot and changes
    # are replayed silently (the same seed makes the same changes), then `events` new ones are emitted. The
    # keys, sequences, LSNs and transaction ids then go on from where the last run left the database.
    continue_from: tuple[int, ...] = ()

    @property
    def column_added_at(self) -> int | None:
        """Change events (counted from the first run) before ADD COLUMN phone: half of the first run."""
        first = self.continue_from[0] if self.continue_from else self.events
        at = first // 2 if self.add_column_after is None else self.add_column_after
        return at if at < sum(self.continue_from) + self.events else None


Clock = Callable[[], int]  # microseconds since the epoch


# -------------------------------------------------------------------------------------- generator
class InventoryGenerator:
    """Iterates the snapshot, then `config.events` change events, as Kafka records (pure, seeded)."""

    def __init__(self, config: GeneratorConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.prefix = config.topic_prefix
        self._rng = random.Random(config.seed)
        self._clock = clock
        self._tables = {t.name: t for t in TABLES}
        self._codecs = {t.name: _table_codec(self.prefix, t, config.schemas) for t in TABLES}
        self.transaction_topic = f"{self.prefix}.transaction"
        self.message_topic = f"{self.prefix}.message"
        self._message_key = _Wrapper(MESSAGE_KEY_SCHEMA if config.schemas else None)
        self._message_value = _Wrapper(MESSAGE_VALUE_SCHEMA if config.schemas else None)
        self._tx_key = _Wrapper(TRANSACTION_KEY_SCHEMA if config.schemas else None)
        self._tx_value = _Wrapper(TRANSACTION_VALUE_SCHEMA if config.schemas else None)
        self.inventory = Inventory(TABLES)
        self.counts: Counter[tuple[str, str]] = Counter()  # (table or "transaction", op/kind) -> records
        self.change_events = 0
        self.column_added = False
        self._last_stock_take = 0
        self._now_us = clock() if clock else config.start_us
        self._last_commit_us = 0
        # Snapshot transaction id and LSN: arbitrary but seeded, in the ranges a young database has.
        self._tx_id = max(1000, config.after_tx_id) + self._rng.randrange(1, 2000)
        self._lsn = max(0x3000000, config.after_lsn + 8) + 8 * self._rng.randrange(1 << 16)
        self._last_commit_lsn: int | None = None  # Debezium sends null until it has seen a commit
        self._headers = self._context_headers()
        self._planners: dict[str, Callable[[], list[Change] | None]] = {
            kind: getattr(self, f"_plan_{kind}") for kind in KIND_WEIGHTS
        }

    @property
    def topics(self) -> list[str]:
        return [c.topic for c in self._codecs.values()] + [self.transaction_topic, self.message_topic]

    @property
    def emitted_change_events(self) -> int:
        return self.change_events - sum(self.config.continue_from)

    def __iter__(self) -> Iterator[Record]:
        earlier = list(itertools.accumulate(self.config.continue_from))  # where each earlier run ended
        emit_from = earlier[-1] if earlier else 0
        snapshot = self._snapshot()
        if emit_from:
            collections.deque(snapshot, maxlen=0)  # a restarted connector does not snapshot again
        else:
            yield from snapshot
        add_column_at = self.config.column_added_at
        for end in [*earlier, emit_from + self.config.events]:
            while self.change_events < end:
                if (
                    add_column_at is not None
                    and not self.column_added
                    and self.change_events >= add_column_at
                ):
                    self._add_phone_column()
                changes = self._plan(end - self.change_events)
                if changes[0].op == "m" and not changes[0].after["transactional"]:
                    records = self._non_transactional_message(changes[0])
                else:
                    records = self._transaction(changes)
                if end <= emit_from:
                    collections.deque(records, maxlen=0)
                else:
                    yield from records
            if end == emit_from:
                self.counts.clear()  # report what this run emits

    # ------------------------------------------------------------------------------ headers & time
    def _context_headers(self) -> Headers:
        run_id = _uuid7(self._now_us // 1000, self._rng)  # Debezium's runId is a fresh UUIDv7 per run
        return [
            ("__debezium.context.connectorLogicalName", self.prefix.encode()),
            ("__debezium.context.taskId", b"0"),
            ("__debezium.context.connectorName", b"postgresql"),
            ("__debezium.context.runId", str(run_id).encode()),
        ]

    def _advance_clock(self, events: int) -> tuple[int, int]:
        """(commit µs, Debezium processing µs) of the next transaction; commits never go back in time."""
        # Draw the same random numbers with either clock: the content then depends on the seed alone.
        jitter, lag = self._rng.randrange(1000), self._rng.randrange(2_000, 60_000)  # lag: WAL decoding etc.
        if self._clock is None:
            self._now_us += events * self.config.event_interval_us + jitter
            now = self._now_us
        else:
            now = self._clock()
        commit = max(self._last_commit_us + 1, now - lag)
        self._last_commit_us = commit
        return commit, max(now, commit + 1000)

    def _next_lsn(self, low: int, high: int) -> int:
        """Advance the WAL position by a record of `low..high` bytes (WAL records are 8-byte aligned)."""
        self._lsn += 8 * self._rng.randrange(low // 8, high // 8 + 1)
        return self._lsn

    def _next_tx_id(self) -> int:
        # Other sessions (and DDL) consume xids too, so the captured ones have gaps now and then.
        self._tx_id += 1 + (self._rng.randrange(1, 4) if self._rng.random() < 0.05 else 0)
        return self._tx_id

    # ------------------------------------------------------------------------------------- snapshot
    def _snapshot(self) -> Iterator[Record]:
        seeds = seed_rows()
        snapshot_us = self._now_us
        processing_us = snapshot_us + 400_000  # schema discovery and locking come first
        tx_id, lsn = self._tx_id, self._lsn
        sequence = orjson.dumps([None, str(lsn)]).decode()
        for t_index, table in enumerate(TABLES):
            rows = seeds[table.name]
            for r_index, row in enumerate(rows):
                self.inventory.insert(table.name, row)
                source = self._source(
                    table,
                    snapshot_us,
                    tx_id,
                    lsn,
                    sequence,
                    snapshot_marker(t_index, len(TABLES), r_index, len(rows)),
                )
                processing_us += self._rng.randrange(100, 2000)
                yield self._data_record(table.name, "r", None, dict(row), source, None, processing_us)
        # What commits after the snapshot's consistent point commits after the snapshot began.
        self._last_commit_us = max(self._last_commit_us, snapshot_us)

    # ---------------------------------------------------------------------------------- transactions
    def _transaction(self, changes: list[Change]) -> Iterator[Record]:
        tx_id = self._next_tx_id()
        commit_us, processing_us = self._advance_clock(sum(c.events for c in changes))
        # The first data event's LSN: the record right after the previous commit (or the snapshot's
        # consistent point), or further on after other sessions' WAL. Never equal to it: every WAL record
        # has a position of its own, and consumers order versions of a key by LSN.
        if self._rng.random() < 0.5:
            self._lsn += 8
            lsn = self._lsn
        else:
            lsn = self._next_lsn(8, 4096)
        yield self._tx_record("BEGIN", f"{tx_id}:{lsn}", commit_us, None)
        per_table: dict[str, int] = {}
        total = 0
        for index, change in enumerate(changes):
            if index:
                lsn = self._next_lsn(64, 640)
            sequence = orjson.dumps([_text(self._last_commit_lsn), str(lsn)]).decode()
            if change.op == "m":
                total += 1
                block = {"id": f"{tx_id}:{lsn}", "total_order": total, "data_collection_order": 1}
                per_table[""] = 1
                source = self._message_source(commit_us, tx_id, lsn, sequence)
                processing_us += self._rng.randrange(50, 800)
                yield self._message_record(change, source, block, processing_us)
                self._apply(change)
                continue
            for op, before, after, extra in self._events(change):
                if op is None:  # tombstone: same key as the delete, no envelope, no transaction slot
                    yield self._tombstone(change.table, before, extra)
                    continue
                total += 1
                per_table[change.table] = per_table.get(change.table, 0) + 1
                block = {
                    "id": f"{tx_id}:{lsn}",
                    "total_order": total,
                    "data_collection_order": per_table[change.table],
                }
                source = self._source(self._tables[change.table], commit_us, tx_id, lsn, sequence, "false")
                processing_us += self._rng.randrange(50, 800)
                yield self._data_record(change.table, op, before, after, source, block, processing_us, extra)
            self._apply(change)
        commit_lsn = self._next_lsn(48, 320)
        self._last_commit_lsn = commit_lsn
        yield self._tx_record("END", f"{tx_id}:{commit_lsn}", commit_us, per_table)

    def _events(self, change: Change) -> Iterator[tuple[str | None, Row | None, Row | None, Headers]]:
        """(op, before, after, extra headers) per record of a change; op None marks the tombstone."""
        table = self._tables[change.table]
        if change.op == "c":
            yield "c", None, dict(change.after or {}), []
        elif change.op == "t":  # no rows, no key, no tombstone
            yield "t", None, None, []
        elif change.op == "u":
            before = dict(change.before or {}) if table.full_identity else None  # DEFAULT: no old image
            yield "u", before, dict(change.after or {}), []
        elif change.op == "d":
            assert change.before is not None
            yield "d", self._delete_image(table, change.before), None, []
            yield None, change.before, None, []
        else:  # primary-key change: d of the old key, its tombstone, c of the new key, on one LSN
            assert change.before is not None and change.after is not None
            old_key = orjson.dumps({table.key: change.before[table.key]})
            new_key = orjson.dumps({table.key: change.after[table.key]})
            yield "d", self._delete_image(table, change.before), None, [("__debezium.newkey", new_key)]
            yield None, change.before, None, [("__debezium.newkey", new_key)]
            yield "c", None, dict(change.after), [("__debezium.oldkey", old_key)]

    @staticmethod
    def _delete_image(table: Table, row: Row) -> Row:
        """FULL: the old row. DEFAULT: pgoutput logs only the key; Debezium fills the NOT NULL columns with
        zero values and the nullable ones with null (see the corpus's orders@4, addresses@8, products@11)."""
        if table.full_identity:
            return dict(row)
        return {c.name: (row[c.name] if c.name == table.key else c.zero) for c in table.columns}

    def _apply(self, change: Change) -> None:
        if change.op == "m":
            pass
        elif change.op == "t":
            self.inventory.clear(change.table)
        elif change.op == "c":
            self.inventory.insert(change.table, dict(change.after or {}))
        elif change.op == "u":
            self.inventory.update(change.table, change.before or {}, dict(change.after or {}))
        elif change.op == "d":
            self.inventory.delete(change.table, change.before or {})
        else:
            self.inventory.delete(change.table, change.before or {})
            self.inventory.insert(change.table, dict(change.after or {}))
        self.change_events += change.events

    def _add_phone_column(self) -> None:
        """ALTER TABLE customers ADD COLUMN phone VARCHAR(32): nothing is emitted (pgoutput has no DDL), the
        DDL only uses up an xid and some WAL; later customers events simply carry the new optional field."""
        customers = self._tables["customers"].with_column(PHONE)
        self._tables["customers"] = customers
        self._codecs["customers"] = _table_codec(self.prefix, customers, self.config.schemas)
        for row in self.inventory.rows["customers"].values():
            row["phone"] = None
        self._tx_id += 1
        self._next_lsn(4_000, 16_000)
        self.column_added = True

    # -------------------------------------------------------------------------------------- records
    def _source(self, table: Table, at_us: int, tx_id: int, lsn: int, sequence: str, snapshot: str) -> Row:
        return {
            "version": DEBEZIUM_VERSION,
            "connector": "postgresql",
            "name": self.prefix,
            "ts_ms": at_us // 1000,
            "snapshot": snapshot,
            "db": DATABASE,
            "sequence": sequence,
            "ts_us": at_us,
            "ts_ns": at_us * 1000,
            "schema": SCHEMA,
            "table": table.name,
            "txId": tx_id,
            "lsn": lsn,
            "xmin": None,
            "origin": None,
            "origin_lsn": None,
        }

    def _message_source(self, at_us: int, tx_id: int | None, lsn: int, sequence: str) -> Row:
        """A logical decoding message belongs to no table: schema and table are empty strings."""
        return {
            **self._source(self._tables["customers"], at_us, 0, lsn, sequence, "false"),
            "schema": "",
            "table": "",
            "txId": tx_id,
        }

    def _message_record(self, change: Change, source: Row, block: Row | None, processing_us: int) -> Record:
        message = change.after or {}
        value = {
            "op": "m",
            "ts_ms": processing_us // 1000,
            "source": source,
            "transaction": block,
            "message": {
                "prefix": message["prefix"],
                "content": base64.b64encode(message["content"]).decode(),
            },
        }
        self.counts[("message", "transactional" if block else "non-transactional")] += 1
        # Message records carry no headers (the corpus's message topic has none).
        key = self._message_key({"prefix": message["prefix"]})
        return Record(self.message_topic, key, self._message_value(value), [])

    def _non_transactional_message(self, change: Change) -> Iterator[Record]:
        """pg_logical_emit_message(false, ...): no BEGIN/END, txId and transaction block null."""
        commit_us, processing_us = self._advance_clock(1)
        lsn = self._next_lsn(64, 640)
        sequence = orjson.dumps([str(lsn), str(lsn)]).decode()
        yield self._message_record(
            change, self._message_source(commit_us, None, lsn, sequence), None, processing_us
        )
        self._apply(change)

    def _key(self, table: str, row: Row) -> bytes:
        codec = self._codecs[table]
        return codec.key({codec.table.key: row[codec.table.key]})

    def _data_record(
        self,
        table: str,
        op: str,
        before: Row | None,
        after: Row | None,
        source: Row,
        block: Row | None,
        processing_us: int,
        extra_headers: Headers | None = None,
    ) -> Record:
        codec = self._codecs[table]
        payload = {
            "before": before,
            "after": after,
            "source": source,
            "transaction": block,
            "op": op,
            "ts_ms": processing_us // 1000,
            "ts_us": processing_us,
            "ts_ns": processing_us * 1000 + self._rng.randrange(1000),
        }
        self.counts[(table, op)] += 1
        key_row = after if after is not None else before
        key = None if key_row is None else self._key(table, key_row)  # TRUNCATE: null key
        headers = [*extra_headers, *self._headers] if extra_headers else self._headers
        return Record(codec.topic, key, codec.value(payload), headers)

    def _tombstone(self, table: str, row: Row | None, extra_headers: Headers) -> Record:
        assert row is not None
        self.counts[(table, "tombstone")] += 1
        headers = [*extra_headers, *self._headers] if extra_headers else self._headers
        return Record(self._codecs[table].topic, self._key(table, row), None, headers)

    def _tx_record(self, status: str, tx_id: str, commit_us: int, per_table: dict[str, int] | None) -> Record:
        collections = None
        if per_table is not None:
            names = {
                self._tables[t].data_collection
                if t
                else f"{MESSAGE_DATA_COLLECTION}{self._identity_hash()}": n
                for t, n in per_table.items()
            }
            collections = [
                {"data_collection": n, "event_count": names[n]} for n in java_hashmap_order(list(names))
            ]
        value = {
            "status": status,
            "id": tx_id,
            "event_count": None if per_table is None else sum(per_table.values()),
            "data_collections": collections,
            "ts_ms": commit_us // 1000,
        }
        self.counts[("transaction", status)] += 1
        # Transaction metadata records carry no headers (the connector adds context headers to data only).
        return Record(self.transaction_topic, self._tx_key({"id": tx_id}), self._tx_value(value), [])

    def _identity_hash(self) -> str:
        return f"{self._rng.randrange(1, 1 << 31):x}"  # Java's Object.hashCode, as Integer.toHexString

    # -------------------------------------------------------------------------------------- planning
    def _plan(self, budget: int) -> list[Change]:
        """The changes of the next transaction: at most `budget` change events, never empty."""
        kind = self._rng.choices(_KINDS, weights=_WEIGHTS)[0]
        changes = self._planners[kind]()
        if changes is None and kind in SUBSTITUTES:
            changes = self._planners[SUBSTITUTES[kind]]()
        if changes is None or sum(c.events for c in changes) > budget:
            changes = self._plan_restock()  # always possible: products never drop below MIN_ROWS
        assert changes is not None
        return changes

    def _full(self, *tables: str) -> bool:
        return any(len(self.inventory.rows[t]) >= self.config.max_rows for t in tables)

    def _today(self) -> int:
        return self._last_commit_us // DAY_US if self._last_commit_us else self._now_us // DAY_US

    def _new_customer(self) -> Row:
        rng = self._rng
        cid = self.inventory.next_id("customers")
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        row = {
            "id": cid,
            "first_name": first,
            "last_name": last,
            "email": f"{first}.{last}.{cid}@{rng.choice(DOMAINS)}".lower(),
        }
        if self.column_added:
            row["phone"] = self._phone() if rng.random() < 0.8 else None
        return row

    def _phone(self) -> str:
        return f"+1-555-{self._rng.randrange(10_000):04d}"

    def _new_address(self, customer_id: int) -> Row:
        rng = self._rng
        city, state, zip_code = rng.choice(PLACES)
        return {
            "id": self.inventory.next_id("addresses"),
            "customer_id": customer_id,
            "street": f"{rng.randrange(1, 9999)} {rng.choice(STREETS)}",
            "city": city,
            "state": state,
            "zip": zip_code,
            "type": rng.choice(ADDRESS_TYPES),
        }

    def _plan_signup(self) -> list[Change] | None:
        if self._full("customers"):
            return None
        customer = self._new_customer()
        changes = [Change("customers", "c", None, customer)]
        for _ in range(self._rng.choice((0, 1, 1, 2))):
            if not self._full("addresses"):
                changes.append(Change("addresses", "c", None, self._new_address(customer["id"])))
        return changes

    def _plan_place_order(self) -> list[Change] | None:
        if self._full("orders"):
            return None
        customer = self.inventory.choice("customers", self._rng)
        quantity = self._rng.choice(ORDER_SIZES)
        for _ in range(5):  # a few tries to find something in stock
            stock = self.inventory.choice("products_on_hand", self._rng)
            if customer and stock and stock["quantity"] >= quantity:
                order = {
                    "id": self.inventory.next_id("orders"),
                    "order_date": self._today(),
                    "purchaser": customer["id"],
                    "quantity": quantity,
                    "product_id": stock["product_id"],
                }
                return [
                    Change("orders", "c", None, order),
                    _set(stock, "products_on_hand", quantity=stock["quantity"] - quantity),
                ]
        return None

    def _plan_cancel_order(self) -> list[Change] | None:
        order = self.inventory.choice("orders", self._rng)
        if order is None:
            return None
        stock = self.inventory.rows["products_on_hand"].get(order["product_id"])
        if stock is None:  # dropped at a stock take: INSERT ... ON CONFLICT DO UPDATE creates it again
            back = {"product_id": order["product_id"], "quantity": order["quantity"]}
            return [Change("orders", "d", order, None), Change("products_on_hand", "c", None, back)]
        return [
            Change("orders", "d", order, None),
            _set(stock, "products_on_hand", quantity=stock["quantity"] + order["quantity"]),
        ]

    def _plan_amend_order(self) -> list[Change] | None:
        order = self.inventory.choice("orders", self._rng)
        if order is None:
            return None
        quantity = self._rng.choice(ORDER_SIZES)
        stock = self.inventory.rows["products_on_hand"].get(order["product_id"])
        if stock is None:
            return None
        left = stock["quantity"] + order["quantity"] - quantity
        if quantity == order["quantity"] or left < 0:
            return None
        return [_set(order, "orders", quantity=quantity), _set(stock, "products_on_hand", quantity=left)]

    def _plan_restock(self) -> list[Change]:
        product = self.inventory.choice("products", self._rng)
        assert product is not None  # products never drop below MIN_ROWS
        delivered = self._rng.randrange(5, 50)
        stock = self.inventory.rows["products_on_hand"].get(product["id"])
        if stock is None:  # its row went at a stock take: INSERT ... ON CONFLICT DO UPDATE
            row = {"product_id": product["id"], "quantity": delivered}
            return [Change("products_on_hand", "c", None, row)]
        return [_set(stock, "products_on_hand", quantity=stock["quantity"] + delivered)]

    def _plan_bulk_restock(self) -> list[Change] | None:
        # UPDATE products_on_hand SET quantity = quantity + n WHERE product_id IN (...): one tx, many rows.
        picked = {
            s["product_id"]: s
            for s in (
                self.inventory.choice("products_on_hand", self._rng) for _ in range(self._rng.randrange(2, 6))
            )
            if s
        }
        return [_set(s, "products_on_hand", quantity=s["quantity"] + 20) for _, s in sorted(picked.items())]

    def _plan_customer_update(self) -> list[Change] | None:
        customer = self.inventory.choice("customers", self._rng)
        if customer is None:
            return None
        if self.column_added and self._rng.random() < 0.5:
            return [_set(customer, "customers", phone=self._phone())]
        first, last = customer["first_name"], customer["last_name"]
        email = f"{first}.{last}.{customer['id']}@{self._rng.choice(DOMAINS)}".lower()
        return [_set(customer, "customers", email=email)] if email != customer["email"] else None

    def _plan_address_update(self) -> list[Change] | None:
        address = self.inventory.choice("addresses", self._rng)
        if address is None:
            return None
        street = f"{self._rng.randrange(1, 9999)} {self._rng.choice(STREETS)}"
        return [_set(address, "addresses", street=street, type=self._rng.choice(ADDRESS_TYPES))]

    def _plan_product_update(self) -> list[Change] | None:
        product = self.inventory.choice("products", self._rng)
        if product is None:
            return None
        weight = round(self._rng.uniform(0.05, 25.0), 3)
        return [_set(product, "products", weight=weight)]

    def _plan_new_product(self) -> list[Change] | None:
        if self._full("products", "products_on_hand"):
            return None
        name, description = self._rng.choice(PRODUCTS)
        product = {
            "id": self.inventory.next_id("products"),
            "name": name,
            "description": description if self._rng.random() < 0.9 else None,
            "weight": round(self._rng.uniform(0.05, 25.0), 3),
        }
        stock = {"product_id": product["id"], "quantity": self._rng.randrange(0, 100)}
        return [Change("products", "c", None, product), Change("products_on_hand", "c", None, stock)]

    def _plan_remove_address(self) -> list[Change] | None:
        address = self.inventory.choice("addresses", self._rng)
        return None if address is None else [Change("addresses", "d", address, None)]

    def _plan_close_account(self) -> list[Change] | None:
        """Delete a customer with its addresses and orders first (the foreign keys demand that order)."""
        if len(self.inventory.rows["customers"]) <= MIN_ROWS:
            return None
        customer = self.inventory.choice("customers", self._rng)
        assert customer is not None
        inventory = self.inventory
        cid = customer["id"]
        address_ids = inventory.children_of("addresses", "customer_id", cid)
        addresses = [inventory.get("addresses", i) for i in address_ids]
        orders = [inventory.get("orders", i) for i in inventory.children_of("orders", "purchaser", cid)]
        return (
            [Change("addresses", "d", a, None) for a in addresses]
            + [Change("orders", "d", o, None) for o in orders]
            + [Change("customers", "d", customer, None)]
        )

    def _plan_discontinue_product(self) -> list[Change] | None:
        """Delete a product nobody ordered (orders keep their product), stock row first."""
        if len(self.inventory.rows["products"]) <= MIN_ROWS:
            return None
        product = self.inventory.choice("products", self._rng)
        assert product is not None
        if self.inventory.children_of("orders", "product_id", product["id"]):
            return None
        stock = self.inventory.rows["products_on_hand"].get(product["id"])
        if stock is None:  # no stock row since a stock take
            return [Change("products", "d", product, None)]
        return [Change("products_on_hand", "d", stock, None), Change("products", "d", product, None)]

    def _plan_renumber(self) -> list[Change] | None:
        """UPDATE <t> SET id = nextval(...) WHERE id = x on a table nothing references: a PK change."""
        table = self._rng.choice(("orders", "addresses"))
        row = self.inventory.choice(table, self._rng)
        if row is None:
            return None
        return [Change(table, "k", row, {**row, "id": self.inventory.next_id(table)})]

    def _plan_message(self) -> list[Change]:
        """SELECT pg_logical_emit_message(transactional, prefix, content): an application's note."""
        prefix = self._rng.choice(MESSAGE_PREFIXES)
        note = {"note": prefix, "n": self.change_events, "by": self._rng.choice(LAST_NAMES).lower()}
        transactional = self._rng.random() < 0.5
        return [
            Change(
                "",
                "m",
                None,
                {"prefix": prefix, "content": orjson.dumps(note), "transactional": transactional},
            )
        ]

    def _plan_stock_take(self) -> list[Change] | None:
        """TRUNCATE products_on_hand, then the counted stock of every product that has any, in one
        transaction: the stream carries a TRUNCATE (op t, no key, no tombstone) and the rows of products
        counted at zero are gone for good (until a cancelled order or a restock brings one back)."""
        stock = self.inventory.rows["products_on_hand"]
        if len(stock) > MAX_STOCK_TAKE or self.change_events - self._last_stock_take < STOCK_TAKE_SPACING:
            return None
        self._last_stock_take = self.change_events
        counted = [
            {"product_id": key, "quantity": row["quantity"] + self._rng.randrange(0, 3)}
            for key, row in sorted(stock.items())
            if row["quantity"] > 0
        ]
        return [Change("products_on_hand", "t", None, None)] + [
            Change("products_on_hand", "c", None, row) for row in counted
        ]


def _set(row: Row, table: str, **values: Any) -> Change:
    return Change(table, "u", row, {**row, **values})


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


def _uuid7(unix_ms: int, rng: random.Random) -> uuid.UUID:
    random_bits = rng.getrandbits(74)
    value = (unix_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (random_bits >> 62) << 64 | 0b10 << 62
    return uuid.UUID(int=value | (random_bits & ((1 << 62) - 1)))


# ---------------------------------------------------------------------------------- delivery faults
@dataclass
class FaultStats:
    duplicates: int = 0
    late: int = 0
    max_held: int = 0


class DeliveryFaults:
    """At-least-once delivery on top of a record stream, deterministic per seed.

    * duplicates: after a record is sent, with probability `duplicates` one recently sent record is sent
      again, byte for byte (key, value, headers). It is always the *latest* record sent for its key, so a
      redelivery never turns a key's state back to an older version (a tombstone is resent, not its delete).
    * late: a data record is held back, with probability `late`, for 1..`late_window` further records.
      Records of the same key that arrive while it is held queue behind it, so a key's records keep their
      order (they share a partition); only records of *other* keys overtake it. Transaction-topic records
      are never late: BEGIN and END of one transaction are separate keys and must stay in order.
    Memory: at most `recent` remembered records plus the held ones (released within `late_window`).
    """

    def __init__(
        self,
        records: Iterable[Record],
        duplicates: float = 0.0,
        late: float = 0.0,
        seed: int = 0,
        late_window: int = 50,
        recent: int = 256,
    ) -> None:
        self._records = records
        self.duplicates = duplicates
        self.late = late
        self.late_window = late_window
        self._rng = random.Random(seed * 7_919 + 104_729)  # its own stream: faults never change the content
        self._recent: OrderedDict[tuple[str, bytes | None], Record] = OrderedDict()
        self._recent_max = recent
        self._held: list[tuple[int, int, Record]] = []  # heap of (release at input #, arrival #, record)
        self._held_keys: dict[tuple[str, bytes | None], tuple[int, int]] = {}  # key -> (held count, release)
        self.stats = FaultStats()

    def __iter__(self) -> Iterator[Record]:
        for arrival, record in enumerate(self._records):
            yield from self._release(arrival)
            key = (record.topic, record.key)
            if key in self._held_keys:
                self._hold(record, self._held_keys[key][1], arrival)
            elif self.late and _is_data(record) and self._rng.random() < self.late:
                self.stats.late += 1
                self._hold(record, arrival + self._rng.randint(1, self.late_window), arrival)
            else:
                yield from self._send(record)
        yield from self._release(None)

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def remembered(self) -> int:
        return len(self._recent)

    def _hold(self, record: Record, release_at: int, arrival: int) -> None:
        key = (record.topic, record.key)
        count, _ = self._held_keys.get(key, (0, release_at))
        self._held_keys[key] = (count + 1, release_at)
        heapq.heappush(self._held, (release_at, arrival, record))
        self.stats.max_held = max(self.stats.max_held, len(self._held))

    def _release(self, now: int | None) -> Iterator[Record]:
        while self._held and (now is None or self._held[0][0] <= now):
            _, _, record = heapq.heappop(self._held)
            key = (record.topic, record.key)
            count, release_at = self._held_keys[key]
            if count == 1:
                del self._held_keys[key]
            else:
                self._held_keys[key] = (count - 1, release_at)
            yield from self._send(record)

    def _send(self, record: Record) -> Iterator[Record]:
        yield record
        key = (record.topic, record.key)
        self._recent[key] = record
        self._recent.move_to_end(key)
        if len(self._recent) > self._recent_max:
            self._recent.popitem(last=False)
        if self.duplicates and self._rng.random() < self.duplicates:
            self.stats.duplicates += 1
            remembered = list(self._recent.values())
            yield remembered[self._rng.randrange(len(remembered))]


def _is_data(record: Record) -> bool:
    return record.topic.count(".") >= 2  # <prefix>.<schema>.<table>, not <prefix>.transaction


# ---------------------------------------------------------------------------------------------- I/O
@dataclass
class ProduceReport:
    records: int = 0
    per_topic: Counter[str] = field(default_factory=Counter)
    rows_per_topic: Counter[str] = field(default_factory=Counter)  # data records with a value: staging rows
    failed: int = 0
    first_error: str | None = None
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def rows(self) -> int:
        return sum(self.rows_per_topic.values())


class Pacer:
    """Spaces events 1/rate seconds apart on a fixed schedule, so hours of running do not drift. After a
    stall longer than a second it restarts the schedule instead of bursting to catch up."""

    def __init__(self, rate: float, now: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._now = now
        self._start = now()
        self._count = 0

    def delay(self) -> float:
        """Seconds to wait before the next event may go out (and book that event)."""
        if not self._interval:
            return 0.0
        due = self._start + self._count * self._interval
        now = self._now()
        if now - due > 1.0:
            self._start, self._count, due = now, 0, now
        self._count += 1
        return max(0.0, due - now)


def producer_settings(client_config: dict[str, str]) -> dict[str, str]:
    settings = {"linger.ms": "5", "compression.type": "lz4", **producer_config(client_config)}
    # Kafka's Java default partitioner: murmur2 of the key bytes (random only for null keys).
    settings["partitioner"] = "murmur2_random"
    return settings


def produce_records(
    records: Iterable[Record],
    client_config: dict[str, str],
    topics: Sequence[str],
    partitions: int,
    rate: float = 0.0,
    progress_every_s: float = 10.0,
) -> ProduceReport:
    """Pre-create `topics`, produce every record (data records paced at `rate`/s) and flush.

    Ctrl-C stops early; what was produced is still flushed and reported."""
    from confluent_kafka import Producer

    ensure_topics(producer_config(client_config), topics, partitions)
    report = ProduceReport()

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            report.failed += 1
            report.first_error = report.first_error or str(error)

    producer = Producer(producer_settings(client_config))
    pacer = Pacer(rate)
    started = last_progress = time.monotonic()
    # Ctrl-C / SIGINT ends the stream between two records: raised inside the client's poll(), a
    # KeyboardInterrupt comes out as "SystemError: ... returned NULL without setting an exception".
    interrupted = threading.Event()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set()) if in_main_thread else None
    try:
        for record in records:
            if interrupted.is_set():
                raise KeyboardInterrupt
            if record.value is not None and _is_data(record):
                _wait(producer, pacer.delay())
                report.rows_per_topic[record.topic] += 1
            _produce(producer, record, delivered)
            report.records += 1
            report.per_topic[record.topic] += 1
            if time.monotonic() - last_progress >= progress_every_s:
                last_progress = time.monotonic()
                log.info(
                    "produced %d records (%d rows) in %.0f s",
                    report.records,
                    report.rows,
                    last_progress - started,
                )
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    remaining = producer.flush(60)
    report.failed += remaining
    report.elapsed_s = time.monotonic() - started
    return report


def _wait(producer: Any, seconds: float) -> None:
    """Sleep while serving delivery callbacks."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        producer.poll(left)


def _produce(producer: Any, record: Record, on_delivery: Callable[[Any, Any], None]) -> None:
    while True:
        try:
            producer.produce(
                record.topic,
                value=record.value,
                key=record.key,
                headers=record.headers,
                on_delivery=on_delivery,
            )
            break
        except BufferError:  # local queue full: let deliveries drain, then retry
            producer.poll(0.1)
    producer.poll(0)


def wall_clock_us() -> int:
    return time.time_ns() // 1000


def inventory_topics(prefix: str) -> list[str]:
    """The topics Debezium writes for the inventory domain: one per table, transactions, messages."""
    return [f"{prefix}.inventory.{t.name}" for t in TABLES] + [f"{prefix}.transaction", f"{prefix}.message"]
