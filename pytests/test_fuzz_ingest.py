"""Hostile input through the real ingester (hypothesis, a bounded number of examples).

Each example mixes good change events (with a hostile column name: quotes, semicolons, dots, unicode) and bad
records (malformed JSON, invalid UTF-8, wrong types, missing fields, unknown ops, deep nesting, values beyond
their type), sends them to a topic of its own (whose name needs quoting as a table name too) and runs
`ingest run --until-caught-up`. The ingester never crashes; every bad record is a dead letter with its raw
bytes and a reason; every good one lands, with the hostile column holding exactly what was sent."""

import itertools
import json

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conftest import send, with_schema

pytestmark = pytest.mark.integration

_topics = itertools.count(1)

hostile_names = st.one_of(
    st.sampled_from(
        ['x"; drop table lake.staging._cdc_offsets; --', "a.b.c", "naïve ünïcode", "select", "👾"]
    ),
    st.text(alphabet="\";.'`-/* ÄßZ日", min_size=1, max_size=10),
).filter(
    lambda n: n.lower() != "id" and not n.lower().startswith(("_cdc_", "_kafka_", "_batch_", "_ingested"))
)
HUGE = "<200 kB of text>"  # a huge value that is fine must land (expanded when sent: keeps reports short)
texts = st.one_of(st.text(max_size=40), st.just(HUGE))


def event(after: dict | None, op: str = "c", lsn: int = 1) -> dict:
    return {"before": None, "after": after, "op": op, "source": {"lsn": lsn, "ts_ms": 1795241515000}}


def dumps(document) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def bad_record(kind: str, i: int) -> bytes:
    return {
        "malformed json": b'{"op": "c", "after": {"id": ' + str(i).encode(),
        "invalid utf-8": dumps(event({"id": i, "t": "?"})).replace(b"?", b"\xc3\x28"),
        "not an object": dumps([i, "c"]),
        "missing source": dumps({"op": "c", "after": {"id": i}}),
        "missing after": dumps(event(None, "c")),
        "unknown op": dumps(event({"id": i}, op="z")),
        "deep nesting": b'{"op":"c","source":{"lsn":1},"after":{"id":1,"d":'
        + b"[" * 5000
        + b"]" * 5000
        + b"}}",
        "integer beyond 64 bits": dumps(event({"id": 2**70 + i})),
        "lsn beyond 64 bits": dumps(event({"id": i}, lsn=2**80)),
        "wrong declared type": dumps(
            with_schema(
                event({"id": i, "n": "not a number"}),
                [
                    {"type": "int32", "optional": False, "field": "id"},
                    {"type": "int32", "optional": True, "field": "n"},
                ],
            )
        ),
    }[kind]


records = st.lists(
    st.one_of(
        st.tuples(st.just("good"), texts),
        st.tuples(
            st.sampled_from(
                [
                    "malformed json",
                    "invalid utf-8",
                    "not an object",
                    "missing source",
                    "missing after",
                    "unknown op",
                    "deep nesting",
                    "integer beyond 64 bits",
                    "lsn beyond 64 bits",
                    "wrong declared type",
                ]
            ),
            st.just(""),
        ),
    ),
    min_size=2,
    max_size=12,
)


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a real ingester run
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(column=hostile_names, items=records)
def test_the_ingester_lands_the_good_and_dead_letters_the_bad(lake, column, items):
    number = next(_topics)
    topic = f"{lake.topic_prefix}.fz-x.t-{number}"
    table = f'lake.staging."fz-x__t-{number}"'
    items = [(kind, "x" * 200_000 if text == HUGE else text) for kind, text in items]
    values = [
        dumps(event({"id": i, column: text}, lsn=i + 1)) if kind == "good" else bad_record(kind, i)
        for i, (kind, text) in enumerate(items)
    ]
    send(lake, topic, values)
    result = lake.ingest("run", "--until-caught-up", check=False)
    assert result.returncode == 0, result.stderr[-3000:]

    good = {i: text for i, (kind, text) in enumerate(items) if kind == "good"}
    bad = {i: kind for i, (kind, _) in enumerate(items) if kind != "good"}
    dead = lake.query(
        f"""select "offset", "value", error from lake.staging._dead_letters where topic = '{topic}'"""
    )
    assert sorted(d[0] for d in dead) == sorted(bad), f"dead letters {dead} for {bad}"
    for offset, raw, error in dead:
        assert raw == values[offset], f"{bad[offset]}: raw bytes not kept"
        assert error.strip(), f"{bad[offset]}: no reason"
    if good:
        quoted = '"' + column.replace('"', '""') + '"'
        rows = lake.query(f"select _kafka_offset, id, {quoted} from {table}")
        assert sorted(rows) == sorted((i, i, text) for i, text in good.items())
    assert lake.query("select count(*) from lake.staging._cdc_offsets")[0][0] > 0  # not dropped
