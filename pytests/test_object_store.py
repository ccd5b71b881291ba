"""The lake beyond one machine: the prod target with its data on an object store.

A real S3 server (SeaweedFS, `ingest/devtools/object_store.py`), the catalog on a real PostgreSQL 15
(Debian's, as `ingest demo-postgres` starts it), `lake.data_path: s3://bucket/prefix`, every setting from
the prod target's environment variables. `ingest generate`, then INGESTERS `ingest run --until-caught-up`
at once, `dbt build`, then an analyst's `ingest sql` in a process of its own: staging holds every record
exactly once, the curated tables equal the generator's own model of the source database, and every
Parquet file is in the bucket, none on local disk."""

import os
import subprocess
import time
import uuid
from datetime import date

import orjson
import pytest

from conftest import (
    REPO,
    Lake,
    assert_staging_exactly_once,
    dbt,
    ingest_command,
    read_topics,
    start_ingest,
)
from ingest.core.config import load_settings
from ingest.devtools.generator import TABLES, GeneratorConfig, InventoryGenerator
from ingest.devtools.object_store import ObjectStore
from ingest.devtools.postgres_source import SourcePostgres, find_postgres_bin, free_port

pytestmark = pytest.mark.integration

# Ingesters landing the same topics at once (the partitions are shared out among them).
INGESTERS = 3
PARTITIONS = 3
EVENTS, SEED = 2000, 61
TABLE_NAMES = [t.name for t in TABLES]


@pytest.fixture(scope="module")
def s3_store(tmp_path_factory):
    store = ObjectStore(tmp_path_factory.mktemp("object-store"), bucket="lake")
    store.start()
    yield store
    store.stop()


@pytest.fixture(scope="module")
def catalog_postgres(tmp_path_factory):
    """The catalog: a PostgreSQL server of its own (Debian's 15 if installed), reached over TCP."""
    postgres = SourcePostgres(tmp_path_factory.mktemp("catalog-postgres"), find_postgres_bin(), free_port())
    postgres.start()
    yield postgres
    postgres.stop()


