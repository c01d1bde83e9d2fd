"""Run ledger on Azure Table storage (or Azurite): the Azure twin of `SqliteLedger`.

One entity per entry: PartitionKey = partition, RowKey = key, and the data as flat properties,
so Storage Explorer shows them as columns. Two things a table does not keep by itself are kept
in one extra string property, `LedgerTypes` (a small JSON object, absent when not needed):

* None values: the service drops null properties, so their names are recorded as "null";
* floats: the service sends a whole Double (2.0) back as a JSON integer, so their names are
  recorded as "float" to come back as float.

Ints beyond 32 bits are written as Edm.Int64. The etag is the table's own ETag, so the
conditional writes of the port are the service's If-Match / create-only operations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient, UpdateMode

from shared.domain import names
from shared.ports import ConcurrencyConflict, LedgerEntry

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

TYPES_PROPERTY = "LedgerTypes"
_SYSTEM = frozenset({"PartitionKey", "RowKey", "Timestamp", TYPES_PROPERTY})
_PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")  # C# identifier rules, as the service wants
_BAD_KEY_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")  # refused in PartitionKey / RowKey
_INT32 = range(-(2**31), 2**31)
_INT64 = range(-(2**63), 2**63)


def _check_key(what: str, value: str) -> str:
    if not isinstance(value, str) or _BAD_KEY_CHARS.search(value) or len(value.encode()) > 1024:
        raise ValueError(f"invalid ledger {what} {value!r}: no / \\ # ? or control characters, at most 1 KiB")
    return value


def _encode(partition: str, key: str, data: Mapping[str, Any]) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": _check_key("partition", partition),
        "RowKey": _check_key("key", key),
    }
    types: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not _PROPERTY_NAME.match(name) or name in _SYSTEM:
            raise ValueError(f"ledger field name {name!r} cannot be a table property")
        if value is None:
            types[name] = "null"
        elif isinstance(value, bool | str):
            entity[name] = value
        elif isinstance(value, int):
            if value in _INT32:
                entity[name] = value
            elif value in _INT64:
                entity[name] = EntityProperty(value, EdmType.INT64)
            else:
                raise ValueError(f"ledger field {name!r}: {value} does not fit in 64 bits")
        elif isinstance(value, float):
            entity[name] = EntityProperty(value, EdmType.DOUBLE)
            types[name] = "float"
        else:
            raise TypeError(
                f"ledger field {name!r}: {type(value).__name__} is not flat (str, int, float, bool or None)"
            )
    if types:
        entity[TYPES_PROPERTY] = json.dumps(types, separators=(",", ":"), sort_keys=True)
    return entity


def _decode(entity: Mapping[str, Any]) -> dict[str, Any]:
    types: dict[str, str] = json.loads(entity.get(TYPES_PROPERTY) or "{}")
    data: dict[str, Any] = {}
    for name, value in entity.items():
        if name in _SYSTEM:
            continue
        if isinstance(value, EntityProperty):  # Int64, and whatever else the SDK cannot map to a builtin
            value = value.value
        data[name] = float(value) if types.get(name) == "float" else value
    for name, kind in types.items():
        if kind == "null":
            data[name] = None
    return dict(sorted(data.items()))


def _etag(metadata: Mapping[str, Any]) -> str:
    etag = metadata.get("etag")
    if not etag:
        raise RuntimeError("the table service returned no etag")
    return str(etag)


class TableLedger:
    def __init__(self, table: TableClient, *, create: bool = True) -> None:
        self.table = table
        if create:
            # Bicep creates `pipelineruns` on Azure; Azurite and dev accounts start empty.
            with suppress(ResourceExistsError):
                table.create_table()

    @classmethod
    def from_connection_string(
        cls, conn: str, table: str = names.LEDGER_TABLE, **client_options: Any
    ) -> TableLedger:
        """A connection string: Azurite or a dev account (DATA_STORAGE_CONNECTION)."""
        return cls(TableClient.from_connection_string(conn, table_name=table, **client_options))

    @classmethod
    def from_account_name(
        cls,
        name: str,
        credential: TokenCredential | None = None,
        table: str = names.LEDGER_TABLE,
        **client_options: Any,
    ) -> TableLedger:
        """Identity-based (DATA_STORAGE_ACCOUNT_NAME): https://<name>.table.core.windows.net."""
        if credential is None:
            from azure.identity import DefaultAzureCredential  # only needed here

            credential = DefaultAzureCredential()
        endpoint = f"https://{name}.table.core.windows.net"
        return cls(TableClient(endpoint, table, credential=credential, **client_options))

    def get(self, partition: str, key: str) -> LedgerEntry | None:
        try:
            entity = self.table.get_entity(_check_key("partition", partition), _check_key("key", key))
        except ResourceNotFoundError:
            return None
        return LedgerEntry(partition, key, _decode(entity), _etag(entity.metadata))

    def put(
        self, partition: str, key: str, data: Mapping[str, Any], *, etag: str | None = None
    ) -> LedgerEntry:
        entity = _encode(partition, key, data)
        try:
            if etag is None:
                written = self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
            elif etag == "":
                written = self.table.create_entity(entity)
            else:
                written = self.table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceNotFoundError) as exc:
            if etag is None:
                raise
            raise ConcurrencyConflict(f"ledger entry {partition}/{key} changed concurrently") from exc
        except HttpResponseError as exc:  # 412 UpdateConditionNotSatisfied (ResourceModifiedError)
            if etag is None or exc.status_code != 412:
                raise
            raise ConcurrencyConflict(f"ledger entry {partition}/{key} changed concurrently") from exc
        return LedgerEntry(partition, key, _decode(entity), _etag(written))

    def query(self, partition: str) -> list[LedgerEntry]:
        return self._entries(partition, "PartitionKey eq @pk", {"pk": _check_key("partition", partition)})

    def query_range(self, partition: str, first: str, last: str) -> list[LedgerEntry]:
        # A range of RowKeys within one partition is served from the table's index.
        parameters = {
            "pk": _check_key("partition", partition),
            "first": _check_key("key", first),
            "last": _check_key("key", last),
        }
        return self._entries(
            partition, "PartitionKey eq @pk and RowKey ge @first and RowKey le @last", parameters
        )

    def _entries(self, partition: str, query: str, parameters: dict[str, str]) -> list[LedgerEntry]:
        entities = self.table.query_entities(query, parameters=parameters)
        entries = [
            LedgerEntry(partition, entity["RowKey"], _decode(entity), _etag(entity.metadata))
            for entity in entities
        ]
        return sorted(entries, key=lambda e: e.key)
