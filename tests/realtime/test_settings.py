"""Settings loading and the generated-secrets file."""

import pytest

from realtime.settings import SettingsError, load_settings, with_secrets


def test_environment_prefix_and_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("DOORSTEP_PORT", "9999")
    monkeypatch.setenv("DOORSTEP_MAX_BATCH_POINTS", "42")
    settings = load_settings(data_dir=tmp_path, port=None)
    assert settings.port == 9999 and settings.max_batch_points == 42
    assert load_settings(port=1234).port == 1234


def test_invalid_value_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv("DOORSTEP_MAX_FRAME_BYTES", "tiny")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "DOORSTEP_MAX_FRAME_BYTES" in str(caught.value) and "\n" not in str(caught.value)


def test_secrets_are_generated_once_and_reused(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    first, path = with_secrets(settings, generate=True)
    second, _ = with_secrets(settings, generate=True)
    assert path == tmp_path / "secrets.json"
    assert first.secret.get_secret_value() == second.secret.get_secret_value()
    assert first.platform_key.get_secret_value() == second.platform_key.get_secret_value()
    reader, _ = with_secrets(settings, generate=False)
    assert reader.secret.get_secret_value() == first.secret.get_secret_value()


def test_environment_secret_wins_over_the_file(monkeypatch, tmp_path):
    with_secrets(load_settings(data_dir=tmp_path), generate=True)
    monkeypatch.setenv("DOORSTEP_SECRET", "from-env-" + "x" * 32)
    settings, _ = with_secrets(load_settings(data_dir=tmp_path), generate=False)
    assert settings.secret.get_secret_value().startswith("from-env-")


def test_token_side_never_generates(tmp_path):
    with pytest.raises(SettingsError, match="DOORSTEP_SECRET"):
        with_secrets(load_settings(data_dir=tmp_path), generate=False)
    assert not (tmp_path / "secrets.json").exists()


def test_watchdog_timers_are_validated(tmp_path):
    with pytest.raises(SettingsError, match="DOORSTEP_CHECK_TIMEOUT_S"):
        load_settings(data_dir=tmp_path, check_timeout_s=0)
    with pytest.raises(SettingsError, match="DOORSTEP_OVERDUE_MARGIN_S"):
        load_settings(data_dir=tmp_path, overdue_margin_s=float("inf"))
    # Looking less often than the shortest timer would make every decision late.
    with pytest.raises(SettingsError, match="DOORSTEP_WATCHDOG_INTERVAL_S"):
        load_settings(data_dir=tmp_path, watchdog_interval_s=5, signal_lost_s=1)
    settings = load_settings(data_dir=tmp_path, watchdog_interval_s=0.5, check_timeout_s=1)
    assert (settings.overdue_margin_s, settings.signal_lost_s) == (900.0, 600.0)
