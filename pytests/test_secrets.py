"""Secrets: no password or token appears in logs, errors or `ingest status`; SASL and SSL settings from the
environment reach librdkafka (checked against the real broker: librdkafka uses or refuses them, says so)."""

import subprocess
import time

import pytest

from conftest import ingest_command, start_ingest
from ingest.core.config import load_settings
from ingest.core.consumer import consumer_config
from ingest.core.logs import scrub

PASSWORD = "hunter2-Sup3rS3cret"
SECRETS_ENV = {
    "INGEST_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "INGEST_KAFKA__SASL_MECHANISM": "PLAIN",
    "INGEST_KAFKA__SASL_USERNAME": "alice",
    "INGEST_KAFKA__SASL_PASSWORD": PASSWORD,
}


@pytest.mark.parametrize(
    "text",
    [
        f"connect failed: password={PASSWORD} host=db",
        f"dbname=lake user=u password = {PASSWORD}",
        f"postgresql://alice:{PASSWORD}@db.example.com:5432/lake",
        f"token: {PASSWORD}",
        f"SECRET={PASSWORD}",
    ],
)
def test_scrub_hides_secrets_in_any_wording(text):
    assert PASSWORD not in scrub(text)


def test_sasl_and_ssl_settings_from_the_environment_reach_the_consumer_config(tmp_path):
    env = {**SECRETS_ENV, "INGEST_KAFKA__SSL_CA_LOCATION": "/etc/ssl/ca.pem"}
    settings = load_settings("dev", environ=env)
    config = consumer_config(settings)
    assert config["security.protocol"] == "SASL_PLAINTEXT" and config["sasl.mechanism"] == "PLAIN"
    assert config["sasl.username"] == "alice" and config["sasl.password"] == PASSWORD
    assert config["ssl.ca.location"] == "/etc/ssl/ca.pem"
    redacted = str(settings.redacted())
    assert PASSWORD not in redacted and "alice" in redacted


@pytest.mark.integration
def test_librdkafka_uses_the_sasl_settings_and_the_password_never_shows(lake, tmp_path):
    """Against the real broker: librdkafka starts the SASL handshake the settings ask for (the dev broker
    refuses it), the ingester reports it, and the password is nowhere in what it prints."""
    log_path = tmp_path / "ingest.log"
    with open(log_path, "w") as log_file:
        process = start_ingest(lake, "run", env=SECRETS_ENV, log_file=log_file)
        try:
            deadline = time.monotonic() + 60
            while "SASL" not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            process.terminate()
            process.wait(60)
    log = log_path.read_text()
    assert "SASL" in log, log[-3000:]
    assert PASSWORD not in log


@pytest.mark.integration
def test_an_ssl_setting_reaches_librdkafka(lake):
    """librdkafka checks ssl.ca.location when the client is created: its refusal proves the setting got there;
    the error is clear and carries no secret."""
    env = {
        "INGEST_KAFKA__SECURITY_PROTOCOL": "SSL",
        "INGEST_KAFKA__SSL_CA_LOCATION": "/nonexistent/ca.pem",
        "INGEST_KAFKA__SSL_KEY_PASSWORD": PASSWORD,
    }
    result = subprocess.run(
        ingest_command("run", "--until-caught-up"),
        env={**lake.env, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "ssl.ca.location" in result.stderr or "/nonexistent/ca.pem" in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert PASSWORD not in result.stderr + result.stdout


@pytest.mark.integration
def test_a_catalog_password_never_shows_in_errors(lake):
    dsn = f"postgresql://alice:{PASSWORD}@127.0.0.1:1/lake"
    env = {**lake.env, "INGEST_LAKE__CATALOG": dsn}
    result = subprocess.run(
        ingest_command("sql", "select 1"), env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert PASSWORD not in result.stderr + result.stdout, result.stderr[-2000:]
    assert "127.0.0.1" in result.stderr  # the error still says where it tried


@pytest.mark.integration
def test_ingest_status_shows_no_secret(lake):
    pytest.importorskip("ingest.ops.status", reason="`ingest status` has not landed")
    lake.ingest("run", "--until-caught-up")
    env = {**lake.env, **SECRETS_ENV, "INGEST_KAFKA__SASL_OAUTHBEARER_CONFIG": f"token={PASSWORD}"}
    for args in (["status", "--no-broker"], ["status", "--no-broker", "--json"], ["status", "--json"]):
        result = subprocess.run(ingest_command(*args), env=env, capture_output=True, text=True, timeout=120)
        assert PASSWORD not in result.stdout + result.stderr, args
    dsn = f"postgresql://alice:{PASSWORD}@127.0.0.1:1/lake"
    result = subprocess.run(
        ingest_command("status", "--no-broker"),
        env={**lake.env, "INGEST_LAKE__CATALOG": dsn},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and PASSWORD not in result.stdout + result.stderr
