"""When the broker forgets (the dev broker keeps everything in memory), the ingester stops with a clear
error instead of silently re-reading or skipping."""

import signal

import pytest

from conftest import free_port, produce_items, start_ingest, wait_for
from ingest.broker import EmbeddedBroker, ensure_topics

pytestmark = pytest.mark.integration


def test_offsets_beyond_the_log_end_stop_the_ingester_with_a_way_forward(lake, state_dir):
    broker = EmbeddedBroker(state_dir, free_port())
    broker.start()
    try:
        lake.settings.kafka.client["bootstrap.servers"] = broker.bootstrap_servers
        lake.env["INGEST_KAFKA__BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        topic = f"{lake.topic_prefix}.s.items"
        ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, [topic], partitions=1)
        produce_items(lake, topic, 0, 50)
        lake.ingest("run", "--until-caught-up")
        assert lake.query("select count(*) from lake.staging.s__items") == [(50,)]

        broker.stop()  # memory storage: every topic and record is gone
        broker.start()
        ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, [topic], partitions=1)
        produce_items(lake, topic, 1000, 10)  # offsets 0..9 again, below the stored 50
        result = lake.ingest("run", "--until-caught-up", check=False)
        assert result.returncode == 2
        assert "outside the log" in result.stderr and "Nothing was skipped or re-read" in result.stderr
        assert lake.query("select count(*) from lake.staging.s__items") == [(50,)]
    finally:
        broker.stop()


def restarted_broker_lake(lake, state_dir):
    """A broker of the test's own (restarting the session's would disturb other tests), with one topic of
    50 records landed."""
    broker = EmbeddedBroker(state_dir, free_port())
    broker.start()
    lake.settings.kafka.client["bootstrap.servers"] = broker.bootstrap_servers
    lake.env["INGEST_KAFKA__BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
    topic = f"{lake.topic_prefix}.s.items"
    ensure_topics({"bootstrap.servers": broker.bootstrap_servers}, [topic], partitions=1)
    produce_items(lake, topic, 0, 50)
    return broker, topic


def test_a_topic_that_vanished_while_stopped_stops_the_ingester_with_a_way_forward(lake, state_dir):
    broker, topic = restarted_broker_lake(lake, state_dir)
    try:
        lake.ingest("run", "--until-caught-up")
        broker.stop()  # memory storage: the topic is gone
        broker.start()
        result = lake.ingest("run", "--until-caught-up", check=False, timeout=120)
        assert result.returncode == 2, result.stderr[-3000:]
        assert "do not exist on the broker" in result.stderr and topic in result.stderr
        assert "Nothing was skipped or re-read" in result.stderr and "--topics" in result.stderr
        assert lake.query("select count(*) from lake.staging.s__items") == [(50,)]
    finally:
        broker.stop()


def test_a_broker_restart_under_a_running_ingester_stops_it_with_a_way_forward(lake, state_dir, tmp_path):
    """The restart wipes the topic while the ingester has it assigned (librdkafka crashes on the dev broker's
    answer for a deleted topic if it keeps fetching it): the ingester must stop by itself, with exit code 2
    and an explanation, not crash and not wait forever."""
    broker, topic = restarted_broker_lake(lake, state_dir)
    log_path = tmp_path / "ingest.log"
    try:
        with open(log_path, "w") as log_file:
            ingester = start_ingest(lake, "run", log_file=log_file)
            wait_for(lambda: " landed: " in log_path.read_text(), 120, "the first batch")
            broker.stop()
            broker.start()
            try:
                returncode = ingester.wait(120)
            finally:
                ingester.kill()
        log = log_path.read_text()
        # exit 2 with the explanation; or, when librdkafka crashed on the broker's answer first (SIGSEGV, a
        # known client bug with the dev broker), the next start refuses with it: never a silent re-read
        assert returncode in (2, -signal.SIGSEGV), f"exit code {returncode}:\n{log[-3000:]}"
        if returncode != 2:
            log = lake.ingest("run", "--until-caught-up", check=False).stderr
        assert topic in log and "Nothing was skipped or re-read" in log, log[-3000:]
        assert lake.query("select count(*) from lake.staging.s__items") == [(50,)]
    finally:
        broker.stop()
