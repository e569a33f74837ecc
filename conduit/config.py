"""Every setting of Conduit, read once from the environment (and an optional TOML file).

This is the only module that reads ``os.environ``. Settings are frozen: code that needs
one receives the ``Settings`` object, it never looks anything up itself.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource
from sqlalchemy.engine import make_url

ENV_PREFIX = "CONDUIT_"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./conduit.db"
MIN_RENDER_MEMORY_MB = 128
MAX_RENDER_TIMEOUT = 4.0
MIN_DELIVERY_LEASE = 1.0
# CONDUIT_* variables that are not settings: read by the test suite and the benchmark, never by
# Conduit. Every other CONDUIT_* variable must name a setting, so that a typo stops start-up
# instead of being ignored. Names starting with CONDUIT_TEST_ are reserved for the tests.
NOT_SETTINGS = frozenset({"CONDUIT_SCHEMATHESIS_EXAMPLES", "CONDUIT_SCREENSHOTS"})
NOT_SETTINGS_PREFIX = "CONDUIT_TEST_"


class ConfigError(Exception):
    """A setting is invalid; the message names it and says why, in one line."""


class Settings(BaseSettings):
    """Settings with their defaults; each is ``CONDUIT_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    secret_key: str = ""
    secret_key_file: str = ""
    previous_secret_keys: str = ""
    smtp_relay_url: str = ""
    mail_from: str = "Conduit <no-reply@conduit.local>"
    base_url: str = ""
    trusted_proxies: str = ""
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    audit_retention_days: int = 180
    log_retention_days: int = 30
    refusal_retention_days: int = 30
    refusals_per_hour: int = 1000  # refusals recorded per account and hour; the rest are counted as dropped
    public_domains: str = ""
    mx_host: str = "mx.conduit.email"
    dns_servers: str = ""
    dns_timeout: float = 3.0
    allow_private_targets: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_hostname: str = "conduit.local"
    smtp_max_message_bytes: int = 25 * 1024 * 1024
    smtp_tls_cert: str = ""
    smtp_tls_key: str = ""
    smtp_auth_insecure: bool = False
    smtp_max_recipients: int = 100
    smtp_max_sessions: int = 1000
    smtp_timeout: int = 300
    smtp_proxy_protocol: bool = False  # a PROXY protocol header (v1 or v2) first, from CONDUIT_TRUSTED_PROXIES only
    route_cache_seconds: float = 2.0  # how long the SMTP server trusts a cached route; 0: no cache
    inbound_auth_checks: bool = True
    inbound_auth_dns_cache_size: int = 10_000  # DNS answers the inbound checks keep for their TTL; 0: none
    retry_schedule: str = "0,5,300,1800,7200,18000,36000,36000"
    deactivate_after_days: int = 5
    keep_raw_days: int | None = None  # the old name of message_retention_days, still read (checked first)
    message_retention_days: int = 3  # days every accepted message is kept; 0: dropped once its deliveries are final
    max_inline_attachment_bytes: int = 10 * 1024 * 1024
    worker_concurrency: int = 64
    webhook_concurrency: int = 32  # deliveries in flight per webhook, over all workers
    delivery_lease: float = 30.0  # seconds a dead worker's jobs wait to be taken again; live ones renew
    worker_processes: int = -1  # `conduit serve`'s worker child processes; -1: 1 on a multi-core machine
    delivery_connect_timeout: float = 5.0
    delivery_timeout: float = 15.0
    http_client: str = "fast"  # the webhook transport: Conduit's own client, or "aiohttp"
    http_proxy: str = ""  # an egress proxy every delivery goes through, e.g. http://127.0.0.1:4750
    render_processes: int = 2  # renderer processes per process that renders (conduit/isolation)
    render_memory_mb: int = 768  # address space of each renderer process
    render_timeout: float = 2.0  # seconds one parse or template render may take
    maintenance_interval: int = 3600
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line
    metrics: bool = True  # Prometheus metrics at /metrics; false: nothing is recorded
    metrics_port: int = 0  # a second HTTP listener for /metrics and /health/* (roles without the API); 0: none
    cors_origins: str = ""
    max_request_bytes: int = 1024 * 1024
    signup: Literal["open", "closed"] = "open"  # closed: accounts are created with `conduit accounts create`
    rspamd_url: str = ""  # rspamd's normal worker, e.g. http://127.0.0.1:11333; empty: no spam check
    rspamd_timeout: float = 5.0  # seconds a spam check may take before the message counts as unchecked
    rspamd_fail: Literal["open", "closed"] = "open"  # unchecked mail: delivered (open) or answered 451 (closed)

    @field_validator("http_port", "smtp_port", "metrics_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError("must be a TCP port number between 0 and 65535")
        return value

    @field_validator("access_token_ttl", "refresh_token_ttl", "audit_retention_days", "log_retention_days",
                     "refusal_retention_days", "maintenance_interval", "dns_timeout", "smtp_max_message_bytes",
                     "smtp_max_recipients",
                     "smtp_max_sessions", "smtp_timeout", "deactivate_after_days", "worker_concurrency",
                     "webhook_concurrency", "delivery_connect_timeout", "delivery_timeout", "max_request_bytes",
                     "render_processes", "rspamd_timeout")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be a positive number")
        return value

    @field_validator("render_memory_mb")
    @classmethod
    def _render_memory(cls, value: int) -> int:
        if value < MIN_RENDER_MEMORY_MB:
            raise ValueError(f"must be at least {MIN_RENDER_MEMORY_MB} (a renderer process needs that much to start)")
        return value

    @field_validator("render_timeout")
    @classmethod
    def _render_timeout(cls, value: float) -> float:
        # A delivery's rendering (a parse, then a template or a second, lighter parse) has to fit
        # in the worker's render window (conduit/worker/loop.py: RENDER_WINDOW).
        if not 0 < value <= MAX_RENDER_TIMEOUT:
            raise ValueError(f"must be more than 0 and at most {MAX_RENDER_TIMEOUT:g} seconds")
        return value

    @field_validator("delivery_lease")
    @classmethod
    def _delivery_lease(cls, value: float) -> float:
        if value < MIN_DELIVERY_LEASE:
            raise ValueError(f"must be at least {MIN_DELIVERY_LEASE:g} seconds (a live attempt renews it a few times "
                             "per period)")
        return value

    @field_validator("worker_processes")
    @classmethod
    def _worker_processes(cls, value: int) -> int:
        if value < -1:
            raise ValueError("must be -1 (automatic), 0 (in the serve process) or a number of processes")
        return value

    def serve_worker_processes(self) -> int:
        """-1 means: one worker process beside the API and SMTP server when there are two cores."""
        if self.worker_processes >= 0:
            return self.worker_processes
        return 1 if (os.cpu_count() or 1) > 1 else 0

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError with a long text
            raise ValueError(f"is not a database URL ({exc})") from None
        if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("smtp_relay_url")
    @classmethod
    def _relay(cls, value: str) -> str:
        if value and not value.startswith(("smtp://", "smtps://")):
            raise ValueError("must look like smtp://host:port or smtps://user:password@host:port")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        for entry in value.replace(",", " ").split():
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
        return value

    @field_validator("dns_servers")
    @classmethod
    def _dns_servers(cls, value: str) -> str:
        from conduit.net.dns import parse_dns_servers

        parse_dns_servers(value)
        return value

    @field_validator("http_client")
    @classmethod
    def _http_client(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("fast", "aiohttp"):
            raise ValueError("must be fast (Conduit's own client) or aiohttp")
        return value

    @field_validator("http_proxy")
    @classmethod
    def _http_proxy(cls, value: str) -> str:
        from conduit.net.http_proxy import parse_proxy_url

        value = value.strip()
        if value:
            parse_proxy_url(value)
        return value

    @field_validator("rspamd_url")
    @classmethod
    def _rspamd_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        value = value.strip().rstrip("/")
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query:
            raise ValueError("must be rspamd's address like http://127.0.0.1:11333 (no user, no query)")
        return value

    @field_validator("public_domains")
    @classmethod
    def _public_domains(cls, value: str) -> str:
        from conduit.net.domain_names import normalize_domain_name

        return ",".join(normalize_domain_name(n) for n in value.replace(",", " ").split())

    @field_validator("mx_host")
    @classmethod
    def _mx_host(cls, value: str) -> str:
        from conduit.net.domain_names import normalize_domain_name

        return normalize_domain_name(value)

    @field_validator("message_retention_days", "max_inline_attachment_bytes", "route_cache_seconds",
                     "inbound_auth_dns_cache_size", "refusals_per_hour")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    @field_validator("keep_raw_days")
    @classmethod
    def _keep_raw_days(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError("must not be negative")
        return value

    @model_validator(mode="before")
    @classmethod
    def _retention_alias(cls, data: Any) -> Any:
        """CONDUIT_KEEP_RAW_DAYS is the old name of CONDUIT_MESSAGE_RETENTION_DAYS: alone, it sets it."""
        if isinstance(data, dict) and data.get("keep_raw_days") not in (None, ""):
            if data.get("message_retention_days") in (None, ""):
                data = {**data, "message_retention_days": data["keep_raw_days"]}
            elif str(data["message_retention_days"]).strip() != str(data["keep_raw_days"]).strip():
                raise ValueError("CONDUIT_KEEP_RAW_DAYS is the old name of CONDUIT_MESSAGE_RETENTION_DAYS: set "
                                 "only CONDUIT_MESSAGE_RETENTION_DAYS")
        return data

    @field_validator("retry_schedule")
    @classmethod
    def _retry_schedule(cls, value: str) -> str:
        try:
            delays = [float(v) for v in value.split(",")]
        except ValueError:
            raise ValueError("must be comma-separated numbers of seconds, e.g. 0,5,300") from None
        if not delays or any(d < 0 for d in delays):
            raise ValueError("must list at least one delay, none negative")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _cors_origins(cls, value: str) -> str:
        origins = [o.rstrip("/").lower() for o in value.replace(",", " ").split()]  # browsers send lower case
        for origin in origins:
            if origin == "*":
                continue
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest or "@" in rest:
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com or *")
        return ",".join(origins)

    @model_validator(mode="after")
    def _proxy_protocol(self) -> Settings:
        if self.smtp_proxy_protocol and not self.trusted_proxies.strip():
            raise ValueError("CONDUIT_SMTP_PROXY_PROTOCOL needs CONDUIT_TRUSTED_PROXIES: the proxies whose "
                             "PROXY headers are believed")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if bool(self.smtp_tls_cert) != bool(self.smtp_tls_key):
            raise ValueError("CONDUIT_SMTP_TLS_CERT and CONDUIT_SMTP_TLS_KEY must be set together")
        return self

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @model_validator(mode="after")
    def _secret(self) -> Settings:
        if self.secret_key and len(self.secret_key) < 32:
            raise ValueError("CONDUIT_SECRET_KEY must be at least 32 characters")
        return self

    @field_validator("previous_secret_keys")
    @classmethod
    def _previous_secret_keys(cls, value: str) -> str:
        keys = [k.strip() for k in value.split(",") if k.strip()]
        if any(len(k) < 32 for k in keys):
            raise ValueError("every key must be at least 32 characters (keys are separated by commas)")
        return ",".join(keys)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment variables win over the TOML file given with --config.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    # Derived values -------------------------------------------------------------------

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def public_base_url(self) -> str:
        return (self.base_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def previous_secret_key_list(self) -> tuple[str, ...]:
        """Old secret keys, used only to decrypt secrets stored before a key change."""
        return tuple(k for k in self.previous_secret_keys.split(",") if k)

    @property
    def public_domain_names(self) -> tuple[str, ...]:
        return tuple(n for n in self.public_domains.split(",") if n)

    @property
    def retry_delays(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.retry_schedule.split(","))

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(o for o in self.cors_origins.split(",") if o)

    @property
    def dns_server_list(self) -> list[tuple[str, int]]:
        from conduit.net.dns import parse_dns_servers

        return parse_dns_servers(self.dns_servers)

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(e, strict=False) for e in self.trusted_proxies.replace(",", " ").split())

    def default_secret_key_path(self) -> Path:
        """Where a generated secret key is kept: beside the SQLite file, else the working directory."""
        if self.secret_key_file:
            return Path(self.secret_key_file)
        url = make_url(self.database_url)
        if self.is_sqlite and url.database and url.database != ":memory:":
            return Path(url.database).resolve().parent / "conduit.secret"
        return Path("conduit.secret").resolve()


def child_environment() -> dict[str, str]:
    """The environment of a helper process that runs untrusted work (conduit/isolation): this
    one's, without Conduit's settings (they hold the secret key and database credentials)."""
    return {name: value for name, value in os.environ.items()
            if not name.startswith(ENV_PREFIX) and name != "PROMETHEUS_MULTIPROC_DIR"}


def _message(exc: ValidationError) -> str:
    error = exc.errors()[0]
    reason = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a rule across settings: its message names them
        return f"invalid setting: {reason}"
    field = ".".join(str(p) for p in error["loc"])
    name = f"{ENV_PREFIX}{field.upper()}"
    return f"invalid setting {name}: {reason}"


def _unknown(name: str, known: list[str], prefix: str = "") -> str:
    """``name``, and the closest known name if one is close enough to be the intended one
    (compared without the prefix they share, which would make every name look close)."""
    bare = name.upper().removeprefix(prefix).lower()
    close = difflib.get_close_matches(bare, [k.removeprefix(prefix).lower() for k in known], n=1)
    return f"{name} (did you mean {prefix}{close[0].upper() if prefix else close[0]}?)" if close else name


def check_environment(environ: Mapping[str, str]) -> None:
    """Raise ConfigError for a CONDUIT_* variable that names no setting (see NOT_SETTINGS)."""
    known = [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]
    for variable in sorted(environ):
        name = variable.upper()  # settings are read case-insensitively
        if (name.startswith(ENV_PREFIX) and name not in known and name not in NOT_SETTINGS
                and not name.startswith(NOT_SETTINGS_PREFIX)):
            raise ConfigError(f"unknown setting {_unknown(variable, known, ENV_PREFIX)}")


def check_config_file(config_file: str) -> None:
    """Raise ConfigError for a key of the TOML file that names no setting."""
    try:
        with open(config_file, "rb") as fh:
            data = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigError(f"config file {config_file} cannot be read: {exc}") from None
    known = list(Settings.model_fields)
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown setting {_unknown(key, known)} in config file {config_file}")


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Read the settings; raise ConfigError with one line naming the bad setting.

    A CONDUIT_* variable or a TOML key that names no setting is an error too: a mistyped setting
    would otherwise leave its default in force without a word."""
    check_environment(os.environ)
    settings_cls = Settings
    if config_file:
        if not Path(config_file).is_file():
            raise ConfigError(f"config file {config_file} does not exist")
        check_config_file(config_file)

        class FileSettings(Settings):
            model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": config_file})

        settings_cls = FileSettings
    try:
        settings = settings_cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_message(exc)) from None
    except (tomllib.TOMLDecodeError, OSError) as exc:  # read only now, by the settings source
        raise ConfigError(f"config file {config_file} cannot be read: {exc}") from None
    if not settings.secret_key:
        settings = settings.model_copy(update={"secret_key": _persisted_secret_key(settings.default_secret_key_path())})
    return settings


def _persisted_secret_key(path: Path) -> str:
    """Read the generated key, or create it (mode 0600) on first start.

    Several processes may start at once (serve and its workers, or a cluster's first start on
    one host): the key is written whole to a private file, then linked into place, so a reader
    never sees a half-written key, and whoever links first wins."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48) + "\n")
            try:
                os.link(draft, path)
            except FileExistsError:
                pass  # another process was first: its key is the key
        finally:
            draft.unlink(missing_ok=True)
    key = path.read_text().strip()
    if len(key) < 32:
        raise ConfigError(f"invalid setting CONDUIT_SECRET_KEY: the key in {path} is shorter than 32 characters")
    return key
