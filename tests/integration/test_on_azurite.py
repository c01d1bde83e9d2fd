"""The local host on Azure storage: with DATA_STORAGE_CONNECTION set, blobs and the run ledger
live in Azurite (Blob and Table), the bus and the warehouse stay local, and the golden world
still ends at its expected table."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared.domain import names
from tests.azurite import azurite  # noqa: F401  (the session fixture)
from tests.reference import diff_tables, load_expected_csv
from tests.support import GOLDEN, read_table

pytestmark = pytest.mark.azurite


@pytest.fixture
def on_azurite(azurite: str, local_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    blobs = BlobServiceClient.from_connection_string(azurite)
    for container in blobs.list_containers():
        blobs.delete_container(container.name)
    TableServiceClient.from_connection_string(azurite).delete_table(names.LEDGER_TABLE)
    monkeypatch.setenv("DATA_STORAGE_CONNECTION", azurite)
    return azurite


def test_golden_world_on_azure_blob_and_table_storage(cli, local_env: Path, on_azurite: str) -> None:
    for path in GOLDEN.crm_files():
        assert cli("crm-drop", str(path))[0] == 0
    code, out, err = cli("backfill", "--from", "2026-10-01", "--to", "2026-10-10")
    assert code == 0, err
    assert out.count(" built ") == 10

    differences = diff_tables(read_table(local_env), load_expected_csv(GOLDEN.expected_csv))
    assert differences == [], "\n".join(differences[:20])
    assert not (local_env / "blobs").exists()  # nothing went to the folder store
    assert not (local_env / "ledger.sqlite3").exists()

    blobs = BlobServiceClient.from_connection_string(on_azurite)
    raw = [b.name for b in blobs.get_container_client(names.RAW_CONTAINER).list_blobs()]
    assert sum(name.endswith("manifest.json") for name in raw) == 10
    quarantine = [b.name for b in blobs.get_container_client(names.QUARANTINE_CONTAINER).list_blobs()]
    assert any(name.startswith("crm-drop/companies_2026-10-02.csv/") for name in quarantine)
    ledger = TableServiceClient.from_connection_string(on_azurite).get_table_client(names.LEDGER_TABLE)
    days = list(ledger.query_entities("PartitionKey eq @p", parameters={"p": names.DAYS}))
    assert len(days) == 10 and {d["status"] for d in days} == {"built"}


def test_health_on_azure_blob_and_table_storage(cli, on_azurite: str) -> None:
    """The probe blob goes to the health container and is deleted; the probe entry is in the
    health partition; the account key in the connection string is never printed (issue 20)."""
    code, out, err = cli("health")
    assert code == 0, out + err
    assert "data in Azure storage" in out
    blobs = BlobServiceClient.from_connection_string(on_azurite)
    assert list(blobs.get_container_client(names.HEALTH_CONTAINER).list_blob_names()) == []
    ledger = TableServiceClient.from_connection_string(on_azurite).get_table_client(names.LEDGER_TABLE)
    [probe] = ledger.query_entities("PartitionKey eq @p", parameters={"p": names.HEALTH})
    assert probe["RowKey"] == "probe"
    account_key = on_azurite.split("AccountKey=", 1)[1].split(";", 1)[0]
    assert account_key not in out + err
