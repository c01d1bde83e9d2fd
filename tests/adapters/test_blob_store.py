"""BlobStore contract: the folder store and Azure Blob (on Azurite) behave the same."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.blob_publishing import PublishingBlobStore
from shared.domain import names
from shared.domain.blob_names import UnsafeBlobName
from shared.ports import BlobExists, BlobNotFound, BlobStore

# =========================================================================================
# BlobStore contract
# =========================================================================================

RAW = names.RAW_CONTAINER
CRM = names.CRM_CONTAINER


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        bytes(range(256)),
        b"\r\n\n\r\x00\x1a",
        random.Random(7).randbytes(300_000),
    ],
    ids=["empty", "ascii", "all-bytes", "newlines-nul", "300k-random"],
)
def test_blob_round_trip(blob_store: BlobStore, data: bytes) -> None:
    blob_store.put(RAW, "round/trip.bin", data)
    assert blob_store.get(RAW, "round/trip.bin") == data
    assert blob_store.info(RAW, "round/trip.bin").size == len(data)


def test_blob_chunks_are_the_blob_in_order(blob_store: BlobStore) -> None:
    data = random.Random(3).randbytes(9 * 1024 * 1024 + 17)  # more than one chunk on every store
    blob_store.put(RAW, "big/file.csv", data)
    pieces = list(blob_store.chunks(RAW, "big/file.csv"))
    assert b"".join(pieces) == data and len(pieces) > 1
    assert list(blob_store.chunks(RAW, "big/file.csv")) == pieces  # each call starts over
    blob_store.put(RAW, "empty.csv", b"")
    assert b"".join(blob_store.chunks(RAW, "empty.csv")) == b""
    with pytest.raises(BlobNotFound):
        list(blob_store.chunks(RAW, "missing.csv"))


def test_blob_overwrite_replaces(blob_store: BlobStore) -> None:
    blob_store.put(RAW, "x.json", b"a much longer first version")
    blob_store.put(RAW, "x.json", b"2")
    assert blob_store.get(RAW, "x.json") == b"2"
    assert blob_store.info(RAW, "x.json").size == 1
    assert blob_store.list(RAW) == ["x.json"]


def test_blob_put_without_overwrite(blob_store: BlobStore, request: pytest.FixtureRequest) -> None:
    blob_store.put(RAW, "once.json", b"first", overwrite=False)  # absent: creates it
    assert blob_store.get(RAW, "once.json") == b"first"
    with pytest.raises(BlobExists):
        blob_store.put(RAW, "once.json", b"second", overwrite=False)
    assert blob_store.get(RAW, "once.json") == b"first"


# A blob that is missing in each of the ways a name can miss.
MISSING_CASES: dict[str, tuple[list[tuple[str, str]], str]] = {
    # case: (blobs written first as (container, name), name asked for in RAW)
    "never-written": ([], "nope.json"),
    "in-other-container": ([(CRM, "elsewhere.csv")], "elsewhere.csv"),
    "virtual-folder": ([(RAW, "dir/x.json")], "dir"),
    "below-a-blob": ([(RAW, "dir/x.json")], "dir/x.json/y"),
}


@pytest.mark.parametrize("case", list(MISSING_CASES))
def test_blob_get_missing_raises(blob_store: BlobStore, request: pytest.FixtureRequest, case: str) -> None:
    written, name = MISSING_CASES[case]
    for container, blob in written:
        blob_store.put(container, blob, b"x")
    with pytest.raises(BlobNotFound):
        blob_store.get(RAW, name)


@pytest.mark.parametrize("case", list(MISSING_CASES))
def test_blob_info_missing_raises(blob_store: BlobStore, request: pytest.FixtureRequest, case: str) -> None:
    written, name = MISSING_CASES[case]
    for container, blob in written:
        blob_store.put(container, blob, b"x")
    with pytest.raises(BlobNotFound):
        blob_store.info(RAW, name)


@pytest.mark.parametrize("case", list(MISSING_CASES))
def test_blob_exists(blob_store: BlobStore, case: str) -> None:
    written, name = MISSING_CASES[case]
    for container, blob in written:
        blob_store.put(container, blob, b"x")
    assert blob_store.exists(RAW, name) is False
    blob_store.put(RAW, "there.json", b"")
    assert blob_store.exists(RAW, "there.json") is True
    assert blob_store.exists(CRM, "there.json") is False


def test_blob_info(blob_store: BlobStore) -> None:
    before = datetime.now(UTC)
    blob_store.put(CRM, "drops/companies.csv", b"id,name\n1,a\n")
    after = datetime.now(UTC)
    info = blob_store.info(CRM, "drops/companies.csv")
    assert (info.container, info.name, info.size) == (CRM, "drops/companies.csv", 12)
    assert info.created_at.tzinfo is not None
    assert info.created_at.utcoffset() == timedelta(0)
    slack = timedelta(seconds=30)  # coarse file system clocks, emulator clock skew
    assert before - slack <= info.created_at <= after + slack


def test_blob_list_with_prefix(blob_store: BlobStore) -> None:
    raw = [
        "usage/2024-05-02/run-1/manifest.json",
        "top.json",
        "usage/2024-05-01/run-1/page-00001.json",
        "usagex/other.json",
        "usage/2024-05-01/run-1/manifest.json",
    ]
    for name in raw:
        blob_store.put(RAW, name, b"{}")
    blob_store.put("other", "usage/2024-05-01/run-1/foreign.json", b"{}")
    blob_store.put(CRM, "usage/not-mine.csv", b"")

    assert blob_store.list(RAW) == sorted(raw)
    assert blob_store.list(RAW, "usage/") == [
        "usage/2024-05-01/run-1/manifest.json",
        "usage/2024-05-01/run-1/page-00001.json",
        "usage/2024-05-02/run-1/manifest.json",
    ]
    assert blob_store.list(RAW, "usage/2024-05-01/") == [
        "usage/2024-05-01/run-1/manifest.json",
        "usage/2024-05-01/run-1/page-00001.json",
    ]
    assert blob_store.list(RAW, "usage") == sorted(n for n in raw if n.startswith("usage"))
    assert blob_store.list(RAW, "usage/2024-05-0") == blob_store.list(RAW, "usage/")
    assert blob_store.list(RAW, "nothing/") == []
    assert blob_store.list("empty-container") == []
    assert blob_store.list("other") == ["usage/2024-05-01/run-1/foreign.json"]


NESTED_NAMES = [
    "a/b/c/d/e/f.json",
    "ünï/cødé/日本語.csv",
    "emoji/😀 party.bin",
    "spaces in/a name with spaces.txt",
    "dots/file.name.with.dots",
    "dash-and_underscore/x=1&y=2.json",
    ".hidden/.profile",
]


def test_blob_nested_and_unicode_names(blob_store: BlobStore) -> None:
    for i, name in enumerate(NESTED_NAMES):
        blob_store.put(RAW, name, name.encode() * (i + 1))
    for i, name in enumerate(NESTED_NAMES):
        assert blob_store.exists(RAW, name)
        assert blob_store.get(RAW, name) == name.encode() * (i + 1)
        assert blob_store.info(RAW, name).name == name
    assert blob_store.list(RAW) == sorted(NESTED_NAMES)
    assert blob_store.list(RAW, "ünï/") == ["ünï/cødé/日本語.csv"]


def test_blob_name_like_a_temp_file_is_listed(blob_store: BlobStore, request: pytest.FixtureRequest) -> None:
    blob_store.put(RAW, "reports/.tmp-report.csv", b"x")
    assert blob_store.exists(RAW, "reports/.tmp-report.csv")
    assert blob_store.list(RAW) == ["reports/.tmp-report.csv"]


UNSAFE_NAMES = ["../x", "/abs", "a/../../b", "a/../b", "..", "a\\b", "..\\x", "a\x00b", ""]
UNSAFE_CONTAINERS = ["", ".", "..", "a/b"]


@pytest.mark.parametrize("name", UNSAFE_NAMES, ids=repr)
def test_blob_unsafe_names_refused(
    blob_store: BlobStore, request: pytest.FixtureRequest, tmp_path: Path, name: str
) -> None:
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UnsafeBlobName):
        blob_store.put(RAW, name, b"evil")
    with pytest.raises(UnsafeBlobName):
        blob_store.get(RAW, name)
    with pytest.raises(UnsafeBlobName):
        blob_store.info(RAW, name)
    with pytest.raises(UnsafeBlobName):
        blob_store.exists(RAW, name)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere


@pytest.mark.parametrize("name", [".", "./a", "a/./b", "a//b", "a/"], ids=repr)
def test_blob_names_are_not_aliased(blob_store: BlobStore, request: pytest.FixtureRequest, name: str) -> None:
    """A name is either refused or stored under exactly that name."""
    try:
        blob_store.put(RAW, name, b"data")
    except (UnsafeBlobName, ValueError):
        assert blob_store.list(RAW) == []
        return
    assert blob_store.list(RAW) == [name]
    assert blob_store.get(RAW, name) == b"data"
    blob_store.put(RAW, "after.json", b"{}")  # the container still works
    assert blob_store.list(RAW) == sorted([name, "after.json"])


@pytest.mark.parametrize("container", UNSAFE_CONTAINERS, ids=repr)
def test_blob_unsafe_containers_refused(
    blob_store: BlobStore, request: pytest.FixtureRequest, tmp_path: Path, container: str
) -> None:
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UnsafeBlobName):
        blob_store.put(container, "x.json", b"evil")
    with pytest.raises(UnsafeBlobName):
        blob_store.get(container, "x.json")
    with pytest.raises(UnsafeBlobName):
        blob_store.info(container, "x.json")
    with pytest.raises(UnsafeBlobName):
        blob_store.exists(container, "x.json")
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("container", UNSAFE_CONTAINERS, ids=repr)
def test_blob_list_refuses_unsafe_containers(
    blob_store: BlobStore, request: pytest.FixtureRequest, tmp_path: Path, container: str
) -> None:
    (tmp_path / "outside.txt").write_text("not a blob")
    blob_store.put(RAW, "inside.json", b"{}")
    with pytest.raises(UnsafeBlobName):
        blob_store.list(container)


def test_publishing_store_announces_each_finished_blob(blob_store: BlobStore) -> None:
    """The local stand-in for Event Grid: one call per successful put, after the blob is readable."""
    calls: list[tuple[str, str, int, bytes]] = []

    def hook(container: str, name: str, size: int) -> None:
        calls.append((container, name, size, store.get(container, name)))

    store = PublishingBlobStore(blob_store, hook)
    store.put(RAW, "usage/2024-05-01/run-1/manifest.json", b"{}")
    store.put(CRM, "ünï/drop.csv", b"id\n1\n")
    store.put(RAW, "empty", b"")
    store.put(RAW, "empty", b"now 12 bytes")  # an overwrite is a new BlobCreated too
    assert calls == [
        (RAW, "usage/2024-05-01/run-1/manifest.json", 2, b"{}"),
        (CRM, "ünï/drop.csv", 5, b"id\n1\n"),
        (RAW, "empty", 0, b""),
        (RAW, "empty", 12, b"now 12 bytes"),
    ]
    with pytest.raises(BlobExists):
        store.put(RAW, "empty", b"x", overwrite=False)
    assert len(calls) == 4  # failed puts announce nothing


def test_blob_metadata_round_trips_and_an_overwrite_replaces_it(blob_store: BlobStore) -> None:
    blob_store.put("crm-drop", "dir/companies.csv", b"a", metadata={"Force": "true"})
    assert dict(blob_store.info("crm-drop", "dir/companies.csv").metadata) == {"force": "true"}
    assert blob_store.list("crm-drop") == ["dir/companies.csv"]  # the metadata is no blob
    blob_store.put("crm-drop", "dir/companies.csv", b"b")
    assert dict(blob_store.info("crm-drop", "dir/companies.csv").metadata) == {}


def test_folder_store_refuses_a_link_out_of_its_folder(tmp_path: Path) -> None:
    """Names cannot leave the folder (checked above); a symlink planted inside it cannot either,
    as a folder on the way or as the blob's own file, however often the folder was used before."""
    from shared.adapters.blob_folder import FolderBlobStore

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text("secret")
    store = FolderBlobStore(tmp_path / "store")
    store.put(RAW, "day/page-1.json", b"{}")
    (tmp_path / "store" / RAW / "linked").symlink_to(outside, target_is_directory=True)
    (tmp_path / "store" / RAW / "day" / "page-2.json").symlink_to(outside / "secret.json")
    for name in ("linked/secret.json", "day/page-2.json"):
        with pytest.raises(UnsafeBlobName):
            store.get(RAW, name)
        with pytest.raises(UnsafeBlobName):
            store.put(RAW, name, b"overwrite")
    assert (outside / "secret.json").read_text() == "secret"
    assert store.get(RAW, "day/page-1.json") == b"{}"


