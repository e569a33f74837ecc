"""A mistyped setting stops start-up: unknown CONDUIT_* variables and unknown TOML keys are
errors of one line that name the culprit and, when one is close, the setting it was meant to be."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conduit.config import ConfigError, load_settings

KEY = "k" * 40


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("CONDUIT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("variable, expected", [
    ("CONDUIT_HTTP_PORTT", "unknown setting CONDUIT_HTTP_PORTT (did you mean CONDUIT_HTTP_PORT?)"),
    ("CONDUIT_SMTP_MAX_SESSION", "unknown setting CONDUIT_SMTP_MAX_SESSION (did you mean CONDUIT_SMTP_MAX_SESSIONS?)"),
    ("CONDUIT_SIGN_UP", "unknown setting CONDUIT_SIGN_UP (did you mean CONDUIT_SIGNUP?)"),
    ("CONDUIT_XYZZY", "unknown setting CONDUIT_XYZZY"),
])
def test_an_unknown_environment_variable_is_named_with_the_closest_setting(monkeypatch, variable, expected):
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ConfigError) as raised:
        load_settings(secret_key=KEY)
    assert str(raised.value) == expected


def test_a_lower_case_variable_is_a_setting_as_pydantic_reads_it(monkeypatch):
    monkeypatch.setenv("conduit_http_port", "9393")
    assert load_settings(secret_key=KEY).http_port == 9393
    monkeypatch.setenv("conduit_http_portt", "1")
    with pytest.raises(ConfigError, match="conduit_http_portt"):
        load_settings(secret_key=KEY)


@pytest.mark.parametrize("variable", ["CONDUIT_TEST_POSTGRES_URL", "CONDUIT_TEST_ANYTHING",
                                      "CONDUIT_SCHEMATHESIS_EXAMPLES", "CONDUIT_SCREENSHOTS"])
def test_the_variables_of_the_tests_and_the_benchmark_are_not_settings_and_are_allowed(monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    assert load_settings(secret_key=KEY).http_port == 8080


def test_variables_without_the_prefix_are_none_of_conduits_business(monkeypatch):
    monkeypatch.setenv("CONDUITHTTP_PORT", "1")
    monkeypatch.setenv("MY_CONDUIT_HTTP_PORTT", "1")
    assert load_settings(secret_key=KEY).http_port == 8080


def test_an_unknown_toml_key_is_named_with_the_closest_setting(tmp_path):
    config = tmp_path / "conduit.toml"
    config.write_text('http_port = 9191\nsmtp_hostnme = "mx.example"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings(str(config), secret_key=KEY)
    assert str(raised.value) == (f"unknown setting smtp_hostnme (did you mean smtp_hostname?) "
                                 f"in config file {config}")


def test_a_toml_key_written_as_the_environment_variable_is_unknown(tmp_path):
    config = tmp_path / "conduit.toml"
    config.write_text("CONDUIT_HTTP_PORT = 9191\n")
    with pytest.raises(ConfigError, match="unknown setting CONDUIT_HTTP_PORT"):
        load_settings(str(config), secret_key=KEY)


def test_a_toml_table_is_an_unknown_key(tmp_path):
    config = tmp_path / "conduit.toml"
    config.write_text("[smtp]\nport = 25\n")
    with pytest.raises(ConfigError, match="unknown setting smtp "):
        load_settings(str(config), secret_key=KEY)


def test_the_command_stops_with_one_line_before_doing_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
    env.update(CONDUIT_HTTP_PORTT="1", CONDUIT_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/c.db")
    done = subprocess.run([sys.executable, "-m", "conduit", "migrate"], env=env, capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 2
    assert done.stderr == "conduit: unknown setting CONDUIT_HTTP_PORTT (did you mean CONDUIT_HTTP_PORT?)\n"
    assert not (tmp_path / "c.db").exists()
