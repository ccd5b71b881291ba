"""`ingest dead-letters list|show|retry`: inspect failed events and land them after a fix, exactly once."""

import json

import orjson
import pytest

from conftest import send, with_schema

pytestmark = pytest.mark.integration


def event(after: dict, lsn: int) -> dict:
    return {
        "before": None,
        "after": after,
        "source": {
            "ts_ms": 1795241515000,
            "schema": "inventory",
            "table": "x",
            "lsn": lsn,
            "snapshot": "false",
        },
        "op": "c",
    }


def open_letters(lake) -> list[dict]:
    result = lake.ingest("dead-letters", "list", "--json")
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_dead_letters_list_show_and_retry_exactly_once(lake):
    topic = f"{lake.topic_prefix}.inventory.things"
    good = orjson.dumps(event({"id": 1}, 1))
    send(lake, topic, [good, b"{not json\x00\xff", orjson.dumps(event({"id": 3}, 3))])
    lake.ingest("run", "--until-caught-up")
    # An event an older decoder refused (the same bytes decode today): what a decoder upgrade fixes.
    lake.query(
        "insert into lake.staging._dead_letters by name select "
        f"'{topic}' as topic, 0 as partition, 0 as \"offset\", null as key, "
        f"from_hex('{orjson.dumps(event({'id': 2}, 2)).hex()}') as value, null as headers, "
        "null as kafka_timestamp, 'refused by decoder 0.9' as error, now() as failed_at, 0 as batch_id"
    )
    letters = open_letters(lake)
    assert sorted(le["id"] for le in letters) == [f"dl:{topic}:0:0", f"dl:{topic}:0:1"]
    bad_id = f"dl:{topic}:0:1"
    shown = lake.ingest("dead-letters", "show", bad_id).stdout
    assert "not valid JSON" in shown and "(not UTF-8; hex)" in shown and "7b 6e 6f 74" in shown
    assert "ingest dead-letters" not in lake.ingest("dead-letters", "list").stderr

    result = lake.ingest("dead-letters", "retry", "--all", check=False)
    assert result.returncode == 3, result.stderr  # one still fails
    assert "1 landed, 1 failed again" in result.stdout
    assert f"still failing {bad_id}" in result.stdout
    assert lake.query("select id from lake.staging.inventory__things order by id") == [(1,), (2,), (3,)]
    letters = open_letters(lake)
    assert [le["id"] for le in letters] == [bad_id]  # kept, with the reason of the retry
    assert "not valid JSON" in letters[0]["reason"] and letters[0]["batch_id"] > 1
    # retrying again lands nothing twice
    again = lake.ingest("dead-letters", "retry", "--ids", f"dl:{topic}:0:0", check=False)
    assert again.returncode == 2 and "no open dead letter" in again.stderr
    lake.ingest("dead-letters", "retry", "--ids", bad_id, check=False)
    assert lake.query("select id from lake.staging.inventory__things order by id") == [(1,), (2,), (3,)]
    status = json.loads(lake.ingest("status", "--json", "--no-broker").stdout)
    assert status["dead_letters"]["total"] == 1, "status counts open dead letters only"
    resolutions = lake.query(
        'select "offset", outcome from lake.staging._dead_letter_resolutions order by resolved_at, "offset"'
    )
    assert resolutions == [(0, "landed"), (1, "failed again"), (1, "failed again")]
    # the retried row carries a batch id above every landed batch, so incremental dbt models see it
    batch = lake.query("select _batch_id from lake.staging.inventory__things where id = 2")[0][0]
    assert batch == lake.query("select max(_batch_id) from lake.staging.inventory__things")[0][0] > 1
    # and the ingester goes on after it without reusing a batch id
    send(lake, topic, [orjson.dumps(event({"id": 4}, 4))])
    lake.ingest("run", "--until-caught-up")
    assert lake.query(
        "select _batch_id > ? from lake.staging.inventory__things where id = 4".replace("?", str(batch))
    ) == [(True,)]


