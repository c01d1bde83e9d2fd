"""Settings: read from the environment, each declared once, each refused when out of range."""

from __future__ import annotations

import dataclasses

import pytest

from shared.config import Settings, SettingsError

NUMERIC = [f for f in dataclasses.fields(Settings) if type(f.default) in (int, float)]


def test_the_settings_are_read_from_the_environment() -> None:
    assert (Settings.from_env({}).usage_api_concurrency, Settings.from_env({}).usage_api_max_rps) == (8, 0.0)
    env = {"USAGE_API_CONCURRENCY": "3", "USAGE_API_MAX_RPS": "12.5"}
    assert (Settings.from_env(env).usage_api_concurrency, Settings.from_env(env).usage_api_max_rps) == (
        3,
        12.5,
    )
    with pytest.raises(ValueError, match="USAGE_API_MAX_RPS"):
        Settings.from_env({"USAGE_API_MAX_RPS": "fast"})


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CHURN_MIN_ROLLING_USERS", "-5", "setting CHURN_MIN_ROLLING_USERS must be a whole number from 0 to"),
        (
            "CRM_MAX_SNAPSHOT_AGE_DAYS",
            "-3",
            "setting CRM_MAX_SNAPSHOT_AGE_DAYS must be a whole number from 0 to 366",
        ),
        ("USAGE_API_TIMEOUT_S", "0", "setting USAGE_API_TIMEOUT_S must be a number from 0.1 to 600, got '0'"),
        (
            "USAGE_API_BACKOFF_MAX_S",
            "-1",
            "setting USAGE_API_BACKOFF_MAX_S must be a number from 0 to 3,600, got '-1'",
        ),
        (
            "CHURN_MIN_ROLLING_USERS",
            "1_000",
            "setting CHURN_MIN_ROLLING_USERS must be a whole number from 0 to",
        ),
        (
            "CHURN_MIN_ROLLING_USERS",
            "\u0663",
            "setting CHURN_MIN_ROLLING_USERS must be a whole number",
        ),  # Arabic-Indic 3
        ("USAGE_API_TIMEOUT_S", "inf", "setting USAGE_API_TIMEOUT_S must be a number"),
        ("USAGE_API_TIMEOUT_S", "nan", "setting USAGE_API_TIMEOUT_S must be a number"),
        ("USAGE_API_CONCURRENCY", "0", "setting USAGE_API_CONCURRENCY must be a whole number from 1 to 64"),
        ("USAGE_API_PAGE_SIZE", "5000", "setting USAGE_API_PAGE_SIZE must be a whole number from 1 to 1,000"),
        (
            "USAGE_API_PAGE_SIZE",
            "5.5",
            "setting USAGE_API_PAGE_SIZE must be a whole number from 1 to 1,000, got '5.5'",
        ),
        (
            "USAGE_API_BASE_URL",
            "localhost:8000",
            "setting USAGE_API_BASE_URL must be an http:// or https:// URL",
        ),
        (
            "USAGE_API_BASE_URL",
            "http://127.0.0.1:99999",
            "setting USAGE_API_BASE_URL must be an http:// or https:// URL",
        ),
        ("USAGE_API_BASE_URL", "http:// /x", "setting USAGE_API_BASE_URL must be an http:// or https:// URL"),
        (
            "USAGE_API_BASE_URL",
            "http://",
            "setting USAGE_API_BASE_URL must be an http:// or https:// URL with a host, no query or fragment, got 'http://' (no host)",
        ),
        (
            "ALERT_WEBHOOK_URL",
            "https://hooks.example.com:abc/secret",
            "setting ALERT_WEBHOOK_URL must be an http:// or https:// URL with a host, got (not shown: a secret)",
        ),
    ],
)
def test_a_value_out_of_range_is_refused_with_one_line_naming_the_setting_and_range(
    variable: str, value: str, message: str
) -> None:
    # Before: -5 and -3 were accepted, 0 was clamped to 1, and a timeout of 0 failed five
    # deliveries later inside requests.
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({variable: value})
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("field", NUMERIC, ids=lambda f: f.metadata["env"])
def test_every_number_has_a_range_and_its_edges_are_accepted(field: dataclasses.Field) -> None:
    low, high = field.metadata["low"], field.metadata["high"]
    assert low is not None and high is not None, "declare the range the setting must be in"
    env = field.metadata["env"]
    for edge in (low, high, field.default):
        assert getattr(Settings.from_env({env: str(edge)}), field.name) == edge
    step = 1 if type(field.default) is int else 0.01
    for outside in (low - step, high + step):
        with pytest.raises(SettingsError, match=env):
            Settings.from_env({env: str(outside)})


