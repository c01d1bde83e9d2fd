"""Blob store on a local folder: `<root>/<container>/<blob name>`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from shared.ports import BlobInfo, BlobNotFound

BlobCreatedHook = Callable[[str, str, int], None]  # container, name, size


class UnsafeBlobName(ValueError):
    """A blob name that would leave the store's folder or is not a plain relative path."""


class FolderBlobStore:
    def __init__(self, root: Path, on_created: BlobCreatedHook | None = None) -> None:
        self.root = root.resolve()
        self.on_created = on_created

    def _path(self, container: str, name: str) -> Path:
        # Names come from events and file names: never let one escape the root.
        parts = PurePosixPath(name).parts
        if (
            not container
            or "/" in container
            or container in (".", "..")
            or not name
            or name.startswith("/")
            or "\\" in name
            or "\x00" in name
            or any(p in ("..", ".") for p in parts)
        ):
            raise UnsafeBlobName(f"unsafe blob name {container}/{name!r}")
        path = (self.root / container).joinpath(*parts)
        if not path.resolve().is_relative_to(self.root):
            raise UnsafeBlobName(f"unsafe blob name {container}/{name!r}")
        return path

    def put(self, container: str, name: str, data: bytes, *, overwrite: bool = True) -> None:
        path = self._path(container, name)
        if not overwrite and path.exists():
            raise FileExistsError(f"blob {container}/{name} exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a reader never sees half a blob, as with a committed block list.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self.on_created is not None:
            self.on_created(container, name, len(data))

    def get(self, container: str, name: str) -> bytes:
        try:
            return self._path(container, name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise BlobNotFound(f"{container}/{name}") from None

    def info(self, container: str, name: str) -> BlobInfo:
        try:
            stat = self._path(container, name).stat()
        except FileNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None
        return BlobInfo(container, name, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    def exists(self, container: str, name: str) -> bool:
        return self._path(container, name).is_file()

    def list(self, container: str, prefix: str = "") -> list[str]:
        base = self.root / container
        if not base.is_dir():
            return []
        found = (
            p.relative_to(base).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )
        return sorted(n for n in found if n.startswith(prefix))
