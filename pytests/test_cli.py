"""The `ingest` command line: graceful stop, `ingest sql`, topic kinds that are skipped."""

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, produce_items, wait_for
from ingest.core.decode import Decoder, RawRecord, Skipped, classify_topic
from ingest.embedded.broker import ensure_topics


def test_topic_kinds_follow_debezium_naming():
    assert classify_topic("dbserver1.inventory.customers").table == "inventory__customers"
    assert classify_topic("dbserver1.transaction").kind == "transaction"
    assert classify_topic("dbserver1.message").kind == "message"
    assert classify_topic("__debezium-heartbeat.dbserver1").kind == "heartbeat"
    assert classify_topic("dbserver1").kind == "schema_change"
    assert classify_topic("prefix.db.schema.table").table == "db__schema__table"


def test_heartbeats_and_schema_change_topics_are_skipped_unless_configured():
    decoder = Decoder()
    heartbeat = decoder.decode(RawRecord("__debezium-heartbeat.dbserver1", 0, 0, None, b'{"ts_ms": 1}'))
    schema_change = decoder.decode(RawRecord("dbserver1", 0, 0, None, b'{"ddl": "create table x"}'))
    assert isinstance(heartbeat, Skipped) and heartbeat.reason == "heartbeat"
    assert isinstance(schema_change, Skipped) and schema_change.reason == "schema_change"
    landing = Decoder(skip_heartbeats=False).decode(RawRecord("__debezium-heartbeat.x", 0, 0, None, b"{}"))
    assert not isinstance(landing, Skipped)


@pytest.mark.integration
def test_sigterm_finishes_the_batch_in_flight_and_exits_zero(lake, tmp_path):
    topic = f"{lake.topic_prefix}.s.items"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=1)
    produce_items(lake, topic, 0, 5000)
    env = {**lake.env, "INGEST_BATCH__MAX_MS": "60000", "INGEST_BATCH__MAX_EVENTS": "1000000"}
    log_path = tmp_path / "ingest.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "run"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            text=True,
        )
        # Start-up and the group join take seconds under load (a fixed wait missed them in CI): once the
        # partition is given, 5,000 records are read within a second; the 60 s batch is still open then.
        wait_for(
            lambda: "assigned 1 partitions" in log_path.read_text(), 120, "the assignment", log_path, process
        )
        time.sleep(3)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    stderr = log_path.read_text()
    assert process.returncode == 0, stderr
    assert "SIGTERM received" in stderr
    assert lake.query("select count(*) from lake.staging.s__items") == [(5000,)]


@pytest.mark.integration
def test_sql_prints_rows_as_a_table_or_json_lines(lake):
    topic = f"{lake.topic_prefix}.s.items"
    ensure_topics({"bootstrap.servers": lake.settings.kafka.bootstrap_servers}, [topic], partitions=1)
    produce_items(lake, topic, 0, 3)
    lake.ingest("run", "--until-caught-up")
    rows = lake.ingest("sql", "select id, _cdc_op from staging.s__items order by id", "--json").stdout
    assert [json.loads(line) for line in rows.splitlines()] == [{"id": i, "_cdc_op": "c"} for i in range(3)]
    table = lake.ingest("sql", "select count(*) as n from staging.s__items").stdout
    assert "n" in table and "3" in table
    reals = lake.ingest(
        "sql", "select 0.15::float as r, [0.1::float] as rs, 0.15::double as d", "--json"
    ).stdout
    assert json.loads(reals) == {"r": 0.15, "rs": [0.1], "d": 0.15}  # a real by its float32 form
    bad = lake.ingest("sql", "select * from no_such_table", check=False)
    assert bad.returncode == 1 and "no_such_table" in bad.stderr


@pytest.mark.parametrize(
    ("sql_value", "printed"),
    [
        ("0.15", 0.15),
        ("-2.5e-8", -2.5e-8),
        ("3.4028235e38", 3.4028235e38),
        ("1e-45", 1e-45),
        ("16777217", 16777216.0),
    ],
)
def test_a_real_prints_by_its_shortest_float32_form(sql_value, printed):
    import duckdb

    from ingest.cli.query import as_single_precision

    cursor = duckdb.connect().execute(
        f"select {sql_value}::float, [{sql_value}::float], {{'x': {sql_value}::float}}"
    )
    row, types = cursor.fetchone(), [d[1] for d in cursor.description]
    assert row[0] != printed or sql_value == "16777217"  # DuckDB hands it over as a double
    assert [as_single_precision(v, t) for v, t in zip(row, types, strict=True)] == [
        printed,
        [printed],
        {"x": printed},
    ]


# ------------------------------------------------------------------------ failures: one line, exit 1
def _failing_app(error: BaseException):
    from ingest.cli.errors import IngestTyper

    app = IngestTyper(pretty_exceptions_enable=False)

    @app.command()
    def boom() -> None:
        raise error

    @app.command()
    def fine() -> None:
        pass

    return app


