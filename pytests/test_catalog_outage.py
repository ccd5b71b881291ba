"""Catalog outage: the catalog PostgreSQL stops mid-run and comes back. The ingester waits and retries,
says so in its log, loses and duplicates nothing, and goes on landing once the catalog is back.

Two set-ups: an external catalog (prod: the ingester cannot restart it, so it waits for the operator) and
the dev target's embedded catalog (the ingester starts it again itself, as it does at start-up)."""

import time

import pytest

from conftest import assert_staging_exactly_once, read_topics, start_generator, start_ingest, wait_for
from ingest.embedded.catalog import EmbeddedCatalog

pytestmark = pytest.mark.integration

OUTAGE_S = 20  # longer than the old bounded retry budget (~13 s): the wait must be open-ended


def landed(log: str) -> int:
    return log.count(" landed: ")


@pytest.mark.parametrize("catalog_kind", ["external", "embedded"])
def test_catalog_restart_mid_run_loses_nothing_and_says_what_happens(lake, state_dir, tmp_path, catalog_kind):
    catalog = EmbeddedCatalog(state_dir, lake.settings.lake.catalog_database)
    env = {}
    if catalog_kind == "external":  # a libpq connection string, as a prod target has
        env["INGEST_LAKE__CATALOG"] = catalog.start()
    generator = start_generator(lake, 6_000, 300, "--partitions", "2", "--seed", "5")
    log_path = tmp_path / "ingest.log"
    with open(log_path, "w") as log_file:
        ingester = start_ingest(lake, "run", env=env, log_file=log_file)
        try:
            wait_for(lambda: landed(log_path.read_text()) >= 3, 60, "the first batches", log_path, ingester)
            assert catalog.stop()
            stopped_at = time.monotonic()
            if catalog_kind == "external":
                time.sleep(OUTAGE_S)
                during = log_path.read_text()
                assert landed(during) == landed(log_path.read_text())
                catalog.start()
            wait_for(
                lambda: "reachable again" in log_path.read_text(),
                180,
                "a batch after the catalog came back",
                log_path,
                ingester,
            )
            back_after = time.monotonic() - stopped_at
            assert ingester.poll() is None, "the ingester gave up during the outage"
            output, _ = generator.communicate(timeout=120)
            assert generator.returncode == 0, output
        finally:
            ingester.terminate()
            ingester.wait(60)
    log = log_path.read_text()
    assert ingester.returncode == 0, log[-3000:]
    assert "the lake's catalog is unreachable, cannot land a batch" in log
    assert "nothing is lost" in log
    assert "the lake's catalog is reachable again after" in log
    if catalog_kind == "external":
        assert log.count("catalog still unreachable after") >= 3, "the wait is not reported while it lasts"
        assert back_after >= OUTAGE_S
    else:
        assert "started the embedded catalog PostgreSQL" in log
    lake.ingest("run", "--until-caught-up")
    counts = assert_staging_exactly_once(lake, read_topics(lake))
    print(f"{catalog_kind}: landing resumed {back_after:.1f} s after the catalog stopped; {counts}")


def test_a_commit_whose_answer_was_lost_is_not_landed_twice(lake):
    """The catalog dies after COMMIT reached it but before the answer came back: the retry must see that the
    batch is in the lake (its offsets are) instead of landing it a second time."""
    import duckdb
    import orjson

    from ingest.core.batch import Batch
    from ingest.core.decode import Decoder, RawRecord
    from ingest.core.sink import LakeSink

    sink = LakeSink(lake.connect)
    sink.open()
    decoder = Decoder()
    batch = Batch(1)
    for offset in range(3):
        value = {"op": "c", "after": {"id": offset}, "source": {"lsn": offset, "ts_ms": 1}}
        batch.add(decoder.decode(RawRecord("p.s.items", 0, offset, b"{}", orjson.dumps(value))))
    commit_once = sink._write_once
    calls = []

    def commit_then_lose_the_answer(b, started=None):
        calls.append(b.batch_id)
        commit_once(b, started)
        if len(calls) == 1:
            raise duckdb.IOException("server closed the connection unexpectedly")

    sink._write_once = commit_then_lose_the_answer
    try:
        sink.write(batch)
    finally:
        sink.close()
    assert calls == [1], "the retry landed the batch again"
    assert lake.query("select count(*), count(distinct id) from lake.staging.s__items") == [(3, 3)]
