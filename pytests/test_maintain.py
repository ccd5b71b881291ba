"""`ingest maintain`: fewer files, identical contents, also while an ingester writes."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, produce_items
from ingest.core import contract
from ingest.embedded.broker import ensure_topics

pytestmark = pytest.mark.integration


def contents(lake) -> dict[str, list[tuple]]:
    """Every staging table's rows, sorted (the pruned offsets compared by their resume positions)."""
    tables = [
        t
        for (t,) in lake.query(
            "select table_name from duckdb_tables() "
            "where schema_name = 'staging' and table_name != '_cdc_offsets'"
        )
    ]
    result = {t: sorted(map(repr, lake.query(f'select * from lake.staging."{t}"'))) for t in tables}
    result["positions"] = sorted(
        lake.query(
            'select topic, "partition", max(next_offset), max(batch_id) '
            "from lake.staging._cdc_offsets group by all"
        )
    )
    return result


def data_files(lake, rows_tables_only: bool = True) -> int:
    """Data files of the staging tables of rows (flushing the bookkeeping tables' inlined rows adds a file
    to each of them), or of all tables."""
    where = "where not starts_with(table_name, '_')" if rows_tables_only else ""
    return lake.query(f"select sum(file_count) from ducklake_table_info('lake') {where}")[0][0]


def test_maintain_merges_files_prunes_offsets_and_keeps_every_row(lake):
    topic = f"{lake.topic_prefix}.s.items"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=2)
    produce_items(lake, topic, 0, 320)
    # eight batches of 40 records in one run (not eight runs of one batch: the same lake, ~30 s less):
    # one small file per table and offsets per partition for each batch
    lake.env["INGEST_BATCH__MAX_EVENTS"] = "40"
    result = lake.ingest("run", "--until-caught-up")
    del lake.env["INGEST_BATCH__MAX_EVENTS"]
    (batches,) = lake.query("select count(distinct batch_id) from lake.staging._cdc_offsets")[0]
    assert batches >= 8, result.stderr
    before = contents(lake)
    files_before, all_before = data_files(lake), data_files(lake, rows_tables_only=False)
    offsets_rows = lake.query("select count(*) from lake.staging._cdc_offsets")[0][0]
    assert offsets_rows > 2
    data_dir = Path(lake.settings.data_path)
    orphan = data_dir / "main" / "orphan-from-a-killed-writer.parquet"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    lake.query(f"copy (select 1 as x) to '{orphan}' (format parquet)")
    two_hours_ago = time.time() - 7200
    os.utime(orphan, (two_hours_ago, two_hours_ago))
    on_disk_before = len(list(data_dir.rglob("*.parquet")))
    items_before = len(list((data_dir / "staging" / "s__items").glob("*.parquet")))

    result = lake.ingest("maintain", "--older-than", "0s")
    assert "failed" not in result.stdout, result.stdout

    assert contents(lake) == before
    assert lake.query("select count(*) from lake.staging._cdc_offsets") == [(2,)]
    files_after, all_after = data_files(lake), data_files(lake, rows_tables_only=False)
    on_disk_after = len(list(data_dir.rglob("*.parquet")))
    items_after = len(list((data_dir / "staging" / "s__items").glob("*.parquet")))
    print(f"data files {files_before} -> {files_after}, on disk {on_disk_before} -> {on_disk_after}")
    assert files_after < files_before
    # the small files of the rows' table are merged and deleted (flushing the bookkeeping tables' inlined
    # rows writes a file for each of them, so the whole directory need not shrink)
    assert items_after < items_before and on_disk_after <= on_disk_before + len(contract.BOOKKEEPING)
    assert not orphan.exists(), "an orphaned file older than the minimum age must be deleted"
    assert f"data files {all_before} -> {all_after}" in result.stdout
    # ingesting goes on from the pruned offsets: the next records land once, nothing comes back
    produce_items(lake, topic, 1000, 10)
    lake.ingest("run", "--until-caught-up")
    rows = lake.query("select _kafka_partition, _kafka_offset from lake.staging.s__items")
    assert len(rows) == len(set(rows)) == 330


def test_maintain_while_an_ingester_writes_loses_and_doubles_nothing(lake):
    topic = f"{lake.topic_prefix}.s.items"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=2)
    produce_items(lake, topic, 0, 200)
    lake.ingest("run", "--until-caught-up")  # the lake exists before two processes attach it at once
    live = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "run", "--maintain-every", "3s", "--maintain-older-than", "0s"],
        env={**lake.env, "INGEST_BATCH__MAX_MS": "100"},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()
    produced = [200]

    def keep_producing():
        while not stop.is_set():
            produce_items(lake, topic, produced[0], 20)
            produced[0] += 20
            time.sleep(0.1)

    producing = threading.Thread(target=keep_producing)
    producing.start()
    try:
        reports = [lake.ingest("maintain", "--older-than", "0s", check=False) for _ in range(3)]
        time.sleep(4)  # one scheduled run inside the ingester too
    finally:
        stop.set()
        producing.join(60)
    deadline = time.monotonic() + 120
    while (landed := lake.query("select count(*) from lake.staging.s__items")[0][0]) < produced[0]:
        if live.poll() is not None or time.monotonic() >= deadline:
            live.terminate()
            log = live.communicate(timeout=60)[1]
            pytest.fail(
                f"the ingester did not catch up ({landed} of {produced[0]} landed; "
                f"exit {live.returncode}); its log ends:\n{log[-6000:]}"
            )
        time.sleep(0.5)
    live.terminate()
    log = live.communicate(timeout=60)[1]
    assert live.returncode == 0, log[-3000:]
    assert "scheduled maintenance: data files" in log, log[-3000:]
    for report in reports:
        assert report.returncode in (0, 3), report.stderr  # 3: a step left for the next run (reported)
    rows = lake.query("select _kafka_partition, _kafka_offset, id from lake.staging.s__items")
    assert len(rows) == len({(p, o) for p, o, _ in rows}) == produced[0]
    assert sorted(i for _, _, i in rows) == list(range(produced[0]))
