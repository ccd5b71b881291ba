"""`ingest scaffold`: the pure rendering (unit tests), and end to end: a new table landed by the real
ingester, scaffolded into a copy of the dbt project, built by the real `dbt build`."""

import base64
import shutil
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
import yaml

from conftest import REPO, send, with_schema
from ingest.ops.scaffold import (
    StagingTable,
    declared_sources,
    plan_project,
    plan_table,
    render_history_sql,
    write_plan,
)

WIDGETS = StagingTable(
    table_name="shop__widgets",
    topic="dbserver1.shop.widgets",
    source_schema="shop",
    source_table="widgets",
    primary_key=("id",),
    columns=(
        {"name": "id", "type": "INTEGER", "source_type": "int32", "optional": False},
        {"name": "price", "type": "DECIMAL(10,2)", "source_type": "Decimal", "optional": True},
        {"name": "made_at", "type": "TIMESTAMP WITH TIME ZONE", "source_type": "ZonedTimestamp"},
        {"name": "warranty", "type": "INTERVAL", "source_type": "MicroDuration", "optional": True},
    ),
    schema_mode="connect",
)
KEYLESS = StagingTable(
    "shop__events", "dbserver1.shop.events", "shop", "events", (), WIDGETS.columns[1:], "connect"
)


def files(plan) -> dict[str, str]:
    return {str(f.path): f.content for f in plan.files}


def test_a_keyed_table_gets_both_models_the_source_the_contracts_and_the_reconciliation():
    plan = plan_table(WIDGETS, declare_source=True)
    rendered = files(plan)
    assert sorted(rendered) == [
        "models/curated/shop/shop__widgets.sql",
        "models/curated/shop/shop__widgets.yml",
        "models/curated/shop/shop__widgets__history.sql",
        "models/staging/shop__widgets.yml",
        "tests/reconciliation/reconcile_shop__widgets.sql",
    ]
    assert (
        "cdc_history(source('staging', 'shop__widgets'), key='id')"
        in rendered["models/curated/shop/shop__widgets__history.sql"]
    )
    assert "cdc_current(ref('shop__widgets__history'))" in rendered["models/curated/shop/shop__widgets.sql"]
    models = yaml.safe_load(rendered["models/curated/shop/shop__widgets.yml"])["models"]
    current, history = models
    assert current["name"] == "shop__widgets" and history["name"] == "shop__widgets__history"
    assert current["config"] == {"contract": {"enforced": True}}
    columns = {c["name"]: c for c in current["columns"]}
    # types from the staging metadata, in contract spelling; the interval is kept as microseconds
    assert [(c["name"], c["data_type"]) for c in current["columns"][:4]] == [
        ("id", "integer"),
        ("price", "decimal(10,2)"),
        ("made_at", "timestamptz"),
        ("warranty", "bigint"),
    ]
    assert columns["id"]["constraints"] == [{"type": "not_null"}] and columns["id"]["data_tests"] == [
        "unique"
    ]
    assert "Decimal" in columns["price"]["description"]
    assert [c["name"] for c in current["columns"][4:]] == [
        "_cdc_source_ts",
        "_cdc_lsn",
        "_cdc_updated_at",
        "_cdc_op",
        "_cdc_kafka_partition",
        "_cdc_kafka_offset",
        "_cdc_batch_id",
    ]
    assert all(c.get("description") for m in models for c in m["columns"])
    assert {next(iter(t)) for t in history["data_tests"]} == {
        "cdc_unique_combination",
        "cdc_history_is_consistent",
    }
    source = yaml.safe_load(rendered["models/staging/shop__widgets.yml"])["sources"][0]
    table = source["tables"][0]
    assert table["meta"]["kafka_topic"] == "dbserver1.shop.widgets"
    assert table["config"]["loaded_at_field"] == "_ingested_at" and "freshness" in table["config"]


