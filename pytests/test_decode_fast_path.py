"""The decoder's per-event fast paths (structural envelope check, inferred schemas cached by shape) give
exactly what the general paths give, and step aside for anything they do not fully check."""

import copy

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import CORPUS, VARIANTS
from ingest.core.decode import Decoder, _fast_change, _from_model
from ingest.core.envelope import UNAVAILABLE_VALUE, ChangeEvent
from ingest.devtools.corpus import read_variant


def corpus_change_payloads() -> list[dict]:
    payloads = []
    for variant in VARIANTS:
        for record in read_variant(CORPUS / variant):
            if record.value is None or record.topic.count(".") != 2:
                continue
            document = orjson.loads(record.value)
            payload = document.get("payload", document) if "schema" in document else document
            if isinstance(payload, dict) and "op" in payload and payload.get("op") != "m":
                payloads.append(payload)
    return payloads


@pytest.mark.skipif(not VARIANTS, reason="the shared Debezium corpus is not present")
def test_fast_change_equals_the_model_on_the_whole_corpus():
    payloads = corpus_change_payloads()
    assert len(payloads) > 100
    fast = 0
    for payload in payloads:
        result = _fast_change(payload)
        expected = _from_model(ChangeEvent.model_validate(payload))
        if result is not None:
            fast += 1
            assert result == expected, payload
    assert fast > len(payloads) // 2, "the fast path is not taken for ordinary events"


BASE = {
    "before": None,
    "after": {"id": 1, "name": "a"},
    "source": {
        "ts_ms": 1,
        "ts_us": 1000,
        "lsn": 5,
        "txId": 7,
        "snapshot": "false",
        "schema": "s",
        "table": "t",
    },
    "op": "c",
    "ts_ms": 2,
}


@pytest.mark.parametrize(
    "path, value",
    [
        (("op",), "x"),
        (("op",), ["c"]),
        (("after",), [1]),
        (("before",), "row"),
        (("ts_ms",), "2"),
        (("ts_ms",), 2.0),
        (("source",), []),
        (("source", "lsn"), "5"),
        (("source", "lsn"), True),
        (("source", "ts_us"), 1.5),
        (("source", "snapshot"), 1),
        (("source", "table"), 3),
        (("transaction",), []),
        (("transaction",), {"total_order": 1}),
        (("transaction",), {"id": 7, "total_order": 1, "data_collection_order": 1}),
        (("transaction",), {"id": "7:5", "total_order": "1", "data_collection_order": 1}),
        (("transaction",), {"id": "7:5", "total_order": 1, "data_collection_order": 1.0}),
    ],
)
def test_fast_change_steps_aside_for_what_it_does_not_check(path, value):
    payload = copy.deepcopy(BASE)
    target = payload
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    assert _fast_change(payload) is None


def test_fast_change_of_a_plain_event():
    change = _fast_change(BASE)
    assert change == _from_model(ChangeEvent.model_validate(BASE))
    assert (change.op, change.row, change.lsn, change.tx_id, change.source_ts_us) == (
        "c",
        BASE["after"],
        5,
        "7",
        1000,
    )
    delete = {**BASE, "op": "d", "before": {"id": 1}, "after": None}
    assert _fast_change(delete).row == {"id": 1}


def test_fast_change_takes_a_plain_transaction_block():
    """Debezium's `provide.transaction.metadata` puts one in every streamed event; none of it lands."""
    block = {"id": "7:5", "total_order": 1, "data_collection_order": 1, "extra": [1.5]}
    payload = {**BASE, "transaction": block}
    assert _fast_change(payload) == _from_model(ChangeEvent.model_validate(payload)) == _fast_change(BASE)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.sampled_from(["NaN", "Infinity", "-Infinity", UNAVAILABLE_VALUE]),
)
json_values = st.one_of(
    json_scalars,
    st.lists(json_scalars, max_size=2),
    st.fixed_dictionaries({"scale": st.integers(0, 3), "value": st.sampled_from(["AQ==", "Ag=="])}),
    st.dictionaries(st.text(max_size=3), json_scalars, max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Found by hypothesis: text meeting a column first seen as a VariableScaleDecimal (both VARCHAR) must not be
# taken as it is, the general path's converter decides.
@example([{"a": "", "b": {"scale": 0, "value": "AQ=="}}, {"a": "", "b": ""}])
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), json_values, max_size=4), max_size=6))
def test_inferred_fast_path_equals_the_general_path(images):
    fast, general = Decoder(), Decoder()
    for image in images:
        try:
            schema, values, unavailable = fast._inferred(image)
        except ValueError as error:  # the general path must fail the same way
            with pytest.raises(type(error)):
                general_schema = general._infer_schema(image)
                general._convert(general_schema, image)
            continue
        general_schema = general._infer_schema(image)
        general_values, general_unavailable = general._convert(general_schema, image)
        assert [(c.name, c.duckdb_type) for c in schema.columns] == [
            (c.name, c.duckdb_type) for c in general_schema.columns
        ]
        # The fast path may keep an image's nulls, which read as missing values (`values.get`).
        values = {name: value for name, value in values.items() if value is not None}
        assert repr(values) == repr(general_values)  # repr: NaN equals itself
        assert [type(v) for v in values.values()] == [type(v) for v in general_values.values()]
        assert unavailable == general_unavailable