def test_settings_built_in_code_are_held_to_the_same_ranges() -> None:
    with pytest.raises(SettingsError, match="CHURN_MAX_CONTACT_AGE_DAYS"):
        Settings(churn_max_contact_age_days=-1)


def test_a_secret_url_is_never_shown_when_refused() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"ALERT_WEBHOOK_URL": "hooks.example/sk-live-secret"})
    assert "sk-live-secret" not in str(refused.value)


@pytest.mark.parametrize(
    "key", ["bad\nkeysecretpart", "bad\rkeysecretpart", "b\u20ackeysecretpart", "bad\x00keysecretpart"]
)
def test_an_api_key_no_header_can_carry_is_refused_without_showing_it(key: str) -> None:
    """Sent as is, `requests` failed with a message quoting the header: pieces of the key got
    past the redaction (a newline split it), or a UnicodeEncodeError left the day "running"."""
    with pytest.raises(SettingsError, match="USAGE_API_KEY") as refused:
        Settings.from_env({"USAGE_API_KEY": key})
    assert "keysecretpart" not in str(refused.value) and "bad" not in str(refused.value)


def test_an_api_key_a_header_can_carry_is_accepted() -> None:
    key = "sk_live-AZaz09.~+/= \u00e9"  # a space inside and Latin-1 are legal in a header value
    assert Settings.from_env({"USAGE_API_KEY": key}).usage_api_key == key


@pytest.mark.parametrize(
    "url", ["http://h:1/?tok=QSECRET1&x=1", "http://h:1/p?a=b#frag", "http://h/p#QSECRET1", "http://h/p?"]
)
def test_an_api_root_with_a_query_or_fragment_is_refused_without_repeating_it(url: str) -> None:
    """`/v2/usage` is added to the root: a query swallowed it into the query string and a fragment
    dropped it, and the wrong path was fetched without a word (a reviewer's logging API saw both)."""
    with pytest.raises(SettingsError, match=r"USAGE_API_BASE_URL.*no query or fragment") as refused:
        Settings.from_env({"USAGE_API_BASE_URL": url})
    assert "QSECRET1" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://user:Sup3rPa?zzq9@host/",
        "https://user:Sup3r#Pa/zzq9@host/",
        "https://user:Sup3r/zzq9@host/",
        "http://u:123/Sup3rzzq9@host:8000",  # host "u", port 123 to urlsplit (final review)
        "http://host:8000/?user=ops@b.com&api_key=Sup3rzzq9",  # an @ in the query
        "http://host:8000?token=Sup3rzzq9@evil",
        "http://host:8000/v2?sig=x#a@Sup3rzzq9",
    ],
)
def test_a_password_holding_a_url_delimiter_is_refused_and_never_shown(url: str) -> None:
    """Cut at its `?` or `#`, the password's head was taken for the host and its tail shown in
    the error ('Port could not be cast to integer value as ...'; whole-change review)."""
    with pytest.raises(SettingsError, match=r"percent-encoded|a query or fragment") as refused:
        Settings.from_env({"USAGE_API_BASE_URL": url})
    said = str(refused.value)
    assert "Sup3r" not in said and "zzq9" not in said, said


def test_a_webhook_url_may_have_a_query() -> None:
    url = "https://example.webhook.office.com/workflows/1/triggers/manual/paths/invoke?api-version=1&sig=x"
    assert Settings.from_env({"ALERT_WEBHOOK_URL": url}).alert_webhook_url == url


