"""Every connector's position (ingest/core/position.py), from the source blocks its documentation shows
(Debezium 3.x: PostgreSQL and MySQL also as captured in the corpus and the MariaDB run; SQL Server, Oracle,
Db2 and Informix need servers this machine cannot run, so their blocks are written from the documentation's
examples), and what lands in staging."""

from pathlib import Path

import orjson
import pytest

from conftest import CORPUS, VARIANTS
from ingest.core.decode import ChangeRow, Decoder, RawRecord
from ingest.core.position import source_position, transaction_id
from ingest.devtools.corpus import read_variant

# The documentation's example source blocks (connector docs, "Change event values").
POSTGRES = {"connector": "postgresql", "name": "PostgreSQL_server", "lsn": 24023128, "txId": 555,
            "sequence": '["24023119","24023128"]', "schema": "public", "table": "customers"}  # fmt: skip
MYSQL = {"connector": "mysql", "name": "mysql-server-1", "server_id": 223344, "gtid": None,
         "file": "mysql-bin.000003", "pos": 484, "row": 0, "thread": 7, "db": "inventory",
         "table": "customers"}  # fmt: skip
SQLSERVER = {"connector": "sqlserver", "name": "server1", "change_lsn": "00000027:00000758:0003",
             "commit_lsn": "00000027:00000758:0005", "event_serial_no": "1", "db": "testDB",
             "schema": "dbo", "table": "customers"}  # fmt: skip
ORACLE = {"connector": "oracle", "name": "server1", "scn": "6031394", "commit_scn": "6031395",
          "ssn": 0, "schema": "DEBEZIUM", "table": "CUSTOMERS"}  # fmt: skip
DB2 = {"connector": "db2", "name": "myconnector", "change_lsn": "00000000:00000000:0000000000048fca",
       "commit_lsn": "00000000:00000000:0000000000048fcb", "db": "TESTDB", "schema": "DB2INST1"}  # fmt: skip
INFORMIX = {"connector": "informix", "name": "informix", "change_lsn": "2151778300",
            "commit_lsn": "2151778301", "begin_lsn": "2151777000", "db": "testdb"}  # fmt: skip


def test_each_connector_has_a_position_in_its_own_order():
    assert source_position(POSTGRES) == [24023128]
    assert source_position(MYSQL) == [3, 484, 0]
    assert source_position(SQLSERVER) == [0x27, 0x758, 5, 0x27, 0x758, 3, 1]
    assert source_position(ORACLE) == [6031395, 6031394, 0]
    assert source_position(ORACLE, {"id": "0a0012", "total_order": 7}) == [6031395, 6031394, 7]
    assert source_position(DB2) == [0, 0, 0x48FCB, 0, 0, 0x48FCA]
    assert source_position(INFORMIX) == [2151778301, 2151778300]
    # later in the log sorts later, element by element: the next binlog file, the next row of one event
    assert source_position({**MYSQL, "file": "mysql-bin.000004", "pos": 4}) > source_position(MYSQL)
    assert source_position({**MYSQL, "row": 1}) > source_position(MYSQL)
    assert source_position({"connector": "mongodb", "ord": 1}) is None
    assert source_position({**POSTGRES, "lsn": None}) is None
    assert source_position({**MYSQL, "file": "no-number"}) is None


def test_the_transaction_id_is_the_sources_else_the_transaction_blocks():
    assert transaction_id(POSTGRES, {"id": "555:24023128"}) == "555"
    assert transaction_id(MYSQL, {"id": "file=mysql-bin.000003,pos=154"}) == "file=mysql-bin.000003,pos=154"
    assert transaction_id({**MYSQL, "gtid": "3e11fa47-71ca-11e1-9e33-c80aa9429562:23"}, None) == (
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:23"
    )
    assert transaction_id(MYSQL, None) is None


@pytest.mark.parametrize("source", [POSTGRES, MYSQL, SQLSERVER, ORACLE, DB2, INFORMIX])
def test_the_decoder_lands_the_position_and_transaction_of_every_connector(source):
    value = {"op": "c", "after": {"id": 1}, "source": source, "transaction": {"id": "tx-1", "total_order": 1}}
    row = Decoder().decode(RawRecord("server1.db.customers", 0, 0, b'{"id":1}', orjson.dumps(value)))
    assert isinstance(row, ChangeRow), row
    assert row.position == source_position(source, value["transaction"]) and row.position is not None
    assert row.tx_id == transaction_id(source, value["transaction"])


@pytest.mark.skipif(not VARIANTS, reason="corpus not present")
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_postgres_events_position_is_its_lsn(variant):
    decoder = Decoder()
    rows = [
        decoder.decode(RawRecord(r.topic, r.partition, r.offset, r.key, r.value))
        for r in read_variant(Path(CORPUS) / variant)
    ]
    changes = [r for r in rows if isinstance(r, ChangeRow)]
    assert len(changes) > 50
    assert all(r.position == [r.lsn] for r in changes)


@pytest.mark.integration
def test_a_staging_table_made_before_the_position_gets_it_with_its_next_batch(lake):
    from conftest import send

    topic = f"{lake.topic_prefix}.s.items"

    def events(first: int) -> list[bytes]:
        source = {"connector": "mysql", "file": "mysql-bin.000002", "pos": 100 + first, "row": 0}
        return [
            orjson.dumps({"op": "c", "after": {"id": i}, "source": {**source, "pos": 100 + i}})
            for i in range(first, first + 2)
        ]

    send(lake, topic, events(0))
    lake.ingest("run", "--until-caught-up")
    con = lake.connect()
    try:
        con.execute("alter table lake.staging.s__items drop column _cdc_position")  # as an older lake's
    finally:
        con.close()
    send(lake, topic, events(2))
    lake.ingest("run", "--until-caught-up")
    rows = lake.query("select id, _cdc_position from lake.staging.s__items order by id")
    assert rows == [(0, None), (1, None), (2, [2, 102, 0]), (3, [2, 103, 0])]