def test_a_keyless_table_gets_a_multiset_current_state_and_a_note():
    plan = plan_table(KEYLESS, declare_source=False)
    assert sorted(files(plan)) == [
        "models/curated/shop/shop__events.sql",
        "models/curated/shop/shop__events.yml",
        "models/curated/shop/shop__events__history.sql",
    ]
    current_sql = files(plan)["models/curated/shop/shop__events.sql"]
    assert "cdc_multiset_current(ref('shop__events__history'))" in current_sql
    assert "incremental_strategy='cdc_apply_multiset'" in current_sql
    assert "key=none" in render_history_sql(KEYLESS)
    assert (
        "'_cdc_row_hash', '_cdc_batch_id', '_cdc_kafka_partition', '_cdc_kafka_offset'"
        in render_history_sql(KEYLESS)
    )
    current, history = yaml.safe_load(files(plan)["models/curated/shop/shop__events.yml"])["models"]
    assert "_cdc_row_hash" in [c["name"] for c in history["columns"]]
    assert {"_cdc_row_hash", "_cdc_row_number"} <= {c["name"] for c in current["columns"]}
    assert current["data_tests"] == [
        {"cdc_unique_combination": {"arguments": {"columns": ["_cdc_row_hash", "_cdc_row_number"]}}}
    ]
    assert any("no primary key" in note and "multiset" in note for note in plan.notes)


def test_contracts_come_from_the_types_file_where_it_lists_the_table(tmp_path):
    """A table landed without schemas (inferred types) gets the source's types, in the source's order, and
    what the file knows besides: the epoch unit of a timestamp(3), enum labels (warning), not null; a staging
    column the file does not list keeps staging's type."""
    from ingest.core.source_types import parse_types_file

    inferred = StagingTable(
        "shop__gadgets",
        "dbserver1.shop.gadgets",
        "shop",
        "gadgets",
        ("id",),
        (
            {"name": "id", "type": "BIGINT", "source_type": "integer (inferred)"},
            {"name": "made_on", "type": "BIGINT", "source_type": "integer (inferred)"},
            {"name": "seen_at", "type": "BIGINT", "source_type": "integer (inferred)"},
            {"name": "extra", "type": "VARCHAR", "source_type": "string (inferred)"},
        ),
        "inferred",
    )
    types = parse_types_file(
        "schema: shop\ntables:\n  gadgets:\n    primary_key: [id]\n    columns:\n"
        "      id: {type: integer, not_null: true}\n"
        "      price: {type: 'numeric(12,2)'}\n"
        "      made_on: {type: date}\n"
        "      seen_at: {type: timestamp(3) without time zone}\n"
        "      mood: {type: shop.mood, enum: [sad, ok]}\n",
        "shop.yml",
    )
    (plan,), _ = plan_project(tmp_path, [inferred], [types])
    current, history = yaml.safe_load(files(plan)["models/curated/shop/shop__gadgets.yml"])["models"]
    columns = {c["name"]: c for c in current["columns"] if not c["name"].startswith("_")}
    assert list(columns) == ["id", "price", "made_on", "seen_at", "mood", "extra"]
    assert {n: c["data_type"] for n, c in columns.items()} == {
        "id": "integer",
        "price": "decimal(12,2)",
        "made_on": "date",
        "seen_at": "timestamp",
        "mood": "varchar",
        "extra": "varchar",
    }
    assert columns["seen_at"]["meta"] == {"epoch_unit": "ms"} and "meta" not in columns["made_on"]
    assert columns["price"]["meta"] == {"cdc_arrives_later": True}  # declared, not landed yet
    assert columns["mood"]["data_tests"] == [
        {"accepted_values": {"arguments": {"values": ["sad", "ok"]}, "config": {"severity": "warn"}}}
    ]
    assert "source type numeric(12,2)." in columns["price"]["description"]
    assert "source type integer, not null" in columns["id"]["description"]
    history_columns = {c["name"]: c for c in history["columns"]}
    assert "data_tests" not in history_columns["mood"]  # a history keeps every version, checked or not
    assert any("types file; not typed by it (staging's types): extra" in n for n in plan.notes)


def test_a_composite_key_is_passed_as_a_list():
    table = StagingTable("s__t", "p.s.t", "s", "t", ("a", "b"), WIDGETS.columns[:2], "connect")
    assert "key=['a', 'b']" in render_history_sql(table)
    current = yaml.safe_load(files(plan_table(table, declare_source=False))["models/curated/s/s__t.yml"])
    assert current["models"][0]["data_tests"] == [
        {"cdc_unique_combination": {"arguments": {"columns": ["a", "b"]}}}
    ]


