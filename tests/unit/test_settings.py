"""Settings: defaults that need no environment, one clear line per bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chatlimit.settings import Settings, SettingsError, load_settings
from chatlimit.uri import mask_uri

OUR_VARIABLES = [
    "STORAGE_URI", "REDIS_URL", "RATE_LIMIT", "RATE_LIMIT_STRATEGY", "RATE_LIMIT_ENABLED",
    "TRUSTED_PROXIES", "INSTANCE_NAME", "REPLICA_NAMES", "HOST", "PORT", "FAIL_MODE",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OUR_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_run_with_no_environment() -> None:
    settings = load_settings()
    assert settings.storage_uri == "memory://"
    assert settings.storage_kind == "memory"
    assert settings.rate_limit == "3/minute"
    assert settings.rate_limit_strategy == "fixed-window"
    assert settings.rate_limit_enabled is True
    assert [str(n) for n in settings.trusted_proxies] == ["127.0.0.1/32"]
    assert settings.port == 8000
    assert settings.instance_name


def test_several_limits_separated_by_semicolons_are_parsed() -> None:
    settings = Settings(rate_limit="3/minute;20/hour")
    assert [(i.amount, int(i.get_expiry())) for i in settings.limits] == [(3, 60), (20, 3600)]


def test_redis_url_is_used_when_storage_uri_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    assert load_settings().storage_uri == "redis://cache:6379/0"


def test_storage_uri_wins_over_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("STORAGE_URI", "memory://")
    assert load_settings().storage_uri == "memory://"


def test_trusted_proxies_accept_addresses_and_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1,::1")
    assert [str(n) for n in load_settings().trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]


@pytest.mark.parametrize(
    ("variable", "value", "accepts"),
    [
        ("STORAGE_URI", "mongodb://db", "memory:// or a Redis URI"),
        ("STORAGE_URI", "localhost:6379", "memory:// or a Redis URI"),
        ("RATE_LIMIT", "lots", "a slowapi limit string"),
        ("RATE_LIMIT", "3/fortnight", "a slowapi limit string"),
        ("RATE_LIMIT_STRATEGY", "token-bucket", "fixed-window, moving-window or sliding-window-counter"),
        ("RATE_LIMIT_ENABLED", "maybe", "true or false"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,not-an-ip", "IP addresses or CIDR networks"),
        ("INSTANCE_NAME", "has spaces", "a name of 1 to 64"),
        ("PORT", "70000", "a TCP port from 1 to 65535"),
        ("PORT", "http", "a TCP port from 1 to 65535"),
        ("FAIL_MODE", "sometimes", "open or closed"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_and_what_it_accepts(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, accepts: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{variable}={value!r} is invalid: accepts ")
    assert accepts in message
    assert "\n" not in message


def test_a_password_never_appears_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_URI", "nosuch://user:hunter2@host:6379")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)
    assert "user:***@host" in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://default:s3cret@eu1.example.io:6380", "rediss://default:***@eu1.example.io:6380"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("redis+sentinel://:s3cret@a:26379,b:26379/mymaster", "redis+sentinel://:***@a:26379,b:26379/mymaster"),
        ("redis://redis:6379/0?password=s3cret&db=1", "redis://redis:6379/0?password=***&db=1"),
    ],
)
def test_mask_uri_hides_passwords(uri: str, masked: str) -> None:
    assert mask_uri(uri) == masked


def test_serve_with_a_bad_variable_exits_2_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chatlimit", "serve"],
        env={"PATH": "/usr/bin:/bin", "RATE_LIMIT": "often"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "chatlimit: RATE_LIMIT='often' is invalid: accepts a slowapi limit string such as "
        "3/minute, or several joined by ';' (3/minute;20/hour)"
    ]
    assert "Traceback" not in result.stderr


def test_the_token_budget_defaults_and_accepts_off() -> None:
    settings = Settings()
    assert [(i.amount, int(i.get_expiry())) for i in settings.token_limits] == [(2000, 3600)]
    assert settings.max_streams == 5 and settings.lease_ttl == 15
    off = Settings(token_limit="off", max_streams="off")
    assert off.token_limits == [] and off.max_streams is None


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        ({"token_limit": "lots"}, "TOKEN_LIMIT='lots' is invalid: accepts a slowapi limit string "
                                  "counted in tokens"),
        ({"max_streams": "0"}, "MAX_STREAMS='0' is invalid: accepts a number of replies"),
        ({"lease_ttl": "0"}, "LEASE_TTL='0' is invalid: accepts seconds from 1 to 600"),
        ({"token_limit": "500/hour", "rate_limit_strategy": "moving-window"},
         "TOKEN_LIMIT='500/hour' needs RATE_LIMIT_STRATEGY fixed-window or "
         "sliding-window-counter"),
        ({"token_limit": "500/hour", "rate_limit_engine": "slowapi"},
         "TOKEN_LIMIT needs RATE_LIMIT_ENGINE=chatlimit"),
    ],
)
def test_a_bad_token_setting_stops_start_up_in_one_line(overrides: dict[str, str], line: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**overrides)
    assert str(caught.value).startswith(line)
    assert "\n" not in str(caught.value)


def test_the_default_budget_steps_aside_where_it_cannot_be_counted() -> None:
    assert Settings(rate_limit_strategy="moving-window").token_limits == []
    stock = Settings(rate_limit_engine="slowapi")
    assert stock.token_limits == [] and stock.max_streams is None
