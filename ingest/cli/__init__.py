"""The `ingest` command line: one module per command group, wired onto the one Typer app of `app.py`.

Importing a group's module registers its commands; the order of the imports is the order of `ingest --help`.
"""

# isort: off
from ingest.cli.app import app
from ingest.cli import run  # run
from ingest.cli import query  # status, sql
from ingest.cli import embedded  # broker, catalog, down
from ingest.cli import devtools  # demo, demo-postgres, produce-corpus, generate
from ingest.cli import upkeep  # scaffold, maintain
from ingest.cli import repair  # dead-letters, replay

# isort: on

__all__ = ["app", "devtools", "embedded", "main", "query", "repair", "run", "upkeep"]


def main() -> None:  # pragma: no cover - console entry point
    app()