def test_inferred_types_come_with_a_note():
    table = StagingTable("s__t", "p.s.t", "s", "t", ("id",), WIDGETS.columns[:1], "inferred")
    assert any("without Kafka Connect schemas" in n for n in plan_table(table, declare_source=True).notes)


def test_existing_models_sources_and_files_are_never_overwritten(tmp_path):
    # this project's own models: every corpus table is taken, its source declared
    plans, skipped = plan_project(
        REPO,
        [
            WIDGETS,
            StagingTable(
                "inventory__orders",
                WIDGETS.topic,
                "inventory",
                "orders",
                ("id",),
                WIDGETS.columns,
                "connect",
            ),
        ],
    )
    assert [s.table_name for s in skipped] == ["inventory__orders"]
    assert [p.table.table_name for p in plans] == ["shop__widgets"]
    # the demo's orders model does not describe this table (the widgets' columns): scaffold says so
    (orders,) = skipped
    assert orders.mismatch is not None and "claimed by model inventory__orders__history" in orders.mismatch
    assert "lacks staging's made_at, price, warranty" in orders.mismatch
    assert "has order_date, product_id, purchaser, quantity, which staging has never had" in orders.mismatch
    assert "inventory__orders" in declared_sources(REPO)
    # an existing file stays as it was
    plan = plan_table(WIDGETS, declare_source=True)
    existing = tmp_path / "models" / "curated" / "shop" / "shop__widgets.yml"
    existing.parent.mkdir(parents=True)
    existing.write_text("mine\n")
    written = write_plan(tmp_path, plan)
    assert existing.read_text() == "mine\n"
    assert (
        Path("models/curated/shop/shop__widgets.yml") not in written and len(written) == len(plan.files) - 1
    )


# ------------------------------------------------------------------------------------------- end to end

FIELDS = [
    {"type": "int32", "optional": False, "field": "id"},
    {"type": "string", "optional": True, "field": "name"},
    {
        "type": "bytes",
        "optional": True,
        "name": "org.apache.kafka.connect.data.Decimal",
        "version": 1,
        "parameters": {"scale": "2", "connect.decimal.precision": "10"},
        "field": "price",
    },
    {"type": "int32", "optional": True, "name": "io.debezium.time.Date", "version": 1, "field": "made_on"},
]


def widget_event(op: str, lsn: int, row: dict) -> bytes:
    payload = {
        "before": row if op == "d" else None,
        "after": None if op == "d" else row,
        "source": {
            "ts_ms": 1795241515000 + lsn,
            "snapshot": "false",
            "schema": "shop",
            "table": "widgets",
            "lsn": lsn,
        },
        "op": op,
        "ts_ms": 1795241516000,
    }
    return orjson.dumps(with_schema(payload, FIELDS))


def price(cents: int) -> str:
    """Kafka Connect Decimal: base64 of the big-endian two's-complement unscaled value."""
    return base64.b64encode(cents.to_bytes(4, "big", signed=True)).decode()


