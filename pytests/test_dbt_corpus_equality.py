"""End to end on every corpus variant: the corpus's own SQL runs in a real PostgreSQL, the variant's events
go through the real broker and ingester, the real `dbt build` passes, and every curated current-state table
equals the PostgreSQL table cell by cell, except where the stream does not carry the value (`exceptions`,
documented in docs/dbt.md, "Where curated cannot equal the source")."""

import os

import pytest
from pgstate import create_database

from conftest import CORPUS, VARIANTS, dbt
from ingest.devtools.compare import Exception_, compare_curated, postgres_tables
from ingest.devtools.corpus import produce, read_variant

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not VARIANTS, reason="corpus not present")]

NAN_ROWS = frozenset({(3,), (103,)})  # c_numeric = 'NaN'
INFINITY_ROW = frozenset({(104,)})  # date, timestamp 'infinity', timestamptz '-infinity'


def exceptions(variant: str, types_file: bool = False) -> list[Exception_]:
    """What the stream of `variant` cannot carry (landed with the corpus database's types file, or without
    one). Each one must be needed: the test fails on an unused one."""
    found = [
        Exception_(
            "type_zoo",
            "c_date",
            "PostgreSQL 'infinity': Debezium sends an int32 day count that is no date (+/-infinity is lost)",
            INFINITY_ROW,
        ),
        Exception_(
            "type_zoo",
            "c_timestamp",
            "PostgreSQL 'infinity': Debezium sends an int64 microsecond count that is no timestamp",
            INFINITY_ROW,
        ),
        Exception_(
            "type_zoo",
            "c_numeric",
            "numeric 'NaN': precise mode sends null, string mode 'NAN', double mode NaN",
            NAN_ROWS,
        ),
    ]
    if variant.startswith("double"):
        found.append(
            Exception_(
                "type_zoo",
                "c_numeric",
                "decimal.handling.mode=double: a numeric without scale arrives as a double (15-17 digits)",
                frozenset({(1,), (104,)}),
            )
        )
    base64_decimals = variant.endswith("precise-noschemas") and "decimalformat" not in variant
    if types_file and base64_decimals:
        found.append(
            Exception_(
                "type_zoo",
                "c_numeric_12_2",
                "one types file holds a column's type now: events sent before `alter column type "
                "numeric(12,2) -> (16,4)` are read with scale 4, a factor 100 off",
                frozenset({(3,), (103,)}),
            )
        )
    elif base64_decimals:
        for column in ("c_numeric_12_2", "c_money"):
            found.append(
                Exception_(
                    "type_zoo",
                    column,
                    "precise mode without schemas: base64 of the unscaled integer, the scale is only in the "
                    "schema, so curated holds NULL",
                    frozenset({(1,), (3,), (103,)}),
                )
            )
    return found


@pytest.fixture(scope="module")
def corpus_database(catalog) -> str:
    """A database holding the state sql/01_setup.sql then sql/02_scenario.sql leave."""
    return create_database(
        catalog.start(),
        f"corpus_{os.getpid()}",
        [CORPUS / "sql" / "01_setup.sql", CORPUS / "sql" / "02_scenario.sql"],
    )


@pytest.fixture(scope="module")
def corpus_final_state(corpus_database):
    return postgres_tables(corpus_database, "inventory")


def test_the_final_state_is_the_corpus_scenarios(corpus_final_state):
    """The PostgreSQL side is real: spot checks from the scenario (so an empty comparison cannot pass)."""
    assert set(corpus_final_state) == {
        "addresses",
        "audit_log",
        "customers",
        "orders",
        "products",
        "products_on_hand",
        "type_zoo",
    }
    on_hand = {r["product_id"]: r["quantity"] for r in corpus_final_state["products_on_hand"].rows}
    assert on_hand == {101: 7, 102: 20}
    assert "zip" not in corpus_final_state["addresses"].columns
    assert {r["id"] for r in corpus_final_state["type_zoo"].rows} == {1, 2, 3, 103, 104}


RUNS = [(variant, False) for variant in VARIANTS]
# Without schemas, also with the types file pulled from the corpus database by the real command.
RUNS += [(variant, True) for variant in VARIANTS if "noschemas" in variant]


@pytest.mark.parametrize(("variant", "types_file"), RUNS, ids=[v + ("+types" if t else "") for v, t in RUNS])
def test_curated_equals_postgres_final_state(
    lake, tmp_path, corpus_database, corpus_final_state, variant, types_file
):
    if types_file:
        types_dir = tmp_path / "types"
        mode = variant.split("-")[0] if variant.split("-")[0] in ("string", "double") else "precise"
        pulled = lake.ingest(
            "types", "pull", "--source-dsn", corpus_database, "--out", str(types_dir),
            "--decimal-handling-mode", mode,
        )  # fmt: skip
        assert "inventory.yml: 7 tables" in pulled.stdout, pulled.stdout
        lake.env["INGEST_TYPES_DIR"] = str(types_dir)
    produce(read_variant(CORPUS / variant, topic_prefix=lake.topic_prefix), lake.settings.kafka.client)
    landed = lake.ingest("run", "--until-caught-up")
    assert ("no types file lists" in landed.stderr) == ("noschemas" in variant and not types_file)
    # Only what it compares (the curated models, their data and unit tests): test_dbt_build builds the
    # serving layer on a corpus; nine full builds cost the CI budget minutes.
    # (cautious: not the tests that also read a serving model, which is not built)
    build = dbt(lake, tmp_path, "build", "--select", "curated", "--indirect-selection", "cautious")
    assert build.returncode == 0, build.stdout[-6000:]
    expected_gaps = exceptions(variant, types_file)
    differences = compare_curated(lake.query, corpus_final_state, expected_gaps)
    assert not differences, "\n".join(differences)
    unused = [f"{e.table}.{e.column}: {e.reason}" for e in expected_gaps if not e.matched]
    assert not unused, "exceptions no longer needed (remove them):\n" + "\n".join(unused)
