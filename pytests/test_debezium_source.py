"""The real source path: PostgreSQL (logical replication) -> the real Debezium connector on Kafka Connect ->
the embedded broker -> the ingester -> `dbt build`; then every curated table equals its PostgreSQL table,
cell by cell. Needs OpenJDK 17 (java + javac) and PostgreSQL binaries; CI installs them (.ci/run)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, seed_dbt_target
from ingest.devtools.compare import compare_tables, postgres_tables
from ingest.devtools.postgres_source import debezium_source, source_exceptions

HAVE_JAVA = shutil.which("java") is not None and shutil.which("javac") is not None
pytestmark = [
    pytest.mark.integration,
    pytest.mark.debezium,
    # On CI a missing JDK is a broken install, not a reason to skip.
    pytest.mark.skipif(not HAVE_JAVA and os.environ.get("CI") != "true", reason="needs OpenJDK 17"),
]


def dbt_build(lake, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    seed_dbt_target(lake, tmp_path / "target")
    command = [str(Path(sys.executable).parent / "dbt"), "build", "--target-path", str(tmp_path / "target")]
    command += ["--log-path", str(tmp_path / "logs")]
    return subprocess.run(command, env=lake.env, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_curated_tables_equal_postgres_after_real_debezium(lake, tmp_path):
    with debezium_source(
        tmp_path / "source", lake.settings.kafka.bootstrap_servers, lake.topic_prefix, statements=150
    ) as source:
        lake.ingest("run", "--until-caught-up")
        build = dbt_build(lake, tmp_path)
        assert build.returncode == 0, build.stdout[-6000:]
        exceptions = source_exceptions()
        con = lake.connect()
        try:

            def compare(tables: list[str] | None = None) -> list:
                pg = postgres_tables(source.postgres.dsn, "inventory", con)
                pg = {name: t for name, t in pg.items() if tables is None or name in tables}
                return compare_tables(lambda sql: con.execute(sql).fetchall(), pg, exceptions)

            differences = compare()
            # The check can fail: one PostgreSQL cell changed after the lake was built (and not ingested)
            # shows up as exactly that cell.
            source.postgres.psql(sql="update inventory.customers set last_name = 'Changed' where id = 1001")
            (changed,) = compare(["customers"])
        finally:
            con.close()
    assert len(changed.messages) == 1 and changed.messages[0].startswith("customers (1001,) last_name:")
    assert {d.table for d in differences} == {
        "addresses", "audit_log", "customers", "orders", "products", "products_on_hand", "type_zoo"
    }  # fmt: skip
    for d in differences:
        assert d.equal, f"{d.table}: " + "\n".join(d.messages[:5])
        assert d.postgres_rows > 0 and len(d.columns) >= 2
    unused = [f"{e.table}.{e.column}: {e.reason}" for e in exceptions if not e.matched]
    assert not unused, "exceptions no longer needed (remove them):\n" + "\n".join(unused)
    # What real Debezium emitted for the workload really landed: a TRUNCATE, multi-table transactions,
    # logical decoding messages, the column added mid-stream.
    ops = dict(lake.query("select _cdc_op, count(*) from staging.inventory__products_on_hand group by 1"))
    assert ops.get("t") == 1 and ops.get("c", 0) > 0 and ops.get("u", 0) > 0
    assert lake.query("select count(*) from lake.staging._cdc_transactions")[0][0] > 10
    assert lake.query("select count(*) from lake.staging._cdc_messages")[0][0] >= 3
    assert lake.query("select count(*) from lake.curated.inventory__customers where phone is not null")[0][0]
    # The keyless table's exact duplicates are there, as several numbered rows.
    duplicates = "select count(*) from lake.curated.inventory__audit_log where _cdc_row_number > 1"
    assert lake.query(duplicates)[0][0] >= 1