def _run_app(app, capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        app(list(args), prog_name="ingest")
    return stopped.value.code, capsys.readouterr().err


@pytest.fixture
def no_debug(monkeypatch):
    from ingest.cli import errors

    monkeypatch.delenv("INGEST_DEBUG", raising=False)
    monkeypatch.setattr(errors, "_debug", False)


def test_an_unexpected_exception_is_one_line_and_exit_1_without_a_traceback(capsys, no_debug):
    code, err = _run_app(_failing_app(KeyError("x")), capsys, "boom")
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: unexpected KeyError") and "--debug" in err


def test_with_debug_the_traceback_is_shown_too(capsys, monkeypatch, no_debug):
    monkeypatch.setenv("INGEST_DEBUG", "1")
    code, err = _run_app(_failing_app(KeyError("x")), capsys, "boom")
    assert (
        code == 1
        and "Traceback" in err
        and err.rstrip().endswith(
            "error: unexpected KeyError: 'x' (a bug? rerun with --debug for the traceback)"
        )
    )


def test_click_exits_and_usage_errors_pass_through(capsys, no_debug):
    app = _failing_app(KeyError("x"))
    assert _run_app(app, capsys, "fine")[0] == 0
    code, err = _run_app(app, capsys, "nope")
    assert code == 2 and "No such command" in err


def test_the_one_line_names_the_problem_and_never_a_password():
    import duckdb
    from confluent_kafka import KafkaError, KafkaException

    from ingest.cli.errors import describe
    from ingest.core.config import ConfigError

    assert describe(ConfigError("target 'x' is not in\n  ingest.yml")) == "target 'x' is not in ingest.yml"
    lost = duckdb.IOException('Failed to attach: Unable to connect to Postgres at "host=db password=pw"')
    assert "is the catalog PostgreSQL up" in describe(lost)
    assert describe(KafkaException(KafkaError(KafkaError._TRANSPORT))).startswith("Kafka: ")
    assert describe(FileNotFoundError(2, "No such file or directory", "x")).endswith(
        "No such file or directory: 'x'"
    )
    from ingest.cli.errors import report

    assert report(lost) == 1


def test_a_password_in_an_unexpected_error_is_scrubbed(capsys, no_debug):
    code, err = _run_app(_failing_app(RuntimeError("connect password=hunter2 failed")), capsys, "boom")
    assert code == 1 and "hunter2" not in err


def test_ingest_debug_is_not_read_as_a_setting():
    from ingest.core.config import load_settings

    assert load_settings("dev", project_dir=REPO, environ={"INGEST_DEBUG": "1"}).target == "dev"


def test_the_command_line_fails_in_one_line_and_shows_the_traceback_with_debug(tmp_path):
    command = [sys.executable, "-m", "ingest.cli"]
    env = {"PATH": "/usr/bin:/bin", "INGEST_LAKE__STATE_DIR": str(tmp_path)}
    plain = subprocess.run(
        [*command, "status", "--target", "nope"], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert plain.returncode == 1
    assert plain.stderr.startswith("error: target 'nope' is not in") and plain.stderr.count("\n") == 1
    debug = subprocess.run(
        [*command, "--debug", "status", "--target", "nope"], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr
    corpus = subprocess.run(
        [*command, "produce-corpus", str(tmp_path / "none")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert corpus.returncode == 1 and "no *.jsonl files" in corpus.stderr and "Traceback" not in corpus.stderr


def test_a_port_held_by_something_that_is_not_kafka_is_said_in_one_line(tmp_path):
    import socket
    import threading

    from ingest.embedded.broker import BrokerError, EmbeddedBroker

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def answer_nonsense() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            connection.close()

    threading.Thread(target=answer_nonsense, daemon=True).start()
    try:
        with pytest.raises(BrokerError, match="does not answer as a Kafka broker"):
            EmbeddedBroker(tmp_path, port).start()
    finally:
        server.close()


@pytest.mark.integration
def test_run_uses_a_kafka_broker_already_listening_at_the_given_address(lake, tmp_path):
    """`ingest run --bootstrap-servers` on the dev target (embedded broker) when a broker it did not start
    already listens there: it is used (it used to stop with 'port ... is taken')."""
    from conftest import free_port
    from ingest.embedded.broker import EmbeddedBroker

    elsewhere = EmbeddedBroker(tmp_path / "someone-elses", free_port())  # its pid file is not ours
    elsewhere.start()
    try:
        topic = f"{lake.topic_prefix}.s.items"
        ensure_topics({"bootstrap.servers": elsewhere.bootstrap_servers}, [topic], partitions=1)
        lake.settings.kafka.client["bootstrap.servers"] = elsewhere.bootstrap_servers
        produce_items(lake, topic, 0, 5)
        lake.env["INGEST_KAFKA__EMBEDDED"] = "true"
        result = lake.ingest("run", "--until-caught-up", "--bootstrap-servers", elsewhere.bootstrap_servers)
        assert "not started by ingest" in result.stderr
        assert lake.query("select count(*) from lake.staging.s__items") == [(5,)]
    finally:
        elsewhere.stop()


def test_lake_connections_draw_no_progress_bar():
    """DuckDB draws a progress bar on stdout for a query over 2 s: `ingest sql --json` printed one before its
    rows (a lake on S3 made a count take that long). Every lake connection turns it off."""
    import duckdb

    from ingest.core.config import load_settings
    from ingest.core.lake import prepare_connection

    con = duckdb.connect()
    try:
        prepare_connection(con, load_settings("dev", project_dir=REPO, environ={}))
        assert con.execute("select current_setting('enable_progress_bar')").fetchone()[0] is False
    finally:
        con.close()