def run(command: list[str], lake, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=lake.env, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.integration
def test_scaffold_then_dbt_build_curates_a_new_table(lake, tmp_path):
    topic = f"{lake.topic_prefix}.shop.widgets"
    rows = {
        1: {"id": 1, "name": "bolt", "price": price(125), "made_on": 19782},
        2: {"id": 2, "name": "nut", "price": price(5), "made_on": 19783},
    }
    send(
        lake,
        topic,
        [
            widget_event("c", 10, rows[1]),
            widget_event("c", 11, rows[2]),
            widget_event("u", 12, {**rows[1], "price": price(-250)}),
            widget_event("d", 13, rows[2]),
            widget_event("c", 14, {"id": 3, "name": "washer", "price": None, "made_on": None}),
        ],
        keys=[b'{"id":1}', b'{"id":2}', b'{"id":1}', b'{"id":2}', b'{"id":3}'],
    )
    keyless = f"{lake.topic_prefix}.shop.events"

    def event(op: str, lsn: int, before: str | None, after: str | None) -> bytes:
        images = {"before": before and {"what": before}, "after": after and {"what": after}}
        return orjson.dumps({**images, "op": op, "source": {"ts_ms": 1795241515000 + lsn, "lsn": lsn}})

    # two identical rows, one of them updated (REPLICA IDENTITY FULL sends the old row), another deleted
    keyless_events = [
        event("c", 20, None, "hello"),
        event("c", 21, None, "hello"),
        event("c", 22, None, "bye"),
        event("u", 23, "hello", "hi"),
        event("d", 24, "bye", None),
    ]
    send(lake, keyless, keyless_events, keys=[None] * len(keyless_events))
    lake.ingest("run", "--until-caught-up")

    project = tmp_path / "project"
    project.mkdir()
    for name in ("dbt_project.yml", "macros", "models", "tests", "seeds", "profiles"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / name)
    shutil.copy(REPO / "profiles" / "profiles.yml", project / "profiles.yml")
    ingest = [sys.executable, "-m", "ingest.cli", "scaffold", "--project-dir", str(project)]
    # The keyless table's contract comes from a types file: its order, an enum column staging lacks so far.
    types_dir = tmp_path / "types"
    types_dir.mkdir()
    (types_dir / "shop.yml").write_text(
        "schema: shop\ntables:\n  events:\n    columns:\n      what: {type: text, not_null: true}\n"
        "      kind: {type: shop.kind, enum: [tick, tock]}\n"
    )
    lake.env["INGEST_TYPES_DIR"] = str(types_dir)

    first = run(ingest, lake, REPO)
    assert first.returncode == 0, first.stderr
    assert "wrote models/curated/shop/shop__widgets.sql" in first.stdout
    assert "wrote models/staging/shop__widgets.yml" in first.stdout
    assert "wrote tests/reconciliation/reconcile_shop__widgets.sql" in first.stdout
    assert "shop.events has no primary key: its current state is a multiset" in first.stdout
    assert "wrote models/curated/shop/shop__events.sql" in first.stdout
    assert "shop.events: contract types from the types file" in first.stdout
    events_yaml = (project / "models" / "curated" / "shop" / "shop__events.yml").read_text()
    assert "accepted_values" in events_yaml and "source type shop.kind" in events_yaml
    before = (project / "models" / "curated" / "shop" / "shop__widgets.yml").read_text()

    again = run([*ingest, "--table", "shop.widgets"], lake, REPO)
    assert again.returncode == 0 and "shop__widgets: has models already, left alone" in again.stdout
    assert (project / "models" / "curated" / "shop" / "shop__widgets.yml").read_text() == before

    dbt = str(Path(sys.executable).parent / "dbt")
    build = run(
        [
            dbt,
            "build",
            "--select",
            "curated.shop",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
        ],
        lake,
        project,
    )
    assert build.returncode == 0, build.stdout[-6000:]
    assert "reconcile_shop__widgets" in build.stdout and "unique_shop__widgets_id" in build.stdout
    assert sorted(lake.query("select id, name, price, made_on from lake.curated.shop__widgets")) == [
        (1, "bolt", Decimal("-2.50"), date(2024, 2, 29)),
        (3, "washer", None, None),
    ]
    assert sorted(lake.query("select what from lake.curated.shop__events")) == [("hello",), ("hi",)]
    assert lake.query("select count(*) from lake.curated.shop__events__history")[0][0] == 6

    def build_events() -> list[tuple]:
        lake.ingest("run", "--until-caught-up")
        incremental = run([*build.args[:3], "shop__events__history+", *build.args[4:]], lake, project)
        assert incremental.returncode == 0, incremental.stdout[-6000:]
        return sorted(lake.query("select what, _cdc_row_number from lake.curated.shop__events"))

    # Incremental builds: the last copy of an image removed, exact duplicates, a truncate, and a build that
    # finds nothing new (counting again changes nothing).
    more = [event("d", 25, "hello", None), event("c", 26, None, "again"), event("c", 27, None, "again")]
    send(lake, keyless, more, keys=[None] * len(more))
    assert build_events() == [("again", 1), ("again", 2), ("hi", 1)]
    assert build_events() == [("again", 1), ("again", 2), ("hi", 1)]
    truncate = orjson.dumps({"before": None, "after": None, "op": "t", "source": {"ts_ms": 1, "lsn": 28}})
    send(lake, keyless, [truncate, event("c", 29, None, "fresh")], keys=[None, None])
    assert build_events() == [("fresh", 1)]
