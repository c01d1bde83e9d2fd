"""Every setting the code reads is set in the Bicep app settings and in local.settings.example.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.config import Settings
from tests.infra.test_bicep import bicep_app_setting_names

REPO = Path(__file__).resolve().parents[2]
# Read by the local host only, or the connection-string form of an identity-based setting
# (Azurite, developer machines). Azure uses the identity form, which Bicep does set.
LOCAL_ONLY = {
    "LOCAL_DATA_DIR",
    "LOCAL_WAREHOUSE_MEMORY_MB",
    "DATA_STORAGE_CONNECTION",
    "ServiceBusConnection",
    "SQL_CONNECTION_STRING",
}


def settings_read_by_code() -> set[str]:
    names = set(Settings.variables())  # every setting is a field of Settings (shared/config.py)
    app = (REPO / "function_app.py").read_text()
    names |= set(re.findall(r'"%([A-Za-z_]+)%"', app))  # binding expressions such as %FETCH_SCHEDULE%
    connection = re.search(r'SERVICE_BUS = "([A-Za-z_]+)"', app)
    assert connection, "function_app.py names its Service Bus connection setting"
    names.add(f"{connection.group(1)}__fullyQualifiedNamespace")  # the trigger's identity-based form
    return names


def test_every_environment_read_in_the_code_is_a_declared_setting() -> None:
    """No module reads a setting of its own past Settings (WEBSITE_SITE_NAME is App Service's;
    the CA bundle variables are requests' own, which the API client reads once instead of per
    request)."""
    read = set()
    for path in [*(REPO / "shared").rglob("*.py"), *(REPO / "functions").rglob("*.py")]:
        read |= set(re.findall(r'os\.environ(?:\.get)?[\[(]"([A-Za-z_]+)"', path.read_text()))
    assert read <= {"WEBSITE_SITE_NAME", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}, sorted(read)


def test_the_scan_finds_the_settings() -> None:
    found = settings_read_by_code()
    assert {
        "USAGE_API_BASE_URL",
        "USAGE_API_KEY",
        "FETCH_SCHEDULE",
        "SQL_SERVER",
        "CHURN_MIN_ROLLING_USERS",
    } <= found


def test_bicep_sets_every_setting_azure_needs() -> None:
    missing = settings_read_by_code() - LOCAL_ONLY - bicep_app_setting_names()
    assert not missing, f"not in functionapp.bicep app settings: {sorted(missing)}"


def test_the_local_settings_example_lists_every_setting() -> None:
    values = json.loads((REPO / "local.settings.example.json").read_text())["Values"]
    missing = settings_read_by_code() - set(values)
    assert not missing, f"not in local.settings.example.json: {sorted(missing)}"
