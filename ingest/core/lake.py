"""The DuckLake lake: offline extension set-up, connections with the lake attached, SQL identifier quoting.

Every process (ingester, dbt, `ingest sql`) attaches the same lake as `lake`. DuckDB never downloads here:
the official extension builds come from PyPI wheels and are installed once into a project-local directory.
"""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ingest.core.config import IngestSettings

log = logging.getLogger(__name__)

LAKE = "lake"
EXTENSIONS = {
    "ducklake": "duckdb_extension_ducklake",
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "httpfs": "duckdb_extension_httpfs",  # a data_path on S3
}
S3_SECRET = "lake_s3"


def quote_ident(name: str) -> str:
    """Quote an identifier for DuckDB; identifiers from events always pass through here."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def qualified(schema: str, table: str) -> str:
    return f"{LAKE}.{quote_ident(schema)}.{quote_ident(table)}"


def install_extensions(extension_dir: Path) -> None:
    """Install the DuckLake, PostgreSQL and httpfs extensions from their PyPI wheels (idempotent, offline)."""
    version = duckdb.__version__
    if all(any(extension_dir.glob(f"v{version}/*/{name}.duckdb_extension")) for name in EXTENSIONS):
        return
    extension_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        config={"extension_directory": str(extension_dir), "autoinstall_known_extensions": False}
    )
    try:
        for name, package in EXTENSIONS.items():
            module_file = importlib.import_module(package).__file__
            assert module_file is not None, package  # a regular package, from its wheel
            source = Path(module_file).parent / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
            con.execute(f"install {quote_literal(str(source))}")
    finally:
        con.close()


def attach_sql(settings: IngestSettings, dsn: str) -> str:
    return (
        f"attach if not exists {quote_literal('ducklake:postgres:' + dsn)} as {LAKE} "
        f"(data_path {quote_literal(settings.data_path)})"
    )


def s3_secret_sql(settings: IngestSettings) -> str:
    """`create secret` giving DuckDB's httpfs the lake's S3 credentials, scoped to the data path's bucket.

    A temporary secret (this connection's DuckDB instance only): nothing is written to disk. The settings
    have been checked already (`config.load_settings` refuses an s3:// data path without credentials)."""
    s3 = settings.lake.s3
    bucket = "s3://" + settings.lake.data_path.removeprefix("s3://").split("/", 1)[0]
    options = {
        "key_id": s3.key_id,
        "secret": s3.secret.get_secret_value(),
        "region": s3.region,
        "url_style": s3.url_style,
        "use_ssl": "true" if s3.use_ssl else "false",
        "scope": bucket,
    }
    if s3.endpoint:
        options["endpoint"] = s3.endpoint
    listed = ", ".join(f"{key} {quote_literal(value)}" for key, value in options.items())
    return f"create or replace secret {S3_SECRET} (type s3, {listed})"


def prepare_connection(con: duckdb.DuckDBPyConnection, settings: IngestSettings) -> None:
    """What a connection needs before it attaches the lake: the S3 secret when the data is on S3, and no
    progress bar (DuckDB draws one on stdout for a query over 2 s: `ingest sql --json` printed it before
    its rows; a session setting, DuckDB refuses it in the connection's config)."""
    con.execute("set enable_progress_bar = false")
    if settings.on_s3:
        con.execute(s3_secret_sql(settings))


def connection_config(settings: IngestSettings) -> dict[str, str | bool | int | float | list[str]]:
    return {
        "extension_directory": str(settings.extension_dir),
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "true",
    }


def insert_arrow(
    con: duckdb.DuckDBPyConnection,
    target: str,
    arrow: pa.Table,
    casts: dict[str, str] | None = None,
    extra: str | None = None,
) -> None:
    """`insert into target by name select ... from arrow`, applying per-column SQL conversions (`casts`,
    "{}" standing for the column) and `extra` select items (what SQL fills, e.g. `now() as landed_at`)."""
    casts = casts or {}
    select = [
        f"{casts[name].format(quote_ident(name))} as {quote_ident(name)}"
        if name in casts
        else quote_ident(name)
        for name in arrow.column_names
    ]
    if extra:
        select.append(extra)
    view = "_insert_arrow"
    con.register(view, arrow)
    try:
        con.execute(f"insert into {target} by name select {', '.join(select)} from {view}")
    finally:
        con.unregister(view)


def scalar(con: duckdb.DuckDBPyConnection, sql: str, parameters: list[Any] | None = None) -> Any:
    """The one value of a query that returns one row (an aggregate)."""
    row = con.execute(sql, parameters).fetchone()
    assert row is not None, sql  # an aggregate without group by always returns a row
    return row[0]


def connect(settings: IngestSettings, dsn: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as `lake` and the staging schema present.

    `dsn`: the catalog's libpq connection string (`ingest.embedded.catalog.catalog_dsn` resolves a target's,
    starting the embedded catalog where the target uses one)."""
    install_extensions(settings.extension_dir)
    if "://" not in settings.lake.data_path:
        Path(settings.data_path).mkdir(parents=True, exist_ok=True)
    for attempt in range(1, ATTACH_ATTEMPTS + 1):
        con = duckdb.connect(config=connection_config(settings))
        try:
            prepare_connection(con, settings)
            con.execute(attach_sql(settings, dsn))
            con.execute(f"use {LAKE}")
            return con
        except duckdb.Error as error:
            con.close()
            # Two processes attaching a new catalog at once both create DuckLake's metadata tables; the
            # loser fails on PostgreSQL's unique index. The winner made them: attaching again finds them.
            if attempt == ATTACH_ATTEMPTS or not _lost_catalog_creation(error):
                raise
            time.sleep(0.2 * attempt)
        except BaseException:
            con.close()
            raise
    raise AssertionError("unreachable")


ATTACH_ATTEMPTS = 5


def _lost_catalog_creation(error: duckdb.Error) -> bool:
    text = str(error)
    return "Failed to initialize DuckLake" in text and (
        "duplicate key value" in text or "already exists" in text
    )
