"""Blob store on Azure Blob Storage (or Azurite): the Azure twin of `FolderBlobStore`.

It refuses the same container and blob names as the folder store (`UnsafeBlobName`), so a
name that works locally works on Azure and the other way round.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from shared.domain.blob_names import check_blob_name, check_container_name
from shared.ports import BlobExists, BlobInfo, BlobNotFound

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


def _utc(value: datetime | None, fallback: datetime | None = None) -> datetime:
    if value is None:
        if fallback is None:
            raise ValueError("the blob service returned no timestamp")
        value = fallback
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AzureBlobStore:
    def __init__(self, service: BlobServiceClient) -> None:
        self.service = service

    @classmethod
    def from_connection_string(cls, conn: str, **client_options: Any) -> AzureBlobStore:
        """A connection string: Azurite or a dev account (DATA_STORAGE_CONNECTION)."""
        return cls(BlobServiceClient.from_connection_string(conn, **client_options))

    @classmethod
    def from_account_name(
        cls, name: str, credential: TokenCredential | None = None, **client_options: Any
    ) -> AzureBlobStore:
        """Identity-based (DATA_STORAGE_ACCOUNT_NAME): https://<name>.blob.core.windows.net."""
        if credential is None:
            from azure.identity import DefaultAzureCredential  # only needed here

            credential = DefaultAzureCredential()
        return cls(BlobServiceClient(f"https://{name}.blob.core.windows.net", credential, **client_options))

    def _blob(self, container: str, name: str) -> Any:
        check_blob_name(container, name)
        return self.service.get_blob_client(check_container_name(container), name)

    def put(
        self,
        container: str,
        name: str,
        data: bytes | BinaryIO,
        *,
        overwrite: bool = True,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        blob = self._blob(container, name)
        meta = dict(metadata or {})
        try:
            self._upload(blob, data, overwrite, meta)
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) != "ContainerNotFound":
                raise
            # Bicep creates the containers on Azure; Azurite and dev accounts start empty.
            with suppress(ResourceExistsError):  # created concurrently
                self.service.create_container(container)
            if not isinstance(data, bytes):
                data.seek(0)  # the first attempt may have read some of it
            self._upload(blob, data, overwrite, meta)

    @staticmethod
    def _upload(blob: Any, data: bytes | BinaryIO, overwrite: bool, metadata: dict[str, str]) -> None:
        try:
            # overwrite=False sends If-None-Match: *, so the check and the write are one step.
            blob.upload_blob(data, overwrite=overwrite, metadata=metadata or None)
        except ResourceExistsError:
            if overwrite:
                raise
            raise BlobExists(f"blob {blob.container_name}/{blob.blob_name} exists") from None

    def get(self, container: str, name: str) -> bytes:
        try:
            data: bytes = self._blob(container, name).download_blob().readall()
            return data
        except ResourceNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None

    def chunks(self, container: str, name: str) -> Iterator[bytes]:
        try:
            download = self._blob(container, name).download_blob()
        except ResourceNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None
        # The download is pinned to the blob's ETag: a blob replaced mid-read fails the read
        # instead of mixing two versions.
        yield from download.chunks()

    def info(self, container: str, name: str) -> BlobInfo:
        try:
            props = self._blob(container, name).get_blob_properties()
        except ResourceNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None
        modified = _utc(props.last_modified)
        return BlobInfo(
            container,
            name,
            props.size,
            created_at=_utc(props.creation_time, fallback=modified),
            last_modified=modified,
            metadata={k.lower(): v for k, v in (props.metadata or {}).items()},
        )

    def exists(self, container: str, name: str) -> bool:
        return bool(self._blob(container, name).exists())

    def list(self, container: str, prefix: str = "") -> list[str]:
        client = self.service.get_container_client(check_container_name(container))
        try:
            return sorted(client.list_blob_names(name_starts_with=prefix or None))
        except ResourceNotFoundError:
            return []  # a container nobody wrote to yet: empty, as in the folder store

    def delete(self, container: str, name: str) -> None:
        try:
            self._blob(container, name).delete_blob()
        except ResourceNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None
