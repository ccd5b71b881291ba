"""dbt-duckdb plugin: lets a plain `dbt build` reach the lake with the same settings as the ingester.

It reads `profiles/ingest.yml` for the profile's target, installs the DuckDB extensions offline, starts the
embedded catalog on `dev`, points the `lake` attachment at the catalog and data path, and serializes dbt
runs on one target: a second `dbt build` waits for the first instead of conflicting with it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from ingest.config import load_settings
from ingest.lake import LAKE, catalog_dsn, connection_config, install_extensions

log = logging.getLogger(__name__)


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.target = str(plugin_config.get("target", "dev"))
        self.serialize = bool(plugin_config.get("serialize_runs", True))
        self._lock_file: Any = None

    def update_connection_config(self, creds: Any, config: dict[str, Any]) -> None:
        settings = load_settings(self.target)
        install_extensions(settings.extension_dir)
        config.update(connection_config(settings))
        if self.serialize:
            self._acquire_run_lock(settings.state_dir / f"dbt-{self.target}.lock")
        dsn = catalog_dsn(settings)
        for attachment in creds.attach or []:
            if attachment.alias == LAKE:
                attachment.path = f"ducklake:postgres:{dsn}"
                attachment.options = {**(attachment.options or {}), "data_path": settings.data_path}

    def _acquire_run_lock(self, path: os.PathLike[str]) -> None:
        """Hold an exclusive lock on the target for the life of this dbt process."""
        if self._lock_file is not None:
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open until the process exits
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"another dbt run holds target '{self.target}' ({path}); waiting for it to finish",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        self._lock_file = handle
