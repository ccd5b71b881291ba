"""profiles/ingest.yml loading: targets, environment overrides, secrets only from the environment."""

from pathlib import Path

import pytest

from ingest.core.config import ConfigError, load_settings, redact
from ingest.core.consumer import consumer_config

REPO = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "ingest.yml").write_text(text)
    return tmp_path


def test_dev_target_needs_no_environment():
    settings = load_settings("dev", project_dir=REPO, environ={})
    assert settings.kafka.embedded is True
    assert settings.lake.catalog == "embedded"
    assert settings.batch.max_events == 10_000 and settings.batch.max_ms == 500
    assert settings.kafka.client["session.timeout.ms"] == "6000"


def test_environment_overrides_every_level():
    env = {
        "INGEST_BATCH__MAX_EVENTS": "7",
        "INGEST_TOPICS": "^x\\.",
        "INGEST_KAFKA__BOOTSTRAP_SERVERS": "kafka:9093",
        "INGEST_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "INGEST_KAFKA__EMBEDDED": "false",
        "INGEST_LAKE__DATA_PATH": "/data/lake",
    }
    settings = load_settings("dev", project_dir=REPO, environ=env)
    assert settings.batch.max_events == 7
    assert settings.topics == "^x\\."
    assert settings.kafka.client["bootstrap.servers"] == "kafka:9093"
    assert settings.kafka.client["sasl.mechanism"] == "SCRAM-SHA-512"
    assert settings.kafka.embedded is False
    assert settings.data_path == "/data/lake/"


def test_prod_takes_secrets_from_the_environment_and_redacts_them():
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "broker:9092",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_USERNAME": "svc",
        "KAFKA_SASL_PASSWORD": "hunter2",
        "LAKE_CATALOG_HOST": "pg",
        "LAKE_CATALOG_USER": "lake",
        "LAKE_DATA_PATH": "s3://bucket/lake",
    }
    settings = load_settings("prod", project_dir=REPO, environ=env)
    assert settings.kafka.client["sasl.password"] == "hunter2"
    assert settings.kafka.client["security.protocol"] == "SASL_SSL"
    assert settings.data_path == "s3://bucket/lake"
    assert "hunter2" not in str(settings.redacted())
    assert settings.redacted()["kafka"]["client"]["sasl.password"] == "***"


def test_prod_without_its_environment_says_which_variable_is_missing():
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        load_settings("prod", project_dir=REPO, environ={})


def test_literal_secret_in_yaml_is_refused(tmp_path):
    project = write_config(tmp_path, "dev:\n  kafka:\n    client:\n      sasl.password: hunter2\n")
    with pytest.raises(ConfigError, match="literal secret"):
        load_settings("dev", project_dir=project, environ={})


def test_unknown_target_and_unknown_key_are_clear_errors(tmp_path):
    project = write_config(tmp_path, "dev:\n  batchh: {}\n")
    with pytest.raises(ConfigError, match="target 'nope'"):
        load_settings("nope", project_dir=project, environ={})
    with pytest.raises(ConfigError, match="batchh"):
        load_settings("dev", project_dir=project, environ={})


def test_redact_hides_nested_secrets():
    assert redact({"a": {"ssl.key.password": "x", "token": "", "user": "u"}}) == {
        "a": {"ssl.key.password": "***", "token": "", "user": "u"}
    }


def test_the_consumer_keeps_fetching_while_its_prefetch_queue_is_full():
    """librdkafka's default fetch.queue.backoff.ms (1 s) stalled an ingester decoding a backlog: the project
    sets 10 ms (docs/benchmarks.md), and kafka.client can still set it."""
    settings = load_settings("dev", project_dir=REPO, environ={})
    assert consumer_config(settings)["fetch.queue.backoff.ms"] == 10
    environ = {"INGEST_KAFKA__FETCH_QUEUE_BACKOFF_MS": "500"}
    overridden = load_settings("dev", project_dir=REPO, environ=environ)
    assert consumer_config(overridden)["fetch.queue.backoff.ms"] == "500"


@pytest.mark.parametrize(
    ("message", "unreachable"),
    [
        ('IO Error: Failed to query most recent snapshot: Unable to connect to Postgres at "x"', True),
        ('TransactionContext Error: Failed to commit: Failed to execute query "ROLLBACK":', True),
        ("TransactionContext Error: Failed to commit: conflict: another transaction altered it", False),
    ],
)
def test_a_lost_catalog_is_told_apart_from_a_commit_conflict(message, unreachable):
    """An unreachable catalog is waited for as long as it takes; a conflict is retried a few times."""
    from ingest.core.sink import catalog_unreachable

    assert catalog_unreachable(RuntimeError(message)) is unreachable


def test_the_writer_connection_uses_the_configured_duckdb_threads():
    """Landing a batch with DuckDB's default threads cost ~30% more CPU than with one (docs/benchmarks.md):
    the writer connection takes lake.writer_threads (1 by default; the environment can change it)."""
    import duckdb

    from ingest.core.sink import LakeSink

    settings = load_settings("dev", project_dir=REPO, environ={})
    assert settings.lake.writer_threads == 1
    overridden = load_settings("dev", project_dir=REPO, environ={"INGEST_LAKE__WRITER_THREADS": "3"})
    for lake, threads in ((settings.lake, 1), (overridden.lake, 3)):
        sink = LakeSink.for_lake(duckdb.connect, lake)
        try:
            assert sink.con.execute("select current_setting('threads')").fetchone()[0] == threads
        finally:
            sink.close()


def test_a_misspelt_environment_variable_is_an_error_not_ignored():
    """pydantic-settings skips variables that name no setting; a typo fails as a misspelt YAML key does."""
    with pytest.raises(ConfigError, match="batchh"):
        load_settings("dev", project_dir=REPO, environ={"INGEST_BATCHH__MAX_EVENTS": "5"})
    with pytest.raises(ConfigError, match=r"batch\.max_event:"):
        load_settings("dev", project_dir=REPO, environ={"INGEST_BATCH__MAX_EVENT": "5"})


def test_a_bad_value_is_one_line_naming_the_key_and_hiding_a_secret():
    with pytest.raises(ConfigError) as bad:
        load_settings("dev", project_dir=REPO, environ={"INGEST_BATCH__MAX_EVENTS": "many"})
    assert "\n" not in str(bad.value) and "batch.max_events" in str(bad.value) and "'many'" in str(bad.value)
    with pytest.raises(ConfigError, match="INGEST_<SECTION>__<KEY>"):
        load_settings("dev", project_dir=REPO, environ={"INGEST_KAFKA": "x"})


def test_the_environment_wins_over_yaml_and_the_command_line_over_both():
    env = {"INGEST_TOPICS": "^env\\.", "INGEST_KAFKA__BOOTSTRAP_SERVERS": "env:1", "INGEST_TARGET": "dev"}
    settings = load_settings("dev", project_dir=REPO, environ=env, overrides={"topics": "^cli\\."})
    assert settings.topics == "^cli\\." and settings.kafka.client["bootstrap.servers"] == "env:1"
    assert settings.kafka.client["session.timeout.ms"] == "6000"  # YAML keys the environment leaves alone
