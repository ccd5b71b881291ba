"""Ingester configuration: `profiles/ingest.yml`, one section per target, overridable from the environment.

Precedence (last wins): the YAML section of the target, then `INGEST_*` environment variables (read by
pydantic-settings), then the command line's options.
`${VAR}` and `${VAR:-default}` in YAML values are expanded from the environment. Secrets (any key that
names a password, secret, token or private key) may only come from the environment: a literal secret in
the YAML file is refused, so nobody commits one by accident.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import EnvSettingsSource, SettingsError

from ingest.core.naming import TableNaming

ENV_PREFIX = "INGEST_"
SECRET_KEY_PATTERN = re.compile(r"(password|secret|token|private|credential|sasl\.oauthbearer\.config)", re.I)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
REDACTED = "***"
# INGEST_* variables that are not keys of ingest.yml: the target to load, the CLI's --debug
NOT_SETTINGS = frozenset({"INGEST_TARGET", "INGEST_DEBUG"})


class ConfigError(ValueError):
    """The configuration cannot be used; the message says what to change."""


class BatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_events: int = Field(10_000, gt=0, description="close a micro-batch after this many events")
    max_ms: int = Field(500, gt=0, description="close a micro-batch after this many milliseconds")
    sql_decoding: bool = Field(
        True,
        description="decode chunks of plain change events in DuckDB instead of record by record in Python "
        "(same results, a fraction of the CPU; anything not plain is still decoded in Python)",
    )


class S3Settings(BaseModel):
    """How DuckDB's httpfs reaches the object store when `lake.data_path` is `s3://bucket/prefix`."""

    model_config = ConfigDict(extra="forbid")
    key_id: str = Field("", description="S3 access key id")
    secret: SecretStr = Field(SecretStr(""), description="S3 secret access key (never shown)")
    endpoint: str = Field("", description="host[:port] of the S3 API; empty: AWS S3")
    region: str = Field("us-east-1", description="S3 region")
    url_style: Literal["vhost", "path"] = Field(
        "vhost", description="'vhost' (bucket.host, AWS) or 'path' (host/bucket, most other servers)"
    )
    use_ssl: bool = Field(True, description="HTTPS to the endpoint")


class LakeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    catalog: str = Field(
        "embedded",
        description="'embedded' (a PostgreSQL the project runs itself) or a libpq connection string",
    )
    data_path: str = Field(".lake/data", description="where DuckLake writes Parquet files (path or URL)")
    state_dir: str = Field(".lake", description="local state: embedded catalog, extensions, broker, locks")
    catalog_database: str = Field("lake", description="database of the embedded catalog")
    s3: S3Settings = Field(default_factory=S3Settings, description="object store of an s3:// data_path")
    commit_retries: int = Field(8, ge=0, description="attempts for a conflicting lake commit")
    writer_threads: int = Field(
        1,
        gt=0,
        description="DuckDB threads of the connection that lands batches: one batch gains nothing from more "
        "(measured: 1 thread lands a 10,000-event batch with ~30% less CPU than 2), and on few cores extra "
        "threads take CPU from decoding",
    )


class KafkaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    embedded: bool = Field(False, description="start the development broker (Tansu) if it is not running")
    topic_partitions: int = Field(1, gt=0, description="partitions of topics the project creates itself")
    client: dict[str, str] = Field(default_factory=dict, description="librdkafka settings, passed through")

    @field_validator("client", mode="before")
    @classmethod
    def _stringify(cls, value: Mapping[str, Any]) -> dict[str, str]:
        return {str(k): _librdkafka_value(v) for k, v in (value or {}).items()}

    @property
    def bootstrap_servers(self) -> str:
        return self.client.get("bootstrap.servers", "")


