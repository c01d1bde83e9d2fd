"""A blob store that announces each finished blob, as Event Grid does on Azure.

Used by the local host around whichever blob store it runs on (the folder, or Azure Blob on
Azurite, which has no Event Grid), so the loaders receive the same BlobCreated events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO

from shared.ports import BlobInfo, BlobStore

Announce = Callable[[str, str, int], None]  # container, name, size


class PublishingBlobStore:
    def __init__(self, inner: BlobStore, announce: Announce) -> None:
        self.inner = inner
        self.announce = announce

    def put(
        self,
        container: str,
        name: str,
        data: bytes | BinaryIO,
        *,
        overwrite: bool = True,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.inner.put(container, name, data, overwrite=overwrite, metadata=metadata)
        size = len(data) if isinstance(data, bytes) else self.inner.info(container, name).size
        self.announce(container, name, size)  # only after the blob is complete and readable

    def get(self, container: str, name: str) -> bytes:
        return self.inner.get(container, name)

    def chunks(self, container: str, name: str) -> Iterator[bytes]:
        return self.inner.chunks(container, name)

    def info(self, container: str, name: str) -> BlobInfo:
        return self.inner.info(container, name)

    def exists(self, container: str, name: str) -> bool:
        return self.inner.exists(container, name)

    def list(self, container: str, prefix: str = "") -> list[str]:
        return self.inner.list(container, prefix)

    def delete(self, container: str, name: str) -> None:
        self.inner.delete(container, name)  # Event Grid announces creations only