def prod_lake(broker, store: ObjectStore, postgres: SourcePostgres, tmp_path) -> Lake:
    """The prod target of profiles/ingest.yml and profiles/profiles.yml, configured the way an operator does:
    environment variables only."""
    prefix = f"s{uuid.uuid4().hex[:8]}"
    postgres.psql("postgres", sql=f"create database {prefix}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "LAKE_", "KAFKA_", "DBT_"))}
    env.update(
        {
            "INGEST_TARGET": "prod",
            "DBT_TARGET": "prod",
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "INGEST_TOPICS": rf"^{prefix}\.",
            "INGEST_GROUP_ID": f"{prefix}-group",
            "LAKE_CATALOG_HOST": "127.0.0.1",
            "LAKE_CATALOG_PORT": str(postgres.port),
            "LAKE_CATALOG_USER": "postgres",
            "LAKE_CATALOG_DB": prefix,
            "LAKE_DATA_PATH": store.url(f"{prefix}/data"),
            "LAKE_STATE_DIR": str(tmp_path / "state"),
            **store.env(),
            # the dev broker (Tansu) waits session.timeout.ms/2 on every group join (../shared/parts.md)
            "INGEST_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "INGEST_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
            "INGEST_KAFKA__FETCH_WAIT_MAX_MS": "100",
            "INGEST_BATCH__MAX_MS": "200",
            "DBT_MEMORY_LIMIT": "2GB",
        }
    )
    return Lake(load_settings("prod", project_dir=REPO, environ=env), env, prefix)


def generator_state() -> dict[str, dict]:
    """The source database after the generated stream, from the generator's own model of it."""
    generator = InventoryGenerator(GeneratorConfig(topic_prefix="x", events=EVENTS, seed=SEED))
    for _ in generator:
        pass
    return generator.inventory.rows


def test_generate_ingest_build_and_query_a_lake_on_s3(broker, s3_store, catalog_postgres, tmp_path):
    lake = prod_lake(broker, s3_store, catalog_postgres, tmp_path)
    data_path = lake.settings.lake.data_path
    assert data_path.startswith("s3://lake/") and lake.settings.lake.catalog.startswith("dbname=s")
    lake.ingest(
        "generate", f"--events={EVENTS}", f"--seed={SEED}", "--duplicates=0.02", "--late=0.02",
        f"--partitions={PARTITIONS}", f"--topic-prefix={lake.topic_prefix}", "--simulated-clock",
    )  # fmt: skip

    started = time.monotonic()
    logs = [tmp_path / f"ingest-{n}.log" for n in range(INGESTERS)]
    files = [open(path, "w") for path in logs]  # noqa: SIM115 - closed below
    try:
        runs = [start_ingest(lake, "run", "--until-caught-up", log_file=f) for f in files]
        codes = [run.wait(600) for run in runs]
    finally:
        for f in files:
            f.close()
    landed_s = time.monotonic() - started
    assert codes == [0] * INGESTERS, [path.read_text()[-3000:] for path in logs]
    counts = assert_staging_exactly_once(lake, read_topics(lake))
    assert counts["inventory__orders"] > 0

    build = dbt(lake, tmp_path, "build")
    assert build.returncode == 0, build.stdout[-6000:]

    # An analyst in a process of their own: `ingest sql` on the prod target reads curated from S3.
    query = " union all ".join(
        f"select '{t}' as t, count(*) as n from lake.curated.inventory__{t}" for t in TABLE_NAMES
    )
    analyst = subprocess.run(
        ingest_command("sql", "--json", query),
        env=lake.env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert analyst.returncode == 0, analyst.stderr[-3000:]
    curated_counts = {row["t"]: row["n"] for row in map(orjson.loads, analyst.stdout.splitlines())}
    state = generator_state()
    assert curated_counts == {t: len(state[t]) for t in TABLE_NAMES}

    con = lake.connect()
    try:
        epoch = date(1970, 1, 1)
        for table in TABLE_NAMES:  # cell by cell
            expected = {tuple(sorted(row.items())) for row in state[table].values()}
            names = sorted(next(iter(state[table].values())))
            rows = con.execute(f"select {', '.join(names)} from lake.curated.inventory__{table}").fetchall()
            curated = {
                tuple(
                    (name, (value - epoch).days if isinstance(value, date) else value)
                    for name, value in zip(names, row, strict=True)
                )
                for row in rows
            }
            assert curated == expected, (table, sorted(curated ^ expected)[:4])

        # Every data file of every table is an object in the bucket under the data path.
        in_bucket = {path for (path,) in con.execute(f"select file from glob('{data_path}/**')").fetchall()}
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = 'lake'"
        ).fetchall()
        listed = {
            path
            for schema, table in tables
            for (path,) in con.execute(
                "select data_file from ducklake_list_files('lake', ?, schema => ?)", [table, schema]
            ).fetchall()
        }
        builds = con.execute("select command, status, target from lake.staging._cdc_dbt_builds").fetchall()
        stored_path = con.execute(
            "select value from __ducklake_metadata_lake.ducklake_metadata where key = 'data_path'"
        ).fetchone()
    finally:
        con.close()
    # (a table of a few rows may have none: DuckLake inlines up to 10 rows into the catalog)
    assert all(p.startswith(f"{data_path}/") for p in listed)
    folders = {tuple(p.removeprefix(f"{data_path}/").split("/")[:2]) for p in listed}
    assert {("staging", f"inventory__{t}") for t in TABLE_NAMES} <= folders
    assert {("curated", f"inventory__{t}") for t in TABLE_NAMES} <= folders
    assert "serving" in {schema for schema, _ in folders}
    assert listed <= in_bucket and all(p.endswith(".parquet") for p in in_bucket)
    assert stored_path is not None and stored_path[0].rstrip("/") == data_path
    assert builds == [("build", "success", "prod")]  # the dbt plugin's record of the build
    assert not list(tmp_path.rglob("*.parquet")), "data files on local disk"

    # the S3 secret never shows, in what the ingesters, dbt or the analyst printed
    printed = "".join(path.read_text() for path in [*logs, tmp_path / "logs" / "dbt.log"])
    printed += build.stdout + analyst.stdout + analyst.stderr
    assert s3_store.secret not in printed

    # a wrong secret: the store refuses, the analyst gets one line that does not show what was sent
    wrong = f"wrong-{s3_store.secret}"
    refused = subprocess.run(
        ingest_command("sql", "select count(distinct id) from lake.staging.inventory__orders"),
        env={**lake.env, "LAKE_S3_SECRET": wrong}, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 1 and refused.stderr.startswith("error: "), refused.stderr[-3000:]
    assert len(refused.stderr.splitlines()) == 1 and wrong not in refused.stderr + refused.stdout
    print(f"{INGESTERS} ingester(s) landed {sum(counts.values())} rows on S3 in {landed_s:.1f} s")