class IngestSettings(BaseModel):
    # Not a pydantic-settings BaseSettings: that reads os.environ on every validation (model_validate too),
    # and `load_settings` reads the environment it is given (tests, the dbt plugin pass their own).
    model_config = ConfigDict(extra="forbid")
    target: str = "dev"
    project_dir: Path = Field(default_factory=Path.cwd)
    topics: str = Field(r"^dbserver1\.", description="regular expression of the topics to consume")
    group_id: str = Field("cdc-ingest", description="consumer group, used only to report lag to the broker")
    skip_heartbeats: bool = True
    skip_schema_changes: bool = True
    staging_table: str = Field(
        "{schema}__{table}",
        description="staging table of a topic <server>.<schema>.<table>: a template of {server}, {schema}, "
        "{table} ({server}__{schema}__{table} keeps sources with one schema name apart)",
    )
    staging_tables: dict[str, str] = Field(
        default_factory=dict, description="staging table per topic, where the template does not fit"
    )
    types_dir: str = Field(
        "profiles/types", description="types files (`ingest types pull`) for events without Connect schemas"
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="serve Prometheus metrics on this port (0: any free port; unset: off)",
    )
    metrics_host: str = Field("127.0.0.1", description="address the metrics endpoint listens on")
    dbt_build_every: str | None = Field(None, description="continuous mode: run `dbt build` this often (30s)")
    dbt_select: str | None = Field(None, description="continuous mode: dbt --select for those builds")
    log_format: str = "text"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)

    @model_validator(mode="after")
    def _staging_names(self) -> IngestSettings:
        TableNaming(self.staging_table, self.staging_tables)  # ValueError: the rule it breaks
        return self

    def path(self, value: str) -> Path:
        """A configured path, relative to the project directory unless absolute."""
        p = Path(value)
        return p if p.is_absolute() else self.project_dir / p

    @property
    def state_dir(self) -> Path:
        return self.path(self.lake.state_dir)

    @property
    def data_path(self) -> str:
        if "://" in self.lake.data_path:
            return self.lake.data_path
        return str(self.path(self.lake.data_path)).rstrip("/") + "/"

    @property
    def on_s3(self) -> bool:
        """The data files live on an object store (DuckDB's httpfs and `lake.s3` reach it)."""
        return self.lake.data_path.startswith("s3://")

    @property
    def extension_dir(self) -> Path:
        return self.state_dir / "extensions"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with every secret replaced, for logs and `ingest status`."""
        return redact(self.model_dump(mode="json"))


def _librdkafka_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` holding `profiles/ingest.yml` (else `start`)."""
    explicit = os.environ.get("CDC_PROJECT_DIR")
    if explicit:
        return Path(explicit).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "profiles" / "ingest.yml").is_file():
            return candidate
    return here


def expand_env(value: Any, environ: Mapping[str, str]) -> Any:
    """Expand `${VAR}` / `${VAR:-default}` in every string of a YAML tree."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set (referenced in ingest.yml)")

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {k: expand_env(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, environ) for v in value]
    return value


def refuse_literal_secrets(tree: Any, path: str = "") -> None:
    """Raise if a secret-looking key carries a literal value instead of a `${VAR}` reference."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            here = f"{path}.{key}" if path else str(key)
            literal = isinstance(value, str) and value and not _ENV_REF.fullmatch(value.strip())
            if SECRET_KEY_PATTERN.search(str(key)) and literal:
                raise ConfigError(
                    f"{here} holds a literal secret in ingest.yml; write it as ${{SOME_ENV_VAR}} "
                    "and set that variable in the environment"
                )
            refuse_literal_secrets(value, here)


