"""A topic produced again (the broker replaced, a topic re-created under a new name: new Kafka offsets, the
same source positions) changes nothing in curated: every copy is recognised by its source position."""

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
