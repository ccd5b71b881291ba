"""A change event's position in its source's log, as one sortable value, for every Debezium connector.

`_cdc_position` (BIGINT[]) orders the changes of one source the way its connector defines, compared
element by element; positions of two sources are not comparable (one staging table holds one source). The
Kafka position is no substitute: it changes when a topic is produced again or the broker is replaced.

    connector        source fields (Debezium 3.x documentation)              position
    postgresql       lsn (the change's WAL position)                         [lsn]
    mysql, mariadb   file (mysql-bin.000003), pos (of the event), row        [file number, pos, row]
    sqlserver        commit_lsn, change_lsn (00000027:00000758:0005),        [*commit_lsn, *change_lsn,
                     event_serial_no                                          event_serial_no]
    oracle           commit_scn, scn; the transaction block's total_order    [commit_scn, scn, order]
                     (else ssn)
    db2              commit_lsn, change_lsn (hex, `:`-separated)             [*commit_lsn, *change_lsn]
    informix         commit_lsn, change_lsn                                  [commit_lsn, change_lsn]

PostgreSQL's `lsn` alone orders the changes of one row: two transactions cannot change one row at once
(row locks), and a TRUNCATE waits for every transaction on its table, so the commit LSN adds nothing there.
A MySQL binlog position belongs to one server: after a failover to a replica the file numbers restart
elsewhere and positions of the two servers do not compare (GTIDs would; the connector's `gtid` is kept in
`_cdc_tx_id` where the transaction block has none). Pure, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Position = list[int]
_INT64_MAX = 2**63 - 1
_FILE_NUMBER = re.compile(r"(\d+)$")


def _integer(value: Any) -> int | None:
    """An integer field, which connectors send as a JSON number or as its text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _hex_lsn(value: Any) -> list[int] | None:
    """An LSN written as `:`-separated hex parts (SQL Server `00000027:00000758:0005`, Db2)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parts = [int(part, 16) for part in value.split(":")]
    except ValueError:
        return None
    return parts if all(p <= _INT64_MAX for p in parts) else None


def _all(*parts: int | list[int] | None) -> Position | None:
    flat: Position = []
    for part in parts:
        if part is None:
            return None
        flat.extend(part if isinstance(part, list) else [part])
    return flat if all(0 <= p <= _INT64_MAX for p in flat) else None


def lsn_position(lsn: int | None) -> Position | None:
    """A PostgreSQL event's position: its LSN (the decoders' common case, taken without the rules below)."""
    return [lsn] if lsn is not None and 0 <= lsn <= _INT64_MAX else None


def source_position(
    source: Mapping[str, Any], transaction: Mapping[str, Any] | None = None
) -> Position | None:
    """The event's position (see the table above), or None where its source block has none."""
    connector = source.get("connector")
    if connector == "postgresql" or (connector is None and "lsn" in source):
        return lsn_position(_integer(source.get("lsn")))
    if connector in ("mysql", "mariadb") or (connector is None and "file" in source):
        file_name = source.get("file")
        match = _FILE_NUMBER.search(file_name) if isinstance(file_name, str) else None
        number = int(match.group(1)) if match else None
        return _all(number, _integer(source.get("pos")), _integer(source.get("row")) or 0)
    if connector == "sqlserver":
        change = _hex_lsn(source.get("change_lsn")) or [0, 0, 0]
        return _all(_hex_lsn(source.get("commit_lsn")), change, _integer(source.get("event_serial_no")) or 0)
    if connector == "oracle":
        order = _integer((transaction or {}).get("total_order")) or _integer(source.get("ssn")) or 0
        return _all(_integer(source.get("commit_scn")), _integer(source.get("scn")), order)
    if connector == "db2":
        return _all(_hex_lsn(source.get("commit_lsn")), _hex_lsn(source.get("change_lsn")))
    if connector == "informix":
        return _all(_integer(source.get("commit_lsn")), _integer(source.get("change_lsn")))
    return None


def transaction_id(source: Mapping[str, Any], transaction: Mapping[str, Any] | None) -> str | None:
    """The source transaction: `source.txId` where the connector sends it (PostgreSQL), else the
    transaction block's `id` (MySQL `file=...,pos=...`, SQL Server's commit LSN), else MySQL's `gtid`."""
    tx_id = source.get("txId")
    if tx_id is not None:
        return str(tx_id)
    block_id = (transaction or {}).get("id")
    if isinstance(block_id, str):
        return block_id
    gtid = source.get("gtid")
    return gtid if isinstance(gtid, str) else None
