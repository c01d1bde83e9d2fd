"""Which container and blob names every blob store accepts, so a name is valid everywhere or nowhere."""

from __future__ import annotations

import re

from shared.domain.errors import PermanentError

_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")  # Azure's container naming rule


class UnsafeBlobName(PermanentError, ValueError):
    """A blob name that would leave the store's folder or is not a plain relative path."""

    kind = "unsafe_blob_name"


def check_container_name(container: str) -> str:
    """Refuse a container name Azure would refuse (and that could leave the folder store's root)."""
    if not _CONTAINER.match(container):
        raise UnsafeBlobName(f"invalid container name {container!r}")
    return container


def check_blob_name(container: str, name: str) -> str:
    """Refuse a blob name that is not a plain relative path: empty, `.` or `..` segments,
    backslashes, NUL. Names come from events and file names: none may escape a store's root
    or alias another blob."""
    segments = name.split("/")
    if any(seg in ("", ".", "..") for seg in segments) or "\\" in name or "\x00" in name:
        raise UnsafeBlobName(f"unsafe blob name {container}/{name!r}")
    if len(name) > MAX_BLOB_NAME:
        raise UnsafeBlobName(f"blob name of {len(name)} characters: Azure takes at most {MAX_BLOB_NAME}")
    return name


MAX_BLOB_NAME = 1024  # Azure Blob Storage's limit