class _Environment(EnvSettingsSource):
    """pydantic-settings' reading of INGEST_* variables, from a given mapping instead of os.environ."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        # INGEST_<KEY>, INGEST_<SECTION>__<KEY>, any case
        super().__init__(
            IngestSettings,  # type: ignore[arg-type]  # only its fields are read
            case_sensitive=False,
            env_prefix=ENV_PREFIX,
            env_nested_delimiter="__",
        )
        self.env_vars = {name.lower(): value for name, value in environ.items()}  # case-insensitive names


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`INGEST_BATCH__MAX_EVENTS=5` -> {batch: {max_events: 5}}; `INGEST_KAFKA__SASL_PASSWORD` ->
    {kafka: {client: {sasl.password: ...}}} (librdkafka keys use dots where the variable has underscores)."""
    tree = _Environment(environ)()
    kafka = tree.get("kafka")
    if isinstance(kafka, dict):
        for key in [k for k in kafka if k not in KafkaSettings.model_fields]:
            client = kafka.setdefault("client", {})
            client[key.replace("_", ".")] = kafka.pop(key)
    # pydantic-settings passes over variables that name no setting; a typo must fail as one in YAML does
    for name, value in environ.items():
        key = name[len(ENV_PREFIX) :].lower()
        named = name.upper().startswith(ENV_PREFIX) and name.upper() not in NOT_SETTINGS
        if named and key.split("__")[0] not in IngestSettings.model_fields:
            tree[key] = value
    tree.pop("target", None)  # INGEST_TARGET chooses the YAML section; it is not a value to merge
    return tree


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    target: str | None = None,
    project_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> IngestSettings:
    """Read `profiles/ingest.yml` for `target` (default: $INGEST_TARGET or dev) and apply overrides."""
    environ = os.environ if environ is None else environ
    project = (project_dir or find_project_dir()).resolve()
    target = target or environ.get("INGEST_TARGET", "dev")
    config_file = project / "profiles" / "ingest.yml"
    raw: dict[str, Any] = {}
    if config_file.is_file():
        document = yaml.safe_load(config_file.read_text()) or {}
        if target not in document:
            raise ConfigError(f"target '{target}' is not in {config_file} (targets: {', '.join(document)})")
        raw = document[target] or {}
    refuse_literal_secrets(raw)
    try:
        from_environment = env_overrides(environ)
    except SettingsError as error:  # e.g. INGEST_KAFKA=x: a section is not one value
        raise ConfigError(f"{error} (set INGEST_<SECTION>__<KEY> variables)") from error
    tree = deep_merge(expand_env(raw, environ), from_environment)
    tree = deep_merge(tree, overrides or {})
    tree.update(target=target, project_dir=project)
    try:
        settings = IngestSettings.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(f"{config_file} (target {target}): {_problems(error)}") from error
    _require_s3_credentials(settings, raw)
    return settings


S3_CREDENTIALS = {"key_id": "the S3 access key id", "secret": "the S3 secret access key"}


def _require_s3_credentials(settings: IngestSettings, raw: Mapping[str, Any]) -> None:
    """An s3:// data path needs a key id and a secret: name the variables to set, in one line."""
    if not settings.on_s3:
        return
    s3 = settings.lake.s3
    values = {"key_id": s3.key_id, "secret": s3.secret.get_secret_value()}
    missing = [key for key, value in values.items() if not value]
    if missing:
        wanted = " and ".join(f"{_variable_for(raw, key)} ({S3_CREDENTIALS[key]})" for key in missing)
        raise ConfigError(
            f"lake.data_path is {settings.lake.data_path} (target {settings.target}): set {wanted}"
        )


def _variable_for(raw: Mapping[str, Any], key: str) -> str:
    """The environment variable that sets `lake.s3.<key>`: the one the YAML refers to, else INGEST_*."""
    lake = raw.get("lake")
    s3 = lake.get("s3") if isinstance(lake, Mapping) else None
    value = s3.get(key) if isinstance(s3, Mapping) else None
    reference = _ENV_REF.fullmatch(value.strip()) if isinstance(value, str) else None
    return reference.group(1) if reference else f"{ENV_PREFIX}LAKE__S3__{key.upper()}"


def _problems(error: ValidationError) -> str:
    """`batch.max_events: Input should be a valid integer (got 'x')`, one per problem, on one line."""
    problems = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(p) for p in problem["loc"]) or "settings"
        shown = REDACTED if SECRET_KEY_PATTERN.search(where) else repr(problem["input"])
        problems.append(f"{where}: {problem['msg']} (got {shown})")
    return "; ".join(problems)


def redact(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {
            k: (REDACTED if SECRET_KEY_PATTERN.search(str(k)) and v else redact(v)) for k, v in tree.items()
        }
    if isinstance(tree, list):
        return [redact(v) for v in tree]
    return tree
