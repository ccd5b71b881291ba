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
        "LAKE_S3_KEY_ID": "AKIDEXAMPLE",
        "LAKE_S3_SECRET": "s3-hunter2",
    }
    settings = load_settings("prod", project_dir=REPO, environ=env)
    assert settings.kafka.client["sasl.password"] == "hunter2"
    assert settings.kafka.client["security.protocol"] == "SASL_SSL"
    assert settings.data_path == "s3://bucket/lake"
    assert "hunter2" not in str(settings.redacted())
    assert settings.redacted()["kafka"]["client"]["sasl.password"] == "***"
    assert settings.redacted()["lake"]["s3"]["secret"] == "***"
    assert settings.lake.s3.secret.get_secret_value() == "s3-hunter2"
    assert "s3-hunter2" not in repr(settings) + str(settings) + settings.model_dump_json()


S3_PROD = {
    "KAFKA_BOOTSTRAP_SERVERS": "broker:9092",
    "LAKE_CATALOG_HOST": "pg",
    "LAKE_CATALOG_USER": "lake",
    "LAKE_DATA_PATH": "s3://bucket/prefix",
}


def test_prod_s3_settings_come_from_the_lake_s3_variables():
    env = {
        **S3_PROD,
        "LAKE_S3_KEY_ID": "AKIDEXAMPLE",
        "LAKE_S3_SECRET": "s3-hunter2",
        "LAKE_S3_ENDPOINT": "minio.internal:9000",
        "LAKE_S3_REGION": "eu-west-1",
        "LAKE_S3_URL_STYLE": "path",
        "LAKE_S3_USE_SSL": "false",
    }
    s3 = load_settings("prod", project_dir=REPO, environ=env).lake.s3
    assert (s3.key_id, s3.endpoint, s3.region, s3.url_style, s3.use_ssl) == (
        "AKIDEXAMPLE", "minio.internal:9000", "eu-west-1", "path", False
    )  # fmt: skip
    defaults = load_settings(
        "prod", project_dir=REPO, environ={**S3_PROD, "LAKE_S3_KEY_ID": "k", "LAKE_S3_SECRET": "s"}
    ).lake.s3
    assert (defaults.endpoint, defaults.region, defaults.url_style, defaults.use_ssl) == (
        "", "us-east-1", "vhost", True
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"lake\.s3\.url_style"):
        load_settings("prod", project_dir=REPO, environ={**env, "LAKE_S3_URL_STYLE": "virtual"})


@pytest.mark.parametrize(
    ("target", "env", "named"),
    [
        (
            "prod",
            S3_PROD,
            "LAKE_S3_KEY_ID (the S3 access key id) and LAKE_S3_SECRET (the S3 secret access key)",
        ),
        ("prod", {**S3_PROD, "LAKE_S3_KEY_ID": "k"}, "LAKE_S3_SECRET (the S3 secret access key)"),
        (
            "dev",
            {"INGEST_LAKE__DATA_PATH": "s3://bucket/prefix", "INGEST_LAKE__S3__SECRET": "s"},
            "INGEST_LAKE__S3__KEY_ID (the S3 access key id)",
        ),
    ],
)
def test_an_s3_data_path_without_credentials_names_the_variables_to_set(target, env, named):
    with pytest.raises(ConfigError) as missing:
        load_settings(target, project_dir=REPO, environ=env)
    assert str(missing.value) == f"lake.data_path is s3://bucket/prefix (target {target}): set {named}"


def test_without_s3_no_s3_credentials_are_needed():
    env = {k: v for k, v in S3_PROD.items() if k != "LAKE_DATA_PATH"}
    assert not load_settings("prod", project_dir=REPO, environ={**env, "LAKE_DATA_PATH": "/data"}).on_s3


def test_the_s3_secret_duckdb_gets_is_scoped_to_the_bucket(tmp_path):
    import duckdb

    from ingest.core.lake import connection_config, install_extensions, prepare_connection, s3_secret_sql

    env = {
        **S3_PROD,
        "LAKE_S3_KEY_ID": "AKIDEXAMPLE",
        "LAKE_S3_SECRET": "it's-secret",
        "LAKE_S3_ENDPOINT": "127.0.0.1:8333",
        "LAKE_S3_URL_STYLE": "path",
        "LAKE_S3_USE_SSL": "false",
    }
    sql = s3_secret_sql(load_settings("prod", project_dir=REPO, environ=env))
    assert sql == (
        "create or replace secret lake_s3 (type s3, key_id 'AKIDEXAMPLE', secret 'it''s-secret', "
        "region 'us-east-1', url_style 'path', use_ssl 'false', scope 's3://bucket', "
        "endpoint '127.0.0.1:8333')"
    )
    # DuckDB takes it, httpfs autoloaded from the project's extension directory, and never shows the secret
    settings = load_settings("prod", project_dir=REPO, environ={**env, "LAKE_STATE_DIR": str(tmp_path)})
    install_extensions(settings.extension_dir)
    con = duckdb.connect(config=connection_config(settings))
    try:
        prepare_connection(con, settings)
        (name, kind, scope, shown), *others = con.execute(
            "select name, type, scope, secret_string from duckdb_secrets()"
        ).fetchall()
    finally:
        con.close()
    assert (name, kind, scope, others) == ("lake_s3", "s3", ["s3://bucket"], [])
    assert "it's-secret" not in shown and "secret=redacted" in shown


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


def test_ingest_sql_on_s3_without_a_secret_stops_with_one_line_naming_the_variable(tmp_path):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", **S3_PROD, "LAKE_S3_KEY_ID": "k", "LAKE_STATE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "sql", "--target", "prod", "select 1"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "error: lake.data_path is s3://bucket/prefix (target prod): "
        "set LAKE_S3_SECRET (the S3 secret access key)\n"
    )
