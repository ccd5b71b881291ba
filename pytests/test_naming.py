"""Which staging table a topic lands in (pure), and the refusal of two topics sharing one."""

import pytest

from ingest.core.decode import classify_topic, colliding_topics
from ingest.core.naming import TableNaming


def test_the_default_name_is_schema_and_table():
    naming = TableNaming()
    assert naming.table_of("dbserver1.inventory.customers") == "inventory__customers"
    assert naming.table_of("sqlserver1.shop.dbo.orders") == "shop__dbo__orders"  # <database>.<schema>
    assert naming.table_of("dbserver1.customers") == "customers"
    assert classify_topic("dbserver1.inventory.customers").table == "inventory__customers"


def test_a_template_with_the_server_keeps_two_sources_apart():
    naming = TableNaming("{server}__{schema}__{table}")
    assert naming.table_of("dbserver1.inventory.customers") == "dbserver1__inventory__customers"
    assert naming.table_of("otherdb.inventory.customers") == "otherdb__inventory__customers"
    assert naming.table_of("dbserver1.customers") == "dbserver1__customers"
    explicit = TableNaming(explicit={"otherdb.inventory.customers": "mysql_customers"})
    assert explicit.table_of("otherdb.inventory.customers") == "mysql_customers"
    assert explicit.table_of("dbserver1.inventory.customers") == "inventory__customers"


@pytest.mark.parametrize(
    ("template", "explicit"),
    [("{schema}", {}), ("{server}__{db}__{table}", {}), ("_{table}", {}), ("{table}", {"a.b.c": "_x"})],
)
def test_a_naming_that_cannot_work_is_refused(template, explicit):
    with pytest.raises(ValueError):
        TableNaming(template, explicit)


def test_two_topics_landing_in_one_table_collide():
    topics = ["dbserver1.inventory.customers", "otherdb.inventory.customers", "dbserver1.transaction"]
    assert colliding_topics(topics, TableNaming()) == {
        "inventory__customers": ["dbserver1.inventory.customers", "otherdb.inventory.customers"]
    }
    assert colliding_topics(topics, TableNaming("{server}__{schema}__{table}")) == {}


@pytest.mark.integration
def test_two_sources_with_one_schema_land_side_by_side_with_the_template_and_collide_without(lake):
    from conftest import CORPUS
    from ingest.devtools.corpus import produce, read_variant

    first, second = lake.topic_prefix, lake.topic_prefix + "x"
    lake.env["INGEST_TOPICS"] = rf"^{first}x?\."
    sent = 0
    for server in (first, second):
        records = [
            r
            for r in read_variant(CORPUS / "precise-schemas", topic_prefix=server)
            if r.topic.endswith(".inventory.customers")
        ]
        produce(records, lake.settings.kafka.client)
        sent = len([r for r in records if r.value is not None])
    refused = lake.ingest("run", "--until-caught-up", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (
        f"topics {first}.inventory.customers, {second}.inventory.customers would all land in "
        "staging.inventory__customers: set staging_table to '{server}__{schema}__{table}'"
    ) in refused.stderr
    assert not lake.query("select * from duckdb_tables() where table_name like '%customers%'")

    lake.env["INGEST_STAGING_TABLE"] = "{server}__{schema}__{table}"
    lake.ingest("run", "--until-caught-up")
    for server in (first, second):
        table = f"lake.staging.{server}__inventory__customers"
        assert lake.query(f"select count(*), count(distinct _kafka_topic) from {table}") == [(sent, 1)]
    assert lake.query("select count(*) from lake.staging._cdc_tables") == [(2,)]


def test_rows_of_another_source_table_never_land_in_a_table_another_topic_holds():
    from ingest.core.rows import Origin
    from ingest.core.sink import TableEntry, other_source

    entry = TableEntry(
        "inventory__customers", "a.inventory.customers", "inventory", "customers", ["id"], {}, "connect"
    )
    assert other_source(entry, Origin("a.inventory.customers", "inventory", "customers")) is None
    # the same source table under a new topic (re-created by another name) continues it
    assert other_source(entry, Origin("b.inventory.customers", "inventory", "customers")) is None
    reason = other_source(entry, Origin("b.inventory.orders", "inventory", "orders"))
    assert reason is not None and "rows of inventory.orders (topic b.inventory.orders)" in reason
    assert "which holds inventory.customers (topic a.inventory.customers)" in reason
