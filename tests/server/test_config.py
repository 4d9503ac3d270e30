"""Settings: defaults < YAML file < environment < flags; a bad value names its source."""

from __future__ import annotations

from pathlib import Path

import pytest

from otto.config import ConfigError, load_settings


def test_precedence(tmp_path: Path) -> None:
    (tmp_path / "otto.yml").write_text("port: 8001\nlease_seconds: 5\nconcurrency: 3\n")
    env = {"OTTO_HOME": str(tmp_path), "OTTO_PORT": "8002"}
    settings = load_settings(env=env, port=None)
    assert (settings.port, settings.lease_seconds, settings.concurrency) == (8002, 5.0, 3)
    assert settings.home == tmp_path
    assert settings.db_url == str(tmp_path / "otto.db")
    assert load_settings(env=env, port=8003).port == 8003


def test_defaults_are_the_embedded_mode(tmp_path: Path) -> None:
    settings = load_settings(env={}, home=str(tmp_path))
    assert (settings.host, settings.port) == ("127.0.0.1", 7670)
    assert settings.objects_url == str(tmp_path / "objects")


def test_bad_values_name_their_source(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("lease_seconds: soon\n")
    with pytest.raises(ConfigError, match=r"bad\.yml: lease_seconds"):
        load_settings(str(bad), env={})
    bad.write_text("prot: 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        load_settings(str(bad), env={})
    with pytest.raises(ConfigError, match="OTTO_PORT"):
        load_settings(env={"OTTO_PORT": "many"})
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(str(tmp_path / "missing.yml"), env={})
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(str(bad), env={})


def test_log_settings_and_plain_messages(tmp_path: Path) -> None:
    settings = load_settings(env={"OTTO_LOG_FORMAT": "json"}, home=str(tmp_path), log_level="debug")
    assert (settings.log_format, settings.log_level) == ("json", "debug")
    assert (load_settings(env={}).log_format, load_settings(env={}).log_level) == ("text", "info")
    with pytest.raises(ConfigError) as loud:
        load_settings(env={"OTTO_LOG_LEVEL": "loud"})
    assert str(loud.value) == (
        "OTTO_LOG_LEVEL: input should be 'debug', 'info', 'warning' or 'error'"
    )
    bad = tmp_path / "bad.yml"
    bad.write_text("log_levle: debug\n")
    with pytest.raises(ConfigError) as typo:
        load_settings(str(bad), env={})
    assert str(typo.value) == f"{bad}: unknown setting 'log_levle' (did you mean 'log_level'?)"
