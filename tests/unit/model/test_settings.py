"""The LLM_* settings: defaults that run offline, one-line errors, the key kept secret."""

from __future__ import annotations

import pytest

from chatlimit.settings import Settings, SettingsError, load_settings


def test_the_default_is_the_in_process_demo_model() -> None:
    settings = Settings()
    assert settings.llm_base_url == ""
    assert settings.llm_max_tokens == 256
    assert settings.model_token_delay_ms == 30


def test_the_api_key_is_not_in_the_settings_repr() -> None:
    settings = Settings(llm_api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(settings)
    assert settings.llm_api_key.get_secret_value() == "sk-very-secret"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("llm_base_url", "ftp://model", "LLM_BASE_URL='ftp://model' is invalid: accepts empty"),
        ("llm_max_tokens", "0", "LLM_MAX_TOKENS='0' is invalid: accepts a number of tokens"),
        ("llm_timeout", "-1", "LLM_TIMEOUT='-1' is invalid: accepts seconds"),
        ("model_token_delay_ms", "lots", "MODEL_TOKEN_DELAY_MS='lots' is invalid"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(field: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(**{field: value, "llm_api_key": "sk-very-secret"})
    assert str(error.value).startswith(message)
    assert "sk-very-secret" not in str(error.value)
    assert "\n" not in str(error.value)


def test_a_trailing_slash_on_the_base_url_is_dropped() -> None:
    assert Settings(llm_base_url="http://127.0.0.1:8001/v1/").llm_base_url == "http://127.0.0.1:8001/v1"
