"""Lake-wide work done once however many ingesters run: continuous dbt builds and scheduled maintenance.

Each piece of work has a lease in `staging._cdc_leases` (ingest/core/ownership.py): a member does the work
only while it holds the lease, renews it each time, and gives it back when it stops. A member that goes
away without giving it back (SIGKILL, a lost machine) loses it when it expires; the next member to ask
takes it over. Taking a lease replaces its row (a lease never taken gets an expired one first), so
two members taking it at once conflict in DuckLake and only one wins.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import duckdb

from ingest.core.contract import FENCE, LEASES
from ingest.core.lake import scalar
from ingest.core.ownership import LEASES_TABLE, Member, lease_holder, release_lease, take_lease

log = logging.getLogger(__name__)

DBT_BUILDS = "dbt-builds"
MAINTENANCE = "maintenance"


class LakeLease:
    """One piece of lake-wide work for one member; each call opens a short connection of its own."""

    def __init__(
        self, connect: Callable[[], duckdb.DuckDBPyConnection], name: str, member: Member, seconds: float
    ) -> None:
        self.connect = connect
        self.name = name
        self.member = member
        self.seconds = seconds
        self.held = False
        self.lake_batch_id = 0  # the lake's last batch when the lease was last taken (any member's)

    def take(self) -> bool:
        """Take or renew the lease; False while another member holds it (or the lake is unreachable)."""
        try:
            con = self.connect()
        except duckdb.Error as error:
            log.warning("could not ask for the %s lease: %s", self.name, error)
            return False
        try:
            con.execute("create schema if not exists lake.staging")
            con.execute(LEASES.ddl)
            held = take_lease(con, LEASES_TABLE, self.name, self.member, self.seconds)
            if held:
                con.execute(FENCE.ddl)
                self.lake_batch_id = int(
                    scalar(con, f"select coalesce(max(batch_id), 0) from {FENCE.qualified}")
                )
            if held != self.held:
                if held:
                    log.info("this member now does the lake's %s (lease %.0f s)", self.name, self.seconds)
                else:
                    holder = lease_holder(con, LEASES_TABLE, self.name)
                    log.info("another member (%s) does the lake's %s", holder, self.name)
            self.held = held
            return held
        except duckdb.Error as error:
            # e.g. members starting on a new lake at once all create the table; DuckLake lets one win and
            # fails the others' commit. Nothing is taken: ask again next time.
            log.warning("could not ask for the %s lease: %s", self.name, str(error).strip().splitlines()[0])
            return False
        finally:
            con.close()

    def release(self) -> None:
        if not self.held:
            return
        with contextlib.suppress(duckdb.Error):
            con = self.connect()
            try:
                release_lease(con, LEASES_TABLE, self.name, self.member)
            finally:
                con.close()
        self.held = False
