"""ingest/core/contract.py is the one definition of the staging metadata columns and bookkeeping tables: what
the sink creates, both decoders produce, the dbt macros read and the docs describe must all agree with it."""

import re
from pathlib import Path

import duckdb
import pyarrow as pa
import yaml

from ingest.core import contract
from ingest.core.batch import Batch
from ingest.core.decode import Decoder, RawRecord
from ingest.core.sink import BOOKKEEPING_DDL

REPO = Path(__file__).resolve().parent.parent
MACROS = sorted((REPO / "macros" / "cdc").glob("*.sql"))
# A staging metadata column or a CDC column the macros make of one (`_kafka_offset as _cdc_kafka_offset`).
METADATA_LIKE = re.compile(r"\b(_cdc_\w+|_kafka_\w+|_batch_id|_ingested_at)\b")
# `cast(null as <type>) as <name>`: cdc_history's stand-in for a staging table not created yet, which lists
# every metadata column the macros read from staging, with its type.
NULL_COLUMN = re.compile(r"cast\(null as ([a-z ]+(?:\[\])?|[a-z]+ \[\])\) as (\w+)")


def _type(text: str) -> str:
    return re.sub(r"\s+", "", text).upper()


def macro_staging_columns() -> dict[str, str]:
    """The macros' metadata column list: {name: type} of cdc_history's stand-in for staging."""
    text = (REPO / "macros" / "cdc" / "cdc_history.sql").read_text()
    return {name: _type(t) for t, name in NULL_COLUMN.findall(text) if METADATA_LIKE.fullmatch(name)}


def macro_defined_columns() -> set[str]:
    """CDC columns the macros make themselves: aliases (`as _cdc_batch_id`) and names in Jinja literals."""
    text = "\n".join(p.read_text() for p in MACROS)
    aliases = set(re.findall(r"\bas (_cdc_\w+)", text))
    literals = set(re.findall(r"'(_cdc_\w+)'", text))
    return aliases | literals


def test_the_macros_read_metadata_columns_as_the_contract_defines_them():
    columns = macro_staging_columns()
    assert len(columns) >= 8, "cdc_history's stand-in for staging was not found"
    types = {c.name: _type(c.duckdb_type) for c in contract.STAGING_METADATA}
    types[contract.BEFORE_IMAGE] = _type(contract.BEFORE_IMAGE_TYPE)  # only in tables without a key
    for name, data_type in columns.items():
        assert name in types, f"the macros read {name}, which staging does not have (contract.py)"
        assert data_type == types[name], f"{name}: {data_type} in the macros, {types[name]} in contract.py"


def test_every_metadata_column_the_macros_read_is_in_their_list():
    """A macro that reads a staging metadata column not in cdc_history's list (or a column the contract
    renamed) fails here, not on a table the ingester has not created yet."""
    listed = set(macro_staging_columns())
    curated = macro_defined_columns() - listed  # e.g. _cdc_kafka_offset, _cdc_is_applied
    for path in MACROS:
        for name in set(METADATA_LIKE.findall(path.read_text())):
            assert name in listed or (name in curated and name not in contract.METADATA_NAMES), (
                f"{path.name} reads {name}: not a staging column cdc_history lists"
            )


def test_the_sink_creates_staging_and_bookkeeping_tables_as_the_contract_defines_them():
    con = duckdb.connect()
    con.execute("attach ':memory:' as lake")
    for ddl in BOOKKEEPING_DDL:
        con.execute(ddl)
    con.execute(f"create table lake.staging.t (image_column bigint, {', '.join(contract.metadata_ddl())})")
    tables = [*contract.BOOKKEEPING, contract.Table("t", "", contract.STAGING_METADATA)]
    for table in tables:
        got = con.execute(
            "select column_name, data_type, is_nullable from duckdb_columns() "
            "where database_name = 'lake' and table_name = ? and column_name <> 'image_column' "
            "order by column_index",
            [table.name],
        ).fetchall()
        expected = [(c.name, c.duckdb_type, c.nullable) for c in table.columns]
        aliases = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}
        assert got == [(n, aliases.get(t, t), null) for n, t, null in expected], table.name


def test_python_decoded_rows_carry_the_decoded_metadata_in_contract_types():
    decoder, batch = Decoder(), Batch(7)
    value = b'{"op":"c","source":{"lsn":5,"ts_us":1,"txId":3},"before":null,"after":{"id":1}}'
    batch.add(decoder.decode(RawRecord("p.s.t", 0, 0, None, value, timestamp_ms=2)))
    batch.close()
    arrow = batch.segments["s__t"][0].landing_table(7)
    fields = [arrow.schema.field(c.name) for c in (*contract.DECODED_METADATA, contract.BATCH_ID)]
    assert [(f.name, f.type) for f in fields] == [
        (c.name, c.arrow_type) for c in (*contract.DECODED_METADATA, contract.BATCH_ID)
    ]
    assert arrow.column_names == ["id", *contract.DECODED_NAMES, "_batch_id"]
    assert arrow.schema.field("_cdc_source_ts").type == pa.timestamp("us", tz="UTC")


def test_the_docs_and_the_staging_sources_list_the_contract():
    doc = (REPO / "docs" / "staging-contract.md").read_text()
    assert "ingest/core/contract.py" in doc
    rows = re.findall(r"^\| `(_\w+)` \| ([a-z\[\]]+) \|", doc, re.M)
    expected = [(c.name, _type(c.duckdb_type)) for c in contract.STAGING_METADATA]
    assert [(n, _type(t)) for n, t in rows] == expected
    for table in contract.BOOKKEEPING:
        assert f"`{table.name}`" in doc, table.name
    sources = yaml.safe_load((REPO / "models" / "staging" / "sources.yml").read_text())
    for table in sources["sources"][0]["tables"]:
        names = [c["name"] for c in table["columns"] if METADATA_LIKE.fullmatch(c["name"])]
        assert names == list(contract.METADATA_NAMES), table["name"]
