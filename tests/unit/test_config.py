"""Settings: defaults, environment, TOML file, the generated secret key, one-line errors."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from conduit.config import (
    DEFAULT_DATABASE_URL,
    ConfigError,
    child_environment,
    load_settings,
)

KEY = "k" * 40


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No CONDUIT_* from the caller's environment, and a scratch working directory."""
    for name in list(os.environ):
        if name.startswith("CONDUIT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults(tmp_path):
    settings = load_settings(secret_key=KEY)
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite+aiosqlite:///./conduit.db"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert settings.smtp_relay_url == ""
    assert settings.trusted_proxy_networks == ()
    assert settings.access_token_ttl == 900
    assert settings.audit_retention_days == 180
    assert settings.public_base_url == "http://127.0.0.1:8080"
    assert (settings.inbound_auth_checks, settings.inbound_auth_dns_cache_size) == (True, 10_000)


def test_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("CONDUIT_HTTP_PORT", "9090")
    monkeypatch.setenv("CONDUIT_HTTP_HOST", "0.0.0.0")
    monkeypatch.setenv("CONDUIT_BASE_URL", "https://conduit.example.org/")
    monkeypatch.setenv("CONDUIT_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    monkeypatch.setenv("CONDUIT_SMTP_RELAY_URL", "smtp://127.0.0.1:2526")
    settings = load_settings(secret_key=KEY)
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 9090)
    assert settings.public_base_url == "https://conduit.example.org"
    assert [str(n) for n in settings.trusted_proxy_networks] == ["10.0.0.0/8", "192.168.1.1/32"]
    assert settings.smtp_relay_url == "smtp://127.0.0.1:2526"


@pytest.mark.parametrize("name, value", [
    ("CONDUIT_HTTP_PORT", "99999"),
    ("CONDUIT_HTTP_PORT", "-1"),
    ("CONDUIT_HTTP_PORT", "eighty"),
    ("CONDUIT_DATABASE_URL", "mysql://localhost/conduit"),
    ("CONDUIT_DATABASE_URL", "not a url"),
    ("CONDUIT_SMTP_RELAY_URL", "http://relay.example.com"),
    ("CONDUIT_TRUSTED_PROXIES", "10.0.0.0/8 not-a-network"),
    ("CONDUIT_LOG_LEVEL", "LOUD"),
    ("CONDUIT_ACCESS_TOKEN_TTL", "0"),
    ("CONDUIT_AUDIT_RETENTION_DAYS", "-5"),
    ("CONDUIT_INBOUND_AUTH_DNS_CACHE_SIZE", "-1"),
    ("CONDUIT_SECRET_KEY", "too short"),
    ("CONDUIT_RENDER_PROCESSES", "0"),
    ("CONDUIT_RENDER_MEMORY_MB", "64"),
    ("CONDUIT_RENDER_TIMEOUT", "-1"),
    ("CONDUIT_RENDER_TIMEOUT", "4.5"),
    ("CONDUIT_RSPAMD_URL", "ftp://127.0.0.1:11333"),
    ("CONDUIT_RSPAMD_URL", "http://user:pw@127.0.0.1:11333"),
    ("CONDUIT_RSPAMD_TIMEOUT", "0"),
    ("CONDUIT_RSPAMD_FAIL", "sometimes"),
    ("CONDUIT_MESSAGE_RETENTION_DAYS", "-1"),
    ("CONDUIT_KEEP_RAW_DAYS", "-2"),
])
def test_an_invalid_setting_is_one_line_naming_it(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert name in message
    assert "\n" not in message
    assert value not in message or name == "CONDUIT_TRUSTED_PROXIES"  # it says why, it does not echo secrets


def test_messages_are_kept_three_days_unless_told_and_the_old_name_still_works(monkeypatch):
    assert load_settings(secret_key=KEY).message_retention_days == 3
    monkeypatch.setenv("CONDUIT_KEEP_RAW_DAYS", "0")
    assert load_settings(secret_key=KEY).message_retention_days == 0
    monkeypatch.setenv("CONDUIT_MESSAGE_RETENTION_DAYS", "0")  # both, agreeing
    assert load_settings(secret_key=KEY).message_retention_days == 0
    monkeypatch.setenv("CONDUIT_MESSAGE_RETENTION_DAYS", "7")
    with pytest.raises(ConfigError) as raised:
        load_settings(secret_key=KEY)
    assert "CONDUIT_KEEP_RAW_DAYS" in str(raised.value) and "CONDUIT_MESSAGE_RETENTION_DAYS" in str(raised.value)
    monkeypatch.delenv("CONDUIT_KEEP_RAW_DAYS")
    assert load_settings(secret_key=KEY).message_retention_days == 7


def test_a_toml_file_is_read_and_the_environment_wins(monkeypatch, tmp_path):
    config = tmp_path / "conduit.toml"
    config.write_text('http_port = 9191\nhttp_host = "0.0.0.0"\n')
    settings = load_settings(str(config), secret_key=KEY)
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 9191)
    monkeypatch.setenv("CONDUIT_HTTP_PORT", "9292")
    assert load_settings(str(config), secret_key=KEY).http_port == 9292


def test_an_invalid_value_in_the_toml_file_names_the_setting(tmp_path):
    config = tmp_path / "conduit.toml"
    config.write_text("http_port = 99999\n")
    with pytest.raises(ConfigError, match="CONDUIT_HTTP_PORT"):
        load_settings(str(config), secret_key=KEY)


def test_a_missing_toml_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_settings(str(tmp_path / "nope.toml"))


def test_a_malformed_toml_file_is_a_config_error(tmp_path):
    config = tmp_path / "conduit.toml"
    config.write_text("http_port = = 1\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(str(config), secret_key=KEY)
    assert "conduit.toml" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_secret_key_is_generated_next_to_the_database_once(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/data/conduit.db"
    first = load_settings(database_url=url)
    key_file = tmp_path / "data" / "conduit.secret"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 32
    assert key_file.read_text().strip() == first.secret_key
    assert load_settings(database_url=url).secret_key == first.secret_key


def test_processes_starting_together_agree_on_one_generated_key(tmp_path):
    """As serve and its worker processes, or several roles on a fresh host, do."""
    url = f"sqlite+aiosqlite:///{tmp_path}/data/conduit.db"
    script = ("import sys; from conduit.config import load_settings; "
              "print(load_settings(database_url=sys.argv[1]).secret_key)")
    starts = [subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(8)]
    results = [process.communicate(timeout=60) for process in starts]
    assert [err for _, err in results if err] == []
    keys = {out.strip() for out, _ in results}
    assert keys == {(tmp_path / "data" / "conduit.secret").read_text().strip()}
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["conduit.secret"]  # no drafts left


def test_each_installation_gets_its_own_key(tmp_path):
    one = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/one/c.db")
    two = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/two/c.db")
    assert one.secret_key != two.secret_key


def test_a_given_secret_key_is_used_and_nothing_is_written(tmp_path):
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/c.db", secret_key=KEY)
    assert settings.secret_key == KEY
    assert not (tmp_path / "conduit.secret").exists()


def test_the_key_file_setting_is_honoured(tmp_path):
    key_file = tmp_path / "keys" / "instance.key"
    settings = load_settings(secret_key_file=str(key_file))
    assert key_file.read_text().strip() == settings.secret_key


def test_a_too_short_key_file_is_a_config_error(tmp_path):
    (tmp_path / "conduit.secret").write_text("short\n")
    with pytest.raises(ConfigError, match="CONDUIT_SECRET_KEY"):
        load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/conduit.db")


def test_the_proxy_protocol_needs_trusted_proxies(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/c.db"
    with pytest.raises(ConfigError, match="CONDUIT_SMTP_PROXY_PROTOCOL needs CONDUIT_TRUSTED_PROXIES"):
        load_settings(database_url=url, secret_key="k" * 40, smtp_proxy_protocol=True)
    settings = load_settings(database_url=url, secret_key="k" * 40, smtp_proxy_protocol=True,
                             trusted_proxies="10.0.0.0/8, 192.0.2.7")
    assert settings.smtp_proxy_protocol and len(settings.trusted_proxy_networks) == 2


def test_render_settings_have_defaults_and_are_read(monkeypatch):
    settings = load_settings(secret_key=KEY)
    assert (settings.render_processes, settings.render_memory_mb, settings.render_timeout) == (2, 768, 2.0)
    monkeypatch.setenv("CONDUIT_RENDER_PROCESSES", "3")
    monkeypatch.setenv("CONDUIT_RENDER_MEMORY_MB", "256")
    monkeypatch.setenv("CONDUIT_RENDER_TIMEOUT", "0.5")
    settings = load_settings(secret_key=KEY)
    assert (settings.render_processes, settings.render_memory_mb, settings.render_timeout) == (3, 256, 0.5)


def test_renderer_processes_get_the_environment_without_conduit_settings(monkeypatch):
    monkeypatch.setenv("CONDUIT_SECRET_KEY", KEY)
    monkeypatch.setenv("LANG", "C.UTF-8")
    environment = child_environment()
    assert environment["LANG"] == "C.UTF-8"
    assert not [name for name in environment if name.startswith("CONDUIT_")]
