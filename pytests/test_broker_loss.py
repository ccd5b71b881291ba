"""When the broker forgets (the dev broker keeps everything in memory), the ingester stops with a clear
error instead of silently re-reading or skipping."""

import pytest

from conftest import free_port, produce_items
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
