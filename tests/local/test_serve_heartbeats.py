"""`serve` takes LOCAL_DATA_DIR's lock again for each request that may queue work; a fetch the
ledger shows alive then was left by a command killed meanwhile, as at any command's start."""

from __future__ import annotations

from pathlib import Path

from shared.config import Settings
from shared.domain import names
from shared.local.folder_lock import FolderLock
from shared.local.pipeline import LocalPipeline
from shared.local.server import LocalServer
from shared.services.fetch import ALIVE_AT
from tests.support import ISO


def test_serve_taking_the_folder_again_clears_a_killed_commands_heartbeat(local_env: Path) -> None:
    pipeline = LocalPipeline(Settings.from_env())
    lock = FolderLock(local_env, "serve --port 0")
    server = LocalServer(pipeline, port=0, lock=lock)  # not started: only its folder hold is used
    try:
        # Between two requests (the folder let go), a `run` stamped a heartbeat and was killed.
        killed = {
            "status": "running",
            "run_id": "fetch-killed",
            ALIVE_AT: pipeline.services.clock().isoformat(),
        }
        pipeline.services.ledger.put(names.FETCH, ISO, killed)

        with server.working():
            assert lock.held
            entry = pipeline.services.ledger.get(names.FETCH, ISO)

        assert entry is not None and ALIVE_AT not in entry.data, entry
        assert entry.data["run_id"] == "fetch-killed"  # resumed by the next fetch, not lost
    finally:
        server._server.server_close()
        server._let_go()
        pipeline.close()