def test_readme_settings_table_is_the_declarations() -> None:
    """README lists exactly the declared settings, each with its declared description, default
    and range: a setting added, dropped or changed in shared/config.py without its README row
    fails here. `python -m tests.settings_table` writes the table from the declarations."""
    from tests.settings_table import readme_table, settings_table

    assert all(f.metadata["description"].strip() for f in dataclasses.fields(Settings))
    assert readme_table() == settings_table(), (
        "README's settings table is out of date: python -m tests.settings_table"
    )


def test_a_data_folder_under_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOME", str(tmp_path))
    assert (
        Settings.from_env({"LOCAL_DATA_DIR": "~/company-activity"}).local_data_dir
        == tmp_path / "company-activity"
    )


def test_read_env_keeps_the_valid_settings_and_names_each_bad_one() -> None:
    """What the alert function runs on when another setting is bad: nothing is raised."""
    settings, problems = Settings.read_env(
        {"USAGE_API_TIMEOUT_S": "thirty", "ALERT_WEBHOOK_URL": "hooks/sk-secret-1", "MAX_DELIVERY_COUNT": "7"}
    )
    assert sorted(problems) == ["ALERT_WEBHOOK_URL", "USAGE_API_TIMEOUT_S"]
    assert "sk-secret-1" not in str(problems["ALERT_WEBHOOK_URL"])
    assert (settings.usage_api_timeout_s, settings.alert_webhook_url, settings.max_delivery_count) == (
        30.0,
        "",
        7,
    )
    with pytest.raises(SettingsError, match="USAGE_API_TIMEOUT_S"):  # the first, in declaration order
        Settings.from_env({"USAGE_API_TIMEOUT_S": "thirty", "ALERT_WEBHOOK_URL": "hooks/sk-secret-1"})


def test_secret_values_are_read_as_set_valid_or_not() -> None:
    env = {"ALERT_WEBHOOK_URL": " hooks/sk-secret-1 ", "USAGE_API_KEY": "@Microsoft.KeyVault(SecretUri=x)"}
    assert Settings.secret_values(env) == ["hooks/sk-secret-1"]


def test_unresolved_key_vault_references_are_named() -> None:
    """GET /api/health's settings check names them (from_env treats them as unset)."""
    from shared.config import unresolved_key_vault_references

    env = {
        "USAGE_API_KEY": "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/usage-api-key/)",
        "ALERT_WEBHOOK_URL": "https://hooks.example.com/x",
        "USAGE_API_BASE_URL": "@Microsoft.KeyVault(not a secret setting)",
    }
    assert unresolved_key_vault_references(env) == ["USAGE_API_KEY"]
    assert unresolved_key_vault_references({}) == []


def test_fetch_schedule_is_a_six_field_ncrontab() -> None:
    """Issue 20 review: a schedule the host cannot read silently disabled the daily fetch."""
    from shared.config import schedule_from_env, schedule_problem

    for good in (
        "0 30 2 * * *",
        "0 */5 * * * *",
        "0 0 9 * * Mon-Fri",
        "0 0 0 1 Jan,Jul *",
        "0 0 6-18/2 * * 1-5",
    ):
        assert schedule_problem(good) is None, good
    for bad in ("0 30 2 * *", "0 60 2 * * *", "0 30 2 * * 7", "0 0/0 * * * *", "0 30 2 ? * *", "daily"):
        assert schedule_problem(bad), bad
    assert schedule_from_env({}) is None  # unset locally: the timer is Azure's
    problem = schedule_from_env({"FETCH_SCHEDULE": "30 2 * * *"})
    assert problem is not None and "FETCH_SCHEDULE" in str(problem) and "'30 2 * * *'" in str(problem)


def test_a_home_folder_that_does_not_exist_is_one_settings_error() -> None:
    # Path.expanduser raises RuntimeError for an unknown user: a traceback before this.
    with pytest.raises(SettingsError, match=r"LOCAL_DATA_DIR .*'~nosuchuser-4711/x' \(no such home folder\)"):
        Settings.from_env({"LOCAL_DATA_DIR": "~nosuchuser-4711/x"})
