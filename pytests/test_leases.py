"""Lake-wide work once (continuous builds, maintenance): a lease in the lake's `_cdc_leases` has one holder
at a time, is renewed and given back, and passes to another member when its holder went away without
giving it back (SIGKILL, a lost machine). Real lake, leases taken as the members take them."""

import threading
import time

import duckdb
import pytest

from ingest.core.ownership import Member
from ingest.ops.leases import LakeLease

pytestmark = pytest.mark.integration


def member(name: str) -> Member:
    return Member("group", f"run-{name}", "host", 1)


def test_a_lease_has_one_holder_and_passes_on_when_released_or_expired(lake):
    lease_s = 6
    a = LakeLease(lake.connect, "dbt-builds", member("a"), seconds=lease_s)
    b = LakeLease(lake.connect, "dbt-builds", member("b"), seconds=lease_s)
    assert a.take()
    assert not b.take()
    assert a.take(), "the holder renews its lease"
    a.release()
    # b's lease runs from its transaction's start, between these two instants
    asked_at = time.monotonic()
    assert b.take(), "a released lease is free at once"
    answered_at = time.monotonic()
    # b goes away without a word: its lease holds until it expires, then a takes the work over
    while time.monotonic() < asked_at + lease_s / 2:  # a take opens a connection: ~0.5 s, more under load
        assert not a.take(), "taken over before the holder's lease expired"
        time.sleep(0.2)
    time.sleep(max(0.0, answered_at + lease_s - time.monotonic()))
    assert a.take(), "the lease of a member that went away was not taken over once it expired"
    assert not b.take(), "the member that came back holds it too"


def take_at_once(leases: list[LakeLease]) -> list[bool]:
    start = threading.Barrier(len(leases))
    taken = [False] * len(leases)

    def take(i: int) -> None:
        start.wait()
        taken[i] = leases[i].take()

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(leases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return taken


def test_members_asking_for_a_new_lease_at_the_same_moment_get_one_holder(lake):
    """The first take of a lease: nobody's row exists yet, so the takers must conflict on something."""
    for round_ in range(4):
        leases = [LakeLease(lake.connect, f"work-{round_}", member(str(i)), seconds=60) for i in range(3)]
        taken = take_at_once(leases)
        assert sum(taken) <= 1, f"round {round_}: {taken} took the lease at once"
        # a member that lost the race sees the winner on its next try
        again = [lease.take() for lease in leases]
        assert sum(again) == 1, f"round {round_}: {again} hold the lease (first takes: {taken})"


def fake_dbt(tmp_path, name: str):
    calls = tmp_path / f"builds-{name}"
    script = tmp_path / f"dbt-{name}"
    script.write_text(f"#!/bin/sh\necho build >> {calls}\nsleep 0.1\n")
    script.chmod(0o755)
    return script, calls


def builds(calls) -> int:
    return len(calls.read_text().split()) if calls.exists() else 0


def test_continuous_builds_of_two_members_run_on_one_and_pass_on_when_it_dies(lake, tmp_path):
    from ingest.ops.dbt_runner import ContinuousBuilds

    lease_s = 4
    runners, calls = {}, {}
    for name in ("a", "b"):
        script, calls[name] = fake_dbt(tmp_path, name)
        lease = LakeLease(lake.connect, "dbt-builds", member(name), seconds=lease_s)
        runners[name] = ContinuousBuilds(lake.settings, interval=0.3, dbt_executable=str(script), lease=lease)
    for runner in runners.values():
        runner.start()
    try:
        deadline = time.monotonic() + 30
        while not any(builds(c) for c in calls.values()):
            assert time.monotonic() < deadline, "neither member built"
            for runner in runners.values():
                runner.notify_landed()
            time.sleep(0.3)
        for _ in range(6):  # batches keep landing on both members
            for runner in runners.values():
                runner.notify_landed()
            time.sleep(0.3)
        counts = {name: builds(c) for name, c in calls.items()}
        assert sorted(counts.values())[0] == 0, f"both members built: {counts}"
        holder = max(counts, key=counts.__getitem__)
        other = "b" if holder == "a" else "a"
        # the holder dies without giving the lease back (SIGKILL): its loop ends, the lease stays in the lake
        runners[holder].lease.release = lambda: None
        died_at = time.monotonic()
        runners[holder].stop()
        deadline = died_at + lease_s + 30
        while not builds(calls[other]):
            assert time.monotonic() < deadline, "the other member never took the builds over"
            time.sleep(0.2)
        took_over_after = time.monotonic() - died_at
        assert took_over_after >= lease_s - 1.5, f"taken over after {took_over_after:.1f} s"
    finally:
        for runner in runners.values():
            runner.stop()


class _RefusingCreate:
    """A lake connection whose `create table` fails as DuckLake fails the loser of two creates at once."""

    def __init__(self, con) -> None:
        self._con = con

    def execute(self, sql: str, *args):
        if sql.lstrip().lower().startswith("create table"):
            raise duckdb.TransactionException(
                "Failed to commit DuckLake transaction. Transaction conflict - attempting to create table "
                '"_cdc_leases" in schema "staging" - but this table has been created by another transaction'
            )
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._con, name)


def test_a_lake_refusing_the_lease_tables_is_asked_again_not_a_dead_thread(lake, caplog):
    """Members starting at once on a new lake all create `_cdc_leases`; the losers' take() must say no and
    ask again (it raised, and the continuous-builds thread died: CI, 2026-12-03)."""
    refused = LakeLease(lambda: _RefusingCreate(lake.connect()), "dbt-builds", member("a"), seconds=5)
    assert refused.take() is False
    assert "could not ask for the dbt-builds lease" in caplog.text
    assert LakeLease(lake.connect, "dbt-builds", member("a"), seconds=5).take(), "the next ask takes it"
