"""The local host on its embedded adapters, as the CLI, the demo and the tests use it."""

from __future__ import annotations

import json
import logging
import random
import sys
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any, BinaryIO

from shared.bootstrap import build_local, use_services
from shared.config import Settings
from shared.domain import names
from shared.domain.wording import counted
from shared.local.errors import CliError
from shared.local.host import DrainReport, LocalHost
from shared.ports import OutgoingMessage, Services
from shared.services import build_lease
from shared.services.pending import pending_days
from shared.services.replay import let_go_of_fetches

log = logging.getLogger(__name__)


class LocalPipeline:
    """The local host with the embedded adapters (or Azurite storage), running function_app's handlers."""

    def __init__(
        self, settings: Settings, rng: random.Random | None = None, *, read_only: bool = False
    ) -> None:
        """`read_only`: the ledger and warehouse opened only to read, the bus not journaled, for
        a command that must change nothing (`reconcile`)."""
        import function_app  # imported here: it configures logging and reads settings at import

        self.settings = settings
        self.read_only = read_only
        self.services: Services = build_local(settings, read_only=read_only)
        use_services(self.services)
        self.host = LocalHost(function_app.app, self.services.bus, rng)  # type: ignore[arg-type]
        # The warehouse is opened for staging and building only, never held while a fetch waits
        # on the API (contract section 1): readers of the file are not blocked by a slow API.
        self.host.before_delivery = self._let_go_of_warehouse_before_fetch
        if not read_only:
            # A writing command holds LOCAL_DATA_DIR's lock: no other process fetches, so a
            # fetch the ledger shows alive was left by a killed command and must not hold
            # this command's replays back.
            let_go_of_fetches(self.services)

    def _let_go_of_warehouse_before_fetch(self, queue: str) -> None:
        if queue == names.FETCH_QUEUE:
            self.services.warehouse.close()

    def replay(self, body: dict[str, Any], *, progress: bool = False) -> DrainReport:
        response = self.host.http("POST", "replay", body=body)
        if response.status_code != 202:
            raise CliError(
                json.loads(response.get_body()).get("error", f"replay answered {response.status_code}")
            )
        days = len(json.loads(response.get_body())["dates"])
        self.wake_left_behind()
        show = _progress_line(days) if progress and sys.stderr.isatty() else None
        report = self.host.drain(on_progress=show)
        if show is not None:
            print(file=sys.stderr)  # end the progress line
        return report

    def daily(self) -> tuple[DrainReport, date, list[date]]:
        """What the daily timer does (contract section 6, `run` without --date): fetch yesterday
        and re-check the USAGE_API_LOOKBACK_DAYS days before it. Returns the drain report,
        yesterday and the days re-checked."""
        from shared.services.replay import enqueue_daily

        yesterday, lookback = enqueue_daily(self.services, requested_by="cli")
        return self.host.drain(), yesterday, lookback

    def drop_crm(self, data: bytes | BinaryIO, blob_name: str, *, force: bool = False) -> DrainReport:
        """Upload a CRM file as a user would; `force` sets the blob metadata that lets a snapshot
        through the size check (on Azure: `az storage blob upload --metadata force=true`)."""
        metadata = {"force": "true"} if force else None
        self.services.blobs.put(
            names.CRM_CONTAINER, blob_name, data, metadata=metadata
        )  # publishes BlobCreated
        self.wake_left_behind()
        return self.host.drain()

    def rebuild(self, run_id: str) -> DrainReport:
        """Ask the transform to build the latest built day: with it, every day decided under
        other rules than those in force is rebuilt (the transform finds them in the ledger)."""
        days = sorted(e.key for e in self.services.ledger.query(names.DAYS))
        if not days:
            raise CliError("nothing built yet: run or backfill some days first")
        body = {"kind": "day", "date": days[-1], "run_id": run_id}
        message_id = f"{run_id}-{uuid.uuid4().hex[:12]}"  # a second rebuild in the same second too
        self.services.bus.send(names.TRANSFORM_QUEUE, [OutgoingMessage(body=body, message_id=message_id)])
        self.wake_left_behind(send=False)
        return self.host.drain()

    def wake_left_behind(self, *, send: bool = True) -> None:
        """Days left pending by an earlier command (a build that ran out of memory, a transform
        dead-lettered or killed) are owed work, whatever became of the message that announced
        them: wake the transform for them with a message of its own (a new id: duplicate
        detection never drops it). Fetches and loads are delivered first, so it builds after
        them, with whatever they mark.

        This command holds LOCAL_DATA_DIR's lock and has delivered nothing yet, so a build
        lease in the ledger is held by a command that died: it is let go."""
        if self.read_only:
            return
        waiting = pending_days(self.services.ledger.query(names.DAYS))
        if not waiting:
            return
        if self._only_queued():
            holder = build_lease.holder_of(self.services)
            if holder and not self._queued_holder(holder):
                log.warning("the build lease of %s outlived its command; letting it go", holder)
                build_lease.release(self.services, holder)
        if send:
            first = min(waiting).isoformat()
            body = {"kind": "pending", "date": first, "run_id": "wake-up"}
            message_id = f"transform-pending-{uuid.uuid4().hex}"
            self.services.bus.send(names.TRANSFORM_QUEUE, [OutgoingMessage(body=body, message_id=message_id)])
            log.info("%d days were left pending; woke the transform for them (%s)", len(waiting), message_id)

    def _only_queued(self) -> bool:
        """Nothing is being delivered in this process (only queued messages, none locked)."""
        return self.host.bus.in_flight() == 0

    def _queued_holder(self, holder: str) -> bool:
        """The holder's own message is still queued: its redelivery takes the lease over."""
        return self.host.bus.queued(names.TRANSFORM_QUEUE, holder)

    def status(self, day: str | None = None) -> Any:
        response = self.host.http("GET", "status", params={"date": day} if day else None)
        payload = json.loads(response.get_body())
        if response.status_code != 200:
            raise CliError(payload.get("error", f"status answered {response.status_code}"))
        return payload

    def close(self) -> None:
        use_services(None)
        self.services.warehouse.close()
        self.services.bus.close()


def _progress_line(days: int) -> Callable[[DrainReport], None]:
    """A progress line on a terminal, rewritten in place after every message."""

    def show(report: DrainReport) -> None:
        handled = report.handled
        print(
            f"\r{handled.get(names.FETCH_QUEUE, 0)}/{counted(days, 'day')} fetched, "
            f"{handled.get(names.INGEST_QUEUE, 0)} loads, {handled.get(names.TRANSFORM_QUEUE, 0)} builds",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show
