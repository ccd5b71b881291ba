"""The types file: source column types -> the Connect schema the connector sends with schemas on, and
schemaless corpus events decoded with it exactly as their schemas-on twins (same connector run)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest

from conftest import CORPUS, VARIANTS, send
from ingest.core.decode import ChangeRow, DeadLetter, Decoder, RawRecord
from ingest.core.source_types import (
    ConnectorEncoding,
    DeclaredColumn,
    SourceTypes,
    TypesFileError,
    connect_field,
    load_source_types,
    parse_types_file,
    source_types_of,
    split_type,
)
from ingest.devtools.corpus import read_variant

DATA = Path(__file__).parent / "data"
CORPUS_TYPES = DATA / "corpus_inventory_types.yml"
# Changed by the scenario (02_scenario.sql) after events of the old type were sent: the types file holds
# the final type, which a schemaless event of the old type cannot tell apart. Listed in docs/dbt.md.
EVOLVED = {("type_zoo", "c_numeric_12_2"), ("orders", "quantity")}


def types_of(text: str) -> SourceTypes:
    return source_types_of([parse_types_file(text, "test")])


def corpus_types(tmp_path: Path, **encoding: str) -> SourceTypes:
    text = CORPUS_TYPES.read_text()
    for setting, value in encoding.items():
        text = text.replace(f"{setting}: precise", f"{setting}: {value}")
    (tmp_path / "inventory.yml").write_text(text)
    return load_source_types(tmp_path)


@pytest.mark.parametrize(
    ("source_type", "split"),
    [
        ("integer", ("integer", [], 0)),
        ("timestamp(3) without time zone", ("timestamp without time zone", [3], 0)),
        ("numeric(24,4)", ("numeric", [24, 4], 0)),
        ("character varying(50)[]", ("character varying", [50], 1)),
        ("Integer[][]", ("integer", [], 2)),
    ],
)
def test_source_type_names_split_into_base_arguments_and_dimensions(source_type, split):
    assert split_type(source_type) == split


def corpus_connect_fields(variant: str) -> dict[tuple[str, str], dict]:
    """(table, column) -> the Connect field schema of the newest schemas-on event of that table."""
    fields: dict[tuple[str, str], dict] = {}
    for record in read_variant(CORPUS / variant):
        if record.value is None or record.topic.count(".") != 2:
            continue
        schema = orjson.loads(record.value)["schema"]
        row = next(f for f in schema["fields"] if f["field"] in ("after", "before"))
        for column in row["fields"]:
            fields[(record.topic.rsplit(".", 1)[1], column["field"])] = column
    return fields


@pytest.mark.skipif("precise-schemas" not in VARIANTS, reason="corpus not present")
@pytest.mark.parametrize(("variant", "mode"), [("precise-schemas", "precise"), ("double-schemas", "double")])
def test_declared_types_give_the_connect_schema_the_connector_sends(tmp_path, variant, mode):
    parsed = parse_types_file(CORPUS_TYPES.read_text(), "corpus")
    encoding = ConnectorEncoding(**{"decimal.handling.mode": mode})
    sent = corpus_connect_fields(variant)
    compared = 0
    for table, declared in parsed.tables.items():
        for name, column in declared.columns.items():
            field = connect_field(column, encoding)
            assert field is not None, (table, name)
            expected = sent[(table, name)]
            got = field.model_dump(exclude_none=True)
            assert got["type"] == expected["type"], (table, name)
            assert got.get("name") == expected.get("name"), (table, name)
            assert got.get("parameters") == expected.get("parameters"), (table, name)
            assert got["optional"] == expected["optional"], (table, name)
            if "items" in expected:
                assert got["items"]["type"] == expected["items"]["type"], (table, name)
            compared += 1
    assert compared == 56


def test_precision_modes_and_encodings_follow_the_connector_settings():
    def field(source_type: str, **settings: str) -> tuple[str, str | None]:
        schema = connect_field(DeclaredColumn(type=source_type), ConnectorEncoding(**settings))
        assert schema is not None
        return schema.type, schema.name

    assert field("timestamp(6) without time zone") == ("int64", "io.debezium.time.MicroTimestamp")
    assert field("timestamp(0) without time zone") == ("int64", "io.debezium.time.Timestamp")
    connect = {"time.precision.mode": "connect"}
    assert field("timestamp without time zone", **connect) == (
        "int64",
        "org.apache.kafka.connect.data.Timestamp",
    )
    assert field("date", **connect) == ("int32", "org.apache.kafka.connect.data.Date")
    assert field("time(3) without time zone") == ("int32", "io.debezium.time.Time")
    assert field("time(3) without time zone", **{"time.precision.mode": "adaptive_time_microseconds"}) == (
        "int64",
        "io.debezium.time.MicroTime",
    )
    assert field("numeric(10,2)", **{"decimal.handling.mode": "string"}) == ("string", None)
    assert field("interval", **{"interval.handling.mode": "string"}) == (
        "string",
        "io.debezium.time.Interval",
    )
    assert field("bytea", **{"binary.handling.mode": "hex"}) == ("string", None)
    assert field("bit(1)") == ("boolean", None)
    assert field("bit(12)") == ("bytes", "io.debezium.data.Bits")
    assert connect_field(DeclaredColumn(type="point"), ConnectorEncoding()) is None  # left to inference


def decoded(records, source_types: SourceTypes | None = None) -> dict[tuple[str, int], ChangeRow]:
    decoder = Decoder(source_types=source_types)
    rows = {}
    for record in records:
        if record.topic.count(".") != 2 or record.value is None:
            continue
        result = decoder.decode(
            RawRecord(record.topic, record.partition, record.offset, record.key, record.value)
        )
        assert not isinstance(result, DeadLetter), result
        if isinstance(result, ChangeRow):
            rows[(record.topic, record.offset)] = result
    return rows


def equal(a: object, b: object) -> bool:
    return a == b or (a != a and b != b)  # NaN (a real's NaN) equals itself here


@pytest.mark.skipif("precise-noschemas" not in VARIANTS, reason="corpus not present")
@pytest.mark.parametrize(
    ("mode", "schemaless"),
    [
        ("precise", "precise-noschemas"),
        ("double", "double-noschemas"),
        ("precise", "precise-noschemas-decimalformat-numeric"),  # decimals as JSON numbers
    ],
)
def test_schemaless_events_decode_with_the_types_file_as_with_schemas_on(tmp_path, mode, schemaless):
    source_types = corpus_types(tmp_path, **{"decimal.handling.mode": mode})
    with_schemas = decoded(read_variant(CORPUS / f"{mode}-schemas"))
    without = decoded(read_variant(CORPUS / schemaless), source_types)
    inferred = decoded(read_variant(CORPUS / schemaless))
    assert with_schemas.keys() == without.keys()
    compared, differing, differing_inferred = 0, set(), set()
    for position, exact in with_schemas.items():
        row, guess = without[position], inferred[position]
        assert row.schema.mode == "declared"
        table = exact.table.split("__", 1)[1]
        for column in exact.schema.columns:
            typed = row.schema.by_name[column.name]
            same = typed.duckdb_type == column.duckdb_type
            same_value = equal(row.values.get(column.name), exact.values.get(column.name))
            if not (same and same_value):
                differing.add((table, column.name))
            guessed = guess.schema.by_name.get(column.name)
            guessed_type = guessed.duckdb_type if guessed is not None else None
            if guessed_type != column.duckdb_type or not equal(
                guess.values.get(column.name), exact.values.get(column.name)
            ):
                differing_inferred.add((table, column.name))
            compared += 1
    assert compared > 500
    assert differing <= EVOLVED, differing - EVOLVED
    assert len(differing_inferred) >= 15  # what the file changes: inference alone gets these wrong


def test_a_value_that_contradicts_the_declared_type_is_a_dead_letter():
    source_types = types_of(
        "schema: s\ntables:\n  t:\n    columns:\n      id: {type: integer, not_null: true}\n"
        "      born: {type: date}\n      price: {type: 'numeric(38,0)'}\n"
    )
    decoder = Decoder(source_types=source_types)

    def decode(after: dict):
        value = {"op": "c", "after": after, "source": {"schema": "s", "table": "t", "ts_ms": 1}}
        return decoder.decode(RawRecord("p.s.t", 0, 0, None, orjson.dumps(value)))

    largest = 10**38 - 1
    unscaled = largest.to_bytes(17, "big", signed=True)
    import base64

    good = decode({"id": 1, "born": -719162, "price": base64.b64encode(unscaled).decode()})
    assert isinstance(good, ChangeRow) and str(good.values["price"]) == str(largest)
    assert good.values["born"] == -719162  # 0001-01-01: before 1970, as epoch days
    bad = decode({"id": 1, "born": "2024-01-01", "price": None})
    assert isinstance(bad, DeadLetter) and "born" in bad.error
    new_column = decode({"id": 2, "born": None, "price": None, "added_later": "x"})
    assert (
        isinstance(new_column, ChangeRow)
        and new_column.schema.by_name["added_later"].duckdb_type == "VARCHAR"
    )


def test_a_types_file_that_does_not_validate_names_the_file_and_the_field():
    with pytest.raises(TypesFileError, match=r"inventory.yml: tables.t.columns.id.type"):
        parse_types_file(
            "schema: s\ntables:\n  t:\n    columns:\n      id: {not_null: true}\n", "inventory.yml"
        )
    with pytest.raises(TypesFileError, match=r"connector\.decimal\.handling\.mode"):
        parse_types_file("schema: s\nconnector: {decimal.handling.mode: exact}\ntables: {}\n", "x.yml")


@pytest.mark.integration
@pytest.mark.skipif(not (CORPUS / "sql").exists(), reason="corpus not present")
def test_types_pull_writes_the_corpus_databases_types(tmp_path, lake):
    """The real command against a real PostgreSQL holding the corpus database at the end of its scenario
    writes the types file the tests above decode with."""
    from ingest.devtools.postgres_source import SourcePostgres, find_postgres_bin, free_port

    source = SourcePostgres(tmp_path / "pg", find_postgres_bin(), free_port())
    source.start()
    try:
        for script in ("01_setup.sql", "02_scenario.sql"):
            source.psql(file=CORPUS / "sql" / script)
        out = tmp_path / "types"
        dsn = f"postgresql://postgres@127.0.0.1:{source.port}/{source.dsn.split('dbname=')[1].split()[0]}"
        result = lake.ingest("types", "pull", "--source-dsn", dsn, "--schema", "inventory", "--out", str(out))
        assert "inventory.yml: 7 tables" in result.stdout
        wrong = lake.ingest("types", "pull", "--source-dsn", "mysql://x@h/db", check=False)
        assert wrong.returncode == 1 and "only PostgreSQL" in wrong.stderr
    finally:
        source.stop()
    pulled = parse_types_file((out / "inventory.yml").read_text(), "pulled")
    assert pulled == parse_types_file(CORPUS_TYPES.read_text(), "expected")


@pytest.mark.integration
@pytest.mark.skipif("precise-noschemas" not in VARIANTS, reason="corpus not present")
def test_schemaless_events_land_with_the_types_of_schemas_on(tmp_path, lake):
    """Through the real broker and `ingest run` (SQL decoding included): staging gets the column types
    that the same events with schemas on give, and values of the source's types."""
    from ingest.devtools.corpus import produce

    types_dir = tmp_path / "types"
    types_dir.mkdir()
    (types_dir / "inventory.yml").write_text(CORPUS_TYPES.read_text())
    lake.env["INGEST_TYPES_DIR"] = str(types_dir)
    produce(
        read_variant(CORPUS / "precise-noschemas", topic_prefix=lake.topic_prefix), lake.settings.kafka.client
    )
    stderr = lake.ingest("run", "--until-caught-up").stderr
    assert "no types file lists" not in stderr and "columns zip are not typed by the types file" in stderr
    expected: dict[tuple[str, str], str] = {}
    for row in decoded(read_variant(CORPUS / "precise-schemas")).values():
        for column in row.schema.columns:
            expected[(row.table, column.name)] = column.duckdb_type
    landed = {
        (table, column): data_type
        for table, column, data_type in lake.query(
            "select table_name, column_name, data_type from duckdb_columns() "
            "where database_name = 'lake' and schema_name = 'staging' and table_name like 'inventory__%' "
            "and column_name not like '\\_%' escape '\\'"
        )
    }
    assert len(landed) > 50
    assert {k: v for k, v in landed.items() if k in expected and k[1] != "zip"} == {
        k: v for k, v in expected.items() if k in landed and k[1] != "zip"
    }
    assert lake.query(
        "select c_date, c_timestamp3 from lake.staging.inventory__type_zoo where id = 1 limit 1"
    ) == [(dt.date(2024, 2, 29), dt.datetime(2024, 2, 29, 13, 45, 30, 123000))]
    # A column the file does not type is reported until the file is pulled again (here: zip, dropped from
    # the database the file was pulled from, sent by the events written before the drop).
    status = orjson.loads(lake.ingest("status", "--json").stdout)
    untyped = {t["table_name"]: t["untyped_columns"] for t in status["tables"] if t["untyped_columns"]}
    assert untyped == {"inventory__addresses": ["zip"]}
    assert "not in the types file (inferred from values): inventory__addresses.zip" in " ".join(
        lake.ingest("status").stdout.split()
    )
    declared = CORPUS_TYPES.read_text().replace(
        "      type: {type: inventory.address_type,",
        "      zip: {type: character varying(10)}\n      type: {type: inventory.address_type,",
    )
    (types_dir / "inventory.yml").write_text(declared)
    with_zip = next(
        r
        for r in read_variant(CORPUS / "precise-noschemas", topic_prefix=lake.topic_prefix)
        if r.topic.endswith(".addresses") and r.value and b'"zip":"' in r.value
    )
    send(lake, with_zip.topic, [with_zip.value], keys=[with_zip.key])
    lake.ingest("run", "--until-caught-up")
    status = orjson.loads(lake.ingest("status", "--json").stdout)
    assert all(not t["untyped_columns"] for t in status["tables"])


