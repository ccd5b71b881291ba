"""The `ingest` command line: graceful stop, `ingest sql`, topic kinds that are skipped."""

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, produce_items
from ingest.core.decode import Decoder, RawRecord, Skipped, classify_topic
from ingest.embedded.broker import ensure_topics


def test_topic_kinds_follow_debezium_naming():
    assert classify_topic("dbserver1.inventory.customers").table == "inventory__customers"
    assert classify_topic("dbserver1.transaction").kind == "transaction"
    assert classify_topic("dbserver1.message").kind == "message"
    assert classify_topic("__debezium-heartbeat.dbserver1").kind == "heartbeat"
    assert classify_topic("dbserver1").kind == "schema_change"
    assert classify_topic("prefix.db.schema.table").table == "db__schema__table"


def test_heartbeats_and_schema_change_topics_are_skipped_unless_configured():
    decoder = Decoder()
    heartbeat = decoder.decode(RawRecord("__debezium-heartbeat.dbserver1", 0, 0, None, b'{"ts_ms": 1}'))
    schema_change = decoder.decode(RawRecord("dbserver1", 0, 0, None, b'{"ddl": "create table x"}'))
    assert isinstance(heartbeat, Skipped) and heartbeat.reason == "heartbeat"
    assert isinstance(schema_change, Skipped) and schema_change.reason == "schema_change"
    landing = Decoder(skip_heartbeats=False).decode(RawRecord("__debezium-heartbeat.x", 0, 0, None, b"{}"))
    assert not isinstance(landing, Skipped)


@pytest.mark.integration
def test_sigterm_finishes_the_batch_in_flight_and_exits_zero(lake):
    topic = f"{lake.topic_prefix}.s.items"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=1)
    produce_items(lake, topic, 0, 5000)
    env = {**lake.env, "INGEST_BATCH__MAX_MS": "60000", "INGEST_BATCH__MAX_EVENTS": "1000000"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "run"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(6)  # start-up and consume everything; the 60 s batch is still open
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "SIGTERM received" in stderr
    assert lake.query("select count(*) from lake.staging.s__items") == [(5000,)]


@pytest.mark.integration
def test_sql_prints_rows_as_a_table_or_json_lines(lake):
    topic = f"{lake.topic_prefix}.s.items"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=1)
    produce_items(lake, topic, 0, 3)
    lake.ingest("run", "--until-caught-up")
    rows = lake.ingest("sql", "select id, _cdc_op from staging.s__items order by id", "--json").stdout
    assert [json.loads(line) for line in rows.splitlines()] == [{"id": i, "_cdc_op": "c"} for i in range(3)]
    table = lake.ingest("sql", "select count(*) as n from staging.s__items").stdout
    assert "n" in table and "3" in table
    bad = lake.ingest("sql", "select * from no_such_table", check=False)
    assert bad.returncode == 1 and "no_such_table" in bad.stderr
