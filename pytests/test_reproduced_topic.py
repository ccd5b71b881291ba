"""A topic produced again (the broker replaced, a topic re-created under a new name: new Kafka offsets, the
same source positions) changes nothing in curated: every copy is recognised by its source position."""

import orjson
import pytest

from conftest import CORPUS, VARIANTS, dbt
from ingest.devtools.corpus import produce, read_variant

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not VARIANTS, reason="corpus not present")]

CURATED = ["addresses", "audit_log", "customers", "orders", "products", "products_on_hand", "type_zoo"]


def curated_state(lake) -> dict[str, list[tuple]]:
    state = {}
    for table in CURATED:
        for model in (f"inventory__{table}", f"inventory__{table}__history"):
            columns = [
                name
                for (name,) in lake.query(
                    "select column_name from duckdb_columns() where database_name = 'lake' "
                    f"and schema_name = 'curated' and table_name = '{model}' order by column_index"
                )
                # where and when it landed, not what it says
                if name
                not in ("_cdc_updated_at", "_cdc_batch_id", "_cdc_kafka_partition", "_cdc_kafka_offset")
            ]
            select = ", ".join(f'cast("{c}" as varchar)' for c in columns)
            state[model] = sorted(lake.query(f"select {select} from lake.curated.{model}"), key=repr)
    return state


def test_a_topic_produced_again_under_a_new_name_changes_nothing_in_curated(lake, tmp_path):
    records = read_variant(CORPUS / "precise-schemas", topic_prefix=lake.topic_prefix)
    produce(records, lake.settings.kafka.client)
    lake.ingest("run", "--until-caught-up")
    first = dbt(lake, tmp_path, "build", "--select", "curated", "--indirect-selection", "cautious")
    assert first.returncode == 0, first.stdout[-4000:]
    before = curated_state(lake)
    assert sum(len(rows) for rows in before.values()) > 100

    again = lake.topic_prefix + "again"
    produce(read_variant(CORPUS / "precise-schemas", topic_prefix=again), lake.settings.kafka.client)
    lake.env["INGEST_TOPICS"] = rf"^{again}\."
    lake.ingest("run", "--until-caught-up")
    landed = lake.query("select count(*) from lake.staging.inventory__customers")[0][0]
    assert landed == 2 * sum(1 for r in records if r.topic.endswith(".customers") and r.value)
    second = dbt(lake, tmp_path, "build", "--select", "curated", "--indirect-selection", "cautious")
    assert second.returncode == 0, second.stdout[-4000:]
    assert curated_state(lake) == before


def test_mysql_events_produced_again_change_nothing_either(lake, tmp_path):
    """Without an LSN (MySQL's position is its binlog file, position and row), curated recognises the copies
    by `_cdc_position` too; ordered by Kafka position they would be new versions."""
    from conftest import send

    def event(op: str, pos: int, before: dict | None, after: dict | None) -> bytes:
        source = {"connector": "mysql", "file": "mysql-bin.000007", "pos": pos, "row": 0, "db": "inventory",
                  "table": "products_on_hand", "ts_ms": 1795241515000 + pos}  # fmt: skip
        return orjson.dumps({"op": op, "before": before, "after": after, "source": source})

    stream = [
        (b'{"product_id":1}', event("c", 10, None, {"product_id": 1, "quantity": 5})),
        (b'{"product_id":2}', event("c", 20, None, {"product_id": 2, "quantity": 7})),
        (b'{"product_id":1}', event("u", 30, None, {"product_id": 1, "quantity": 4})),
        (b'{"product_id":2}', event("d", 40, {"product_id": 2, "quantity": 7}, None)),
    ]
    select = ["--select", "inventory__products_on_hand__history", "inventory__products_on_hand"]
    states = []
    for prefix in (lake.topic_prefix, lake.topic_prefix + "again"):
        lake.env["INGEST_TOPICS"] = rf"^{prefix}\."
        topic = f"{prefix}.inventory.products_on_hand"
        send(lake, topic, [value for _, value in stream], keys=[key for key, _ in stream])
        lake.ingest("run", "--until-caught-up")
        build = dbt(lake, tmp_path, "build", *select)
        assert build.returncode == 0, build.stdout[-4000:]
        states.append(
            (
                lake.query("select product_id, quantity from lake.curated.inventory__products_on_hand"),
                lake.query(
                    "select product_id, quantity, _cdc_op, _cdc_position, _is_current "
                    "from lake.curated.inventory__products_on_hand__history order by _cdc_position"
                ),
            )
        )
    assert states[0] == states[1]
    current, history = states[0]
    assert current == [(1, 4)] and len(history) == 4 and history[0][3] == [7, 10, 0]
