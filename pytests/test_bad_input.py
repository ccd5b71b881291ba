"""Bad input loses nothing: dead letters keep raw bytes and a reason, quarantine keeps a table's order,
identifiers from events are always quoted, and the good events around the bad ones land."""

import orjson
import pytest

from conftest import send, with_schema

pytestmark = pytest.mark.integration


def event(after: dict, op: str = "c", lsn: int = 1) -> dict:
    return {
        "before": None,
        "after": after,
        "source": {
            "version": "3.6.3.Final",
            "connector": "postgresql",
            "name": "t",
            "ts_ms": 1795241515000,
            "snapshot": "false",
            "db": "inventory",
            "schema": "inventory",
            "table": "x",
            "txId": 7,
            "lsn": lsn,
        },
        "op": op,
        "ts_ms": 1795241516000,
    }


def test_malformed_events_go_to_dead_letters_and_the_rest_lands(lake):
    topic = f"{lake.topic_prefix}.inventory.things"
    hostile = 'x"; drop table lake.staging._cdc_offsets; --'
    values = [
        orjson.dumps(event({"id": 1, "name": "good before"})),
        b"{not json",
        b"\xff\xfe\x00 invalid utf-8",
        b"[1, 2, 3]",
        orjson.dumps({"op": "c", "after": {"id": 3}}),  # no source block
        orjson.dumps(event({"id": 4}, op="x")),  # unknown op
        orjson.dumps(event({"id": 5, "_cdc_op": "spoof"})),  # collides with a metadata column
        orjson.dumps(event({"id": 6, "ID": 6})),  # differs from `id` only by case
        b'{"a":' * 5000 + b"1" + b"}" * 5000,  # deep nesting
        orjson.dumps(
            with_schema(
                event({"id": 7, "n": "not a number"}),
                [
                    {"type": "int32", "optional": False, "field": "id"},
                    {"type": "int32", "optional": True, "field": "n"},
                ],
            )
        ),
        orjson.dumps(event({"id": 8, hostile: "quoted", "naïve ünïcode;.col": "ok"})),
        orjson.dumps(event({"id": 9, "name": "good after"})),
    ]
    send(lake, topic, values)
    lake.ingest("run", "--until-caught-up")

    rows = lake.query("select id, name from lake.staging.inventory__things order by id")
    assert rows == [(1, "good before"), (8, None), (9, "good after")]
    assert lake.query(
        f'select "{hostile.replace(chr(34), chr(34) * 2)}", "naïve ünïcode;.col" '
        "from lake.staging.inventory__things where id = 8"
    ) == [("quoted", "ok")]
    assert lake.query("select count(*) from lake.staging._cdc_offsets") != [(0,)]  # not dropped
    dead = lake.query('select "offset", "value", error from lake.staging._dead_letters order by "offset"')
    assert [d[0] for d in dead] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert all(d[1] == values[d[0]] for d in dead), "raw bytes must be kept exactly"
    reasons = {offset: error for offset, _, error in dead}
    assert "not valid JSON" in reasons[1] and "not valid JSON" in reasons[2]
    assert "not an object" in reasons[3]
    assert "source" in reasons[4] and "op" in reasons[5]
    assert "metadata column" in reasons[6] and "only by case" in reasons[7]
    assert "nested" in reasons[8] or "JSON" in reasons[8]
    assert "'n'" in reasons[9] and "int32" in reasons[9]


def test_incompatible_schema_change_quarantines_one_table_only(lake):
    changing = f"{lake.topic_prefix}.inventory.changing"
    steady = f"{lake.topic_prefix}.inventory.steady"
    int_fields = [
        {"type": "int32", "optional": False, "field": "id"},
        {"type": "int32", "optional": True, "field": "n"},
    ]
    text_fields = [
        {"type": "int32", "optional": False, "field": "id"},
        {"type": "string", "optional": True, "field": "n"},
    ]
    send(
        lake,
        changing,
        [
            orjson.dumps(with_schema(event({"id": 1, "n": 1}, lsn=1), int_fields)),
            orjson.dumps(with_schema(event({"id": 2, "n": "two"}, lsn=2), text_fields)),  # int -> text
            orjson.dumps(
                with_schema(event({"id": 3, "n": 3}, lsn=3), int_fields)
            ),  # after it: still held back
        ],
    )
    send(lake, steady, [orjson.dumps(event({"id": i}, lsn=i)) for i in range(3)])
    lake.ingest("run", "--until-caught-up")

    assert lake.query("select id, n from lake.staging.inventory__changing") == [(1, 1)]
    assert lake.query("select count(*) from lake.staging.inventory__steady") == [(3,)]
    quarantined = lake.query(
        'select table_name, "offset", error from lake.staging._cdc_quarantine order by "offset"'
    )
    assert [(t, o) for t, o, _ in quarantined] == [("inventory__changing", 1), ("inventory__changing", 2)]
    assert "INTEGER to VARCHAR" in quarantined[0][2] and "not a widening" in quarantined[0][2]
    reason = lake.query(
        "select quarantined from lake.staging._cdc_tables where table_name = 'inventory__changing'"
    )
    assert reason[0][0] and "not a widening" in reason[0][0]
    assert lake.query(
        "select change from lake.staging._cdc_schema_changes "
        "where table_name = 'inventory__changing' and change = 'quarantine'"
    ) == [("quarantine",)]
    # the quarantine survives a restart: later events of the table keep going there, in order
    send(lake, changing, [orjson.dumps(with_schema(event({"id": 4, "n": 4}, lsn=4), int_fields))])
    lake.ingest("run", "--until-caught-up")
    assert lake.query("select count(*) from lake.staging._cdc_quarantine") == [(3,)]
    assert lake.query("select id from lake.staging.inventory__changing") == [(1,)]
