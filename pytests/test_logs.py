"""Every log line about an event names its topic, partition and offset, in text and in JSON."""

import json
import logging

import orjson
import pytest

from conftest import produce_items, send, with_schema
from ingest.core.logs import _JsonFormatter, _TextFormatter, event_fields, event_ref, offset_runs
from ingest.embedded.broker import ensure_topics

# Lines about events (not the run's summary line, which counts them)
ABOUT_EVENTS = ("dead letter ", "quarantined ", "dropped ")


def test_an_event_is_named_topic_partition_offset():
    assert event_ref("db.s.t", 2, 17) == "db.s.t[2]@17"
    assert event_ref("db.s.t", 2, 17, 17) == "db.s.t[2]@17"
    assert event_ref("db.s.t", 2, 17, 20) == "db.s.t[2]@17..20"
    assert event_fields("db.s.t", 2, 17) == {"topic": "db.s.t", "partition": 2, "offset": 17}
    assert event_fields("db.s.t", 2, 17, 20)["last_offset"] == 20


def test_runs_of_events_are_grouped_per_partition():
    runs = offset_runs([("a", 0, 5), ("a", 0, 3), ("b", 1, 9), ("a", 0, 4)])
    assert [(r.topic, r.partition, r.first, r.last, r.events) for r in runs] == [
        ("a", 0, 3, 5, 3),
        ("b", 1, 9, 9, 1),
    ]
    assert runs[0].ref == "a[0]@3..5"
    assert runs[0].fields == {"topic": "a", "partition": 0, "offset": 3, "last_offset": 5, "events": 3}


def test_json_lines_carry_the_position_as_fields_and_scrub_secrets():
    record = logging.LogRecord(
        "ingest.x", logging.WARNING, __file__, 1, "dead letter %s: password=hunter2", None, None
    )
    record.__dict__.update(event_fields("db.s.t", 0, 42))
    record.args = (event_ref("db.s.t", 0, 42),)
    entry = json.loads(_JsonFormatter().format(record))
    assert (entry["topic"], entry["partition"], entry["offset"]) == ("db.s.t", 0, 42)
    assert entry["message"] == "dead letter db.s.t[0]@42: password=***"
    assert "hunter2" not in _TextFormatter("%(message)s").format(record)


def event(after: dict, lsn: int) -> dict:
    source = {"ts_ms": 1795241515000, "snapshot": "false", "schema": "inventory", "table": "x", "lsn": lsn}
    return {"before": None, "after": after, "source": source, "op": "c"}


INT_FIELDS = [
    {"type": "int32", "optional": False, "field": "id"},
    {"type": "int32", "optional": True, "field": "n"},
]


def send_type_change(lake, topic: str) -> None:
    """Offset 0 creates the table; offset 1 changes `n` from int to text: quarantined from there on."""
    text_fields = [INT_FIELDS[0], {"type": "string", "optional": True, "field": "n"}]
    send(
        lake,
        topic,
        [
            orjson.dumps(with_schema(event({"id": 1, "n": 1}, 1), INT_FIELDS)),
            orjson.dumps(with_schema(event({"id": 2, "n": "two"}, 2), text_fields)),
            orjson.dumps(with_schema(event({"id": 3, "n": 3}, 3), INT_FIELDS)),
        ],
    )


@pytest.mark.integration
def test_log_lines_about_events_name_topic_partition_and_offset(lake):
    items = f"{lake.topic_prefix}.s.items"
    changing = f"{lake.topic_prefix}.inventory.changing"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [items], partitions=1)
    produce_items(lake, items, 0, 3)
    send(lake, items, [b"not json", b'{"op": "c"}'])  # dead letters at offsets 3 and 4
    send_type_change(lake, changing)
    lake.ingest("run", "--until-caught-up")
    # read everything again: what is landed is dropped, and said so with its positions
    rerun = lake.ingest("run", "--until-caught-up", "--from-beginning", "--log-format", "json")
    lines = [json.loads(line) for line in rerun.stderr.splitlines()]
    about_events = [line for line in lines if line["message"].startswith(ABOUT_EVENTS)]
    assert about_events, lines
    for line in about_events:
        assert {"topic", "partition", "offset"} <= set(line), line
        assert f"{line['topic']}[{line['partition']}]@{line['offset']}" in line["message"], line
    dropped = [line for line in about_events if "already-landed" in line["message"]]
    assert {(d["topic"], d["offset"], d.get("last_offset"), d["events"]) for d in dropped} == {
        (items, 0, 4, 5),
        (changing, 0, 2, 3),
    }


@pytest.mark.integration
def test_dead_letter_and_quarantine_lines_in_both_formats(lake):
    items = f"{lake.topic_prefix}.s.items"
    changing = f"{lake.topic_prefix}.inventory.changing"
    send(lake, items, [b"not json"])
    send_type_change(lake, changing)
    text = lake.ingest("run", "--until-caught-up").stderr
    assert f"dead letter {items}[0]@0:" in text
    assert f"quarantined 2 events of staging.inventory__changing {changing}[0]@1..2:" in text
    # a second run finds the table quarantined: its events are quarantined again only if new ones arrive
    send(lake, changing, [orjson.dumps(with_schema(event({"id": 4, "n": 4}, 4), INT_FIELDS))])
    lines = [
        json.loads(x)
        for x in lake.ingest("run", "--until-caught-up", "--log-format", "json").stderr.splitlines()
    ]
    [quarantined] = [x for x in lines if x["message"].startswith("quarantined")]
    assert (quarantined["topic"], quarantined["partition"], quarantined["offset"]) == (changing, 0, 3)
    assert quarantined["table"] == "inventory__changing" and quarantined["events"] == 1