def test_a_file_of_one_server_types_its_topics_and_the_schemas_file_every_other(tmp_path):
    """Two sources with one schema name: `server:` (the connector's topic prefix, `ingest types pull
    --server`) keeps their files apart; a file without it types that schema of every other server."""
    from ingest.core.source_types import TypesFile
    from ingest.ops.types_pull import write_types_files

    columns = "tables:\n  customers:\n    columns:\n      born: {type: %s}\n"
    mysql = parse_types_file("server: otherdb\nschema: inventory\n" + columns % "date", "otherdb")
    everyone = parse_types_file("schema: inventory\n" + columns % "integer", "inventory")
    written = write_types_files({"inventory": mysql}, tmp_path, "test") + write_types_files(
        {"inventory": everyone}, tmp_path, "test"
    )
    assert [p.name for p in written] == ["otherdb__inventory.yml", "inventory.yml"]
    decoder = Decoder(source_types=load_source_types(tmp_path))

    def born(topic: str):
        value = {"op": "c", "after": {"born": 19782}, "source": {"schema": "inventory", "table": "customers"}}
        row = decoder.decode(RawRecord(topic, 0, 0, None, orjson.dumps(value)))
        assert isinstance(row, ChangeRow), row
        return row.schema.by_name["born"].duckdb_type

    assert born("otherdb.inventory.customers") == "DATE"
    assert born("dbserver1.inventory.customers") == "INTEGER"
    assert isinstance(parse_types_file((tmp_path / "otherdb__inventory.yml").read_text(), "x"), TypesFile)