def test_a_name_too_long_for_a_store_is_refused_before_anything_is_written(
    blob_store: BlobStore, tmp_path: Path
) -> None:
    """Azure takes 1,024 characters; a local file name 255 bytes: refused as unsafe, not an OSError."""
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UnsafeBlobName, match="at most 1024"):
        blob_store.put(RAW, "a/" * 600 + "x.csv", b"data")
    if isinstance(blob_store, PublishingBlobStore) or type(blob_store).__name__ == "FolderBlobStore":
        with pytest.raises(UnsafeBlobName, match="longer than 250 bytes"):
            blob_store.put(RAW, "a" * 300 + ".csv", b"data")
    assert sorted(tmp_path.rglob("*")) == before


def test_blob_delete_removes_the_blob_and_its_metadata(blob_store: BlobStore) -> None:
    """GET /api/health deletes its probe blob: the port's delete (issue 20)."""
    container, name = names.HEALTH_CONTAINER, f"{names.HEALTH_BLOB_PREFIX}probe.txt"
    blob_store.put(container, name, b"probe", metadata={"force": "true"})
    blob_store.put(container, "health/kept.txt", b"kept")
    blob_store.delete(container, name)
    assert not blob_store.exists(container, name)
    assert blob_store.list(container) == ["health/kept.txt"]
    with pytest.raises(BlobNotFound):
        blob_store.delete(container, name)
    with pytest.raises(BlobNotFound):
        blob_store.delete(container, "health")  # a virtual folder is no blob
    blob_store.put(container, name, b"again")  # a new blob, without the old metadata
    assert blob_store.info(container, name).metadata == {}


def test_a_deleted_blob_is_not_announced(blob_store: BlobStore) -> None:
    calls: list[tuple[str, str, int]] = []
    store = PublishingBlobStore(blob_store, lambda c, n, s: calls.append((c, n, s)))
    store.put(names.HEALTH_CONTAINER, "health/probe.txt", b"x")
    store.delete(names.HEALTH_CONTAINER, "health/probe.txt")
    assert calls == [(names.HEALTH_CONTAINER, "health/probe.txt", 1)]
    assert not store.exists(names.HEALTH_CONTAINER, "health/probe.txt")