def test_a_retry_interrupted_before_commit_lands_nothing_and_keeps_the_letter(lake, monkeypatch):
    from ingest.ops import retry

    topic = f"{lake.topic_prefix}.inventory.things"
    send(lake, topic, [orjson.dumps(event({"id": 1}, 1))])
    lake.ingest("run", "--until-caught-up")
    lake.query(
        "insert into lake.staging._dead_letters by name select "
        f"'{topic}' as topic, 0 as partition, 5 as \"offset\", null as key, "
        f"from_hex('{orjson.dumps(event({'id': 2}, 2)).hex()}') as value, null as headers, "
        "null as kafka_timestamp, 'old decoder' as error, now() as failed_at, 0 as batch_id"
    )

    def crash(*_args):
        raise KeyboardInterrupt("killed between landing and COMMIT")

    monkeypatch.setattr(retry, "_advance_batch_id", crash)  # runs after the rows and the resolution
    with pytest.raises(KeyboardInterrupt):
        retry.Retry(lake.settings, lake.connect).run(everything=True)
    assert lake.query("select id from lake.staging.inventory__things") == [(1,)]
    assert [le["id"] for le in open_letters(lake)] == [f"dl:{topic}:0:5"]
    monkeypatch.undo()
    result = retry.Retry(lake.settings, lake.connect).run(everything=True)
    assert result.landed == [f"dl:{topic}:0:5"]
    assert lake.query("select id from lake.staging.inventory__things order by id") == [(1,), (2,)]
    assert open_letters(lake) == []


def test_quarantined_table_retried_after_its_schema_is_fixed(lake):
    topic = f"{lake.topic_prefix}.inventory.changing"
    ints = [
        {"type": "int32", "optional": False, "field": "id"},
        {"type": "int32", "optional": True, "field": "n"},
    ]
    texts = [
        {"type": "int32", "optional": False, "field": "id"},
        {"type": "string", "optional": True, "field": "n"},
    ]
    send(
        lake,
        topic,
        [
            orjson.dumps(with_schema(event({"id": 1, "n": 1}, 1), ints)),
            orjson.dumps(with_schema(event({"id": 2, "n": "two"}, 2), texts)),  # int -> text: quarantined
            orjson.dumps(with_schema(event({"id": 3, "n": "three"}, 3), texts)),
        ],
    )
    lake.ingest("run", "--until-caught-up")
    letters = open_letters(lake)
    assert [le["id"] for le in letters] == [f"q:{topic}:0:1", f"q:{topic}:0:2"]
    assert letters[0]["kind"] == "quarantined (inventory__changing)"

    # before the fix, a retry quarantines them again with the reason, and keeps them open
    before_fix = lake.ingest("dead-letters", "retry", "--table", "inventory__changing", check=False)
    assert before_fix.returncode == 3 and "2 failed again" in before_fix.stdout
    assert [le["id"] for le in open_letters(lake)] == [f"q:{topic}:0:1", f"q:{topic}:0:2"]
    assert lake.query("select id from lake.staging.inventory__changing") == [(1,)]

    # the fix: the column becomes text, as upstream; then the kept events land, in order, once
    # (DuckLake only widens column types in place, so the table is rebuilt, as docs/operations.md says)
    con = lake.connect()
    try:
        con.execute("begin")
        con.execute(
            "create table lake.staging.changing_fixed as "
            "select * replace (cast(n as varchar) as n) from lake.staging.inventory__changing"
        )
        con.execute("drop table lake.staging.inventory__changing")
        con.execute("alter table lake.staging.changing_fixed rename to inventory__changing")
        con.execute("commit")
    finally:
        con.close()
    fixed = lake.ingest("dead-letters", "retry", "--table", "inventory__changing")
    assert "2 landed, 0 failed again" in fixed.stdout
    assert open_letters(lake) == []
    assert lake.query("select quarantined from lake.staging._cdc_tables") == [(None,)]
    send(lake, topic, [orjson.dumps(with_schema(event({"id": 4, "n": "four"}, 4), texts))])
    lake.ingest("run", "--until-caught-up")
    assert lake.query("select id, n from lake.staging.inventory__changing order by id") == [
        (1, "1"),
        (2, "two"),
        (3, "three"),
        (4, "four"),
    ]
    assert open_letters(lake) == []
