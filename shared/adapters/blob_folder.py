"""Blob store on a local folder: `<root>/<container>/<blob name>`."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from shared.domain.blob_names import UnsafeBlobName, check_blob_name, check_container_name
from shared.ports import BlobExists, BlobInfo, BlobNotFound

CHUNK_BYTES = 4 * 1024 * 1024
# File systems hold 255 bytes per name; a blob's metadata file adds ".json" to its name.
MAX_SEGMENT_BYTES = 250


class FolderBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        # Temp files and metadata live outside every container (".tmp" and ".metadata" are not
        # valid container names), so no blob name can be mistaken for one and no listing shows them.
        self._tmp = self.root / ".tmp"
        self._meta = self.root / ".metadata"
        # Folders already checked to lie inside the root (symlinks resolved) and folders known to
        # exist: a day's pages share one folder, so each is checked and made once, not per blob.
        self._inside: set[str] = set()
        self._made: set[str] = set()

    def _container(self, container: str) -> Path:
        return self.root / check_container_name(container)

    def _path(self, container: str, name: str) -> Path:
        """The blob's file. The name is a plain relative path (checked), so only a symlink inside
        the store could lead out of it: the folder is resolved once, the file itself may not be
        a link."""
        check_blob_name(container, name)
        segments = name.split("/")
        if any(len(segment.encode()) > MAX_SEGMENT_BYTES for segment in segments):
            raise UnsafeBlobName(
                f"blob name {container}/{name[:60]!r}... has a part longer than {MAX_SEGMENT_BYTES} bytes,"
                " more than a local file name can hold"
            )
        path = self._container(container).joinpath(*segments)
        folder = str(path.parent)
        if folder not in self._inside:
            if not path.parent.resolve().is_relative_to(self.root):
                raise UnsafeBlobName(f"unsafe blob name {container}/{name!r}")
            self._inside.add(folder)
        if os.path.islink(path):
            raise UnsafeBlobName(f"unsafe blob name {container}/{name!r}: a link")
        return path

    def put(
        self,
        container: str,
        name: str,
        data: bytes | BinaryIO,
        *,
        overwrite: bool = True,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        path = self._path(container, name)
        if not overwrite and path.exists():
            raise BlobExists(f"blob {container}/{name} exists")
        # The metadata first: a blob is announced once its data is in place, and an overwrite
        # replaces the metadata too (as on Azure, where a new upload is a new blob).
        meta = self._meta_path(container, name)
        if metadata:
            self._write(meta, json.dumps({k.lower(): v for k, v in metadata.items()}).encode())
        else:
            meta.unlink(missing_ok=True)
        self._write(path, data)

    def _write(self, path: Path, data: bytes | BinaryIO) -> None:
        try:
            self._write_once(path, data)
        except FileNotFoundError:  # a folder removed behind our back: make it again
            self._made.clear()
            self._write_once(path, data)

    def _write_once(self, path: Path, data: bytes | BinaryIO) -> None:
        for folder in (path.parent, self._tmp):
            if str(folder) not in self._made:
                folder.mkdir(parents=True, exist_ok=True)
                self._made.add(str(folder))
        # Write then rename: a reader never sees half a blob, as with a committed block list.
        fd, tmp = tempfile.mkstemp(dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as handle:
                if isinstance(data, bytes):
                    handle.write(data)
                else:
                    shutil.copyfileobj(data, handle, CHUNK_BYTES)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _meta_path(self, container: str, name: str) -> Path:
        return self._meta.joinpath(check_container_name(container), *name.split("/")).with_name(
            name.rsplit("/", 1)[-1] + ".json"
        )

    def _file(self, container: str, name: str) -> Path:
        path = self._path(container, name)
        if not path.is_file():
            raise BlobNotFound(f"{container}/{name}")
        return path

    def get(self, container: str, name: str) -> bytes:
        try:
            return self._file(container, name).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(f"{container}/{name}") from None

    def chunks(self, container: str, name: str) -> Iterator[bytes]:
        try:
            handle = self._file(container, name).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(f"{container}/{name}") from None
        with handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk

    def info(self, container: str, name: str) -> BlobInfo:
        try:
            stat = self._file(container, name).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(f"{container}/{name}") from None
        modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        meta = self._meta_path(container, name)
        metadata = json.loads(meta.read_bytes()) if meta.is_file() else {}
        # A file has no portable creation time; an overwrite is a new blob on Azure too.
        return BlobInfo(
            container, name, stat.st_size, created_at=modified, last_modified=modified, metadata=metadata
        )

    def exists(self, container: str, name: str) -> bool:
        return self._path(container, name).is_file()

    def list(self, container: str, prefix: str = "") -> list[str]:
        base = self._container(container)
        if not base.is_dir():
            return []
        found = (p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(n for n in found if n.startswith(prefix))

    def delete(self, container: str, name: str) -> None:
        path = self._path(container, name)
        try:
            if not path.is_file():
                raise FileNotFoundError(path)
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(f"{container}/{name}") from None
        self._meta_path(container, name).unlink(missing_ok=True)
