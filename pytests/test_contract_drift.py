"""A curated model whose contract does not describe its staging table fails its build, naming the columns
(macros/cdc/cdc_columns.sql, cdc_check_contract), and `ingest scaffold` says which model claims the table.

The case measured: a MySQL `inventory.customers` (name, balance, created_at) landed in
staging.inventory__customers, which the demo's inventory__customers models claim by name."""

import orjson
import pytest

from conftest import REPO, dbt, send

pytestmark = pytest.mark.integration


def test_a_table_that_differs_from_the_models_contract_fails_its_build_naming_the_columns(lake, tmp_path):
    topic = f"{lake.topic_prefix}.inventory.customers"
    events = [
        orjson.dumps(
            {
                "before": None,
                "after": {"id": i, "name": f"n{i}", "balance": "1.50", "created_at": 1795241515000},
                "op": "c",
                "source": {"ts_ms": 1795241515000, "db": "inventory", "table": "customers", "lsn": i},
            }
        )
        for i in range(3)
    ]
    send(lake, topic, events, keys=[b'{"id":%d}' % i for i in range(3)])
    lake.ingest("run", "--until-caught-up")

    build = dbt(lake, tmp_path, "build", "--select", "inventory__customers__history")
    assert build.returncode != 0
    message = " ".join(build.stdout.split())
    assert "model inventory__customers__history does not match" in message
    assert "staging columns the contract lacks: name, balance, created_at" in message
    assert "contract columns staging has never had: first_name, last_name, email" in message
    assert "phone" not in message.split("never had:")[1].split(";")[0]  # declared cdc_arrives_later

    scaffold = lake.ingest("scaffold", "--project-dir", str(REPO), "--table", "inventory.customers")
    assert "inventory__customers: has models already, left alone" in scaffold.stdout
    note = " ".join(scaffold.stdout.split())
    assert "claimed by model inventory__customers__history" in note
    assert "lacks staging's balance, created_at, name" in note
