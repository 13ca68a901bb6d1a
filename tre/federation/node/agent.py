"""The node agent: connects outward to the hub, never listens.

Two loops share one lock: the poll loop holds a long request at the hub and receives work
(children, search queries); the progress loop follows each child through the node's own
admission, sandbox and airlock, reports states, and uploads what the node's DAC released.
Everything the agent knows lives in the node's database (`FedNodeChild`), so a restarted
node carries on where it stopped: unacknowledged states are sent again, redelivered
children are recognised by their id, and a local job lost in the crash is run once more.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tre.audit.log import latest_checkpoint
from tre.code.service import project_limits, record_upload
from tre.code.store import CodeStore
from tre.config import Settings
from tre.errors import TreError
from tre.federation.keys import node_key
from tre.federation.node import children
from tre.federation.node.children import Airlock
from tre.federation.node.client import HubClient, HubError
from tre.federation.node.config import NodeConfig
from tre.federation.vocabulary import ChildState, Reason
from tre.federation.wire import (
    ChildSpec,
    ReceivedChild,
    ReleasedFile,
    ReleaseIn,
    SearchAnswerIn,
    SearchWork,
    StateIn,
    Work,
)
from tre.federation.wire import child_id as derived_child_id
from tre.store.db import session_scope
from tre.store.federation_models import FedNodeChild, FedNodeProject
from tre.store.models import Project

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_UPLOAD_PAUSE_S = 300.0
# States after which a child's local job has ended (or never ran): its screened log goes first.
ENDED = frozenset({ChildState.awaiting_review.value, ChildState.refused.value, ChildState.failed.value})
CountAnswerer = Callable[[Session, Settings, dict[str, Any], str], SearchAnswerIn]


class NodeAgent:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        config: NodeConfig,
        airlock: Airlock,
        answer_counts: CountAnswerer,
        progress_every_s: float = 0.5,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.config = config
        self.airlock = airlock
        self.answer_counts = answer_counts
        self.progress_every_s = progress_every_s
        self.hub = HubClient(config, node_key(settings), timeout_s=settings.federation_poll_wait_s + 30)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        # Per child: when an upload may be tried again, and the current pause. Each try reads
        # the released files through the airlock (an audited download), so a hub that is away
        # or refusing must not turn into an audit entry every round.
        self.upload_backoff: dict[str, tuple[float, float]] = {}

    # -- units of work -------------------------------------------------------------------------
    def _unit(self, fn: Callable[..., T], *args: Any) -> T:
        with session_scope(self.engine) as s:
            return fn(s, *args)

    # -- receiving -----------------------------------------------------------------------------
    def poll_once(self) -> Work:
        work = Work.model_validate(
            self.hub.json("POST", "/hub/v1/agent/poll", {"wait_s": self.settings.federation_poll_wait_s})
        )
        for sent in work.children:
            spec = self._bounded(sent)
            if spec is None or not self._addressed_here(spec):
                continue
            with self.lock:
                self._receive(spec)
        for item in work.searches:
            self._answer(item)
        for cid in work.cancels:
            with self.lock:
                known = self._unit(children.cancel, cid)
            if not known:
                self._cancel_unreceived(cid)
        return work

    def _cancel_unreceived(self, cid: str) -> None:
        """A cancelled child this node never received (its delivery was still pending): it
        ends at the hub as cancelled, with nothing run."""
        try:
            self.hub.json(
                "POST",
                f"/hub/v1/agent/children/{cid}/state",
                StateIn(state=ChildState.failed, reason=Reason.job_cancelled).model_dump(),
            )
        except HubError as exc:
            log.info("a cancelled child's state not reported yet: %s", exc)

    def _bounded(self, sent: ChildSpec) -> ReceivedChild | None:
        """The child if it is within a local submission's bounds; else None, and the hub is
        told it was refused (`not_admitted`) when its id is one, so it is not sent again."""
        try:
            return ReceivedChild.model_validate(sent.model_dump())
        except ValidationError as exc:
            fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
            log.warning("the hub sent a child out of bounds (%s): refused unstored", ", ".join(fields))
        if "child_id" not in fields:
            try:
                self.hub.json(
                    "POST",
                    f"/hub/v1/agent/children/{sent.child_id}/state",
                    StateIn(state=ChildState.refused, reason=Reason.not_admitted).model_dump(),
                )
            except HubError as exc:
                log.info("a refused child's state not reported yet: %s", exc)
        return None

    def _addressed_here(self, spec: ReceivedChild) -> bool:
        """A child's id is `child_id(parent, node)`: one for another node, or one id sent again
        for a different parent (which the node would take as a redelivery of the first and
        never run), is dropped unstored and without a call, and audited here."""
        if spec.child_id == derived_child_id(spec.job_id, self.config.node):
            return True
        log.warning(
            "the hub sent child %s of job %s, not addressed to this node: dropped", spec.child_id, spec.job_id
        )
        self._unit(children.misaddressed, spec)
        return False

    def _receive(self, spec: ChildSpec) -> None:
        self._unit(children.receive, spec)
        self._start(spec.child_id)

    def _start(self, child_id: str) -> None:
        """Fetch the child's code if it has some, then admit and queue it (or refuse it)."""
        spec = self._unit(children.not_started, child_id)
        if spec is None:
            return
        code_ok = self._fetch_code(spec, spec.code_hash) if spec.code_hash else True
        self._unit(children.start, self.settings, child_id, code_ok)

    def _fetch_code(self, spec: ChildSpec, code_hash: str) -> bool:
        """Fetch the child's code from the hub, verify its SHA-256, store it for the mapped
        local project under this node's code quota. False when that fails for any reason."""
        store = CodeStore(self.settings)
        with session_scope(self.engine) as s:
            mapping = s.get(FedNodeProject, spec.project_id)
            project = s.get(Project, mapping.project_id) if mapping else None
            if project is None:
                return True  # refused for the mapping in `start`, not for the code
            limits = project_limits(project)
            project_id = project.id
        try:
            data = self.hub.request("GET", f"/hub/v1/agent/code/{code_hash}")
        except HubError as exc:
            log.warning("child %s: code %s not fetched: %s", spec.child_id, code_hash, exc)
            return False
        if hashlib.sha256(data).hexdigest() != code_hash:
            log.warning("child %s: code from the hub does not hash to %s", spec.child_id, code_hash)
            return False
        store.ensure_dirs()
        with tempfile.TemporaryDirectory(dir=self.settings.home) as tmp:
            path = Path(tmp) / "code.tar.gz"
            path.write_bytes(data)
            try:
                stored = store.store_file(path, limits)
            except (TreError, ValueError, OSError) as exc:
                log.warning("child %s: code %s refused here: %s", spec.child_id, code_hash, exc)
                return False
        with session_scope(self.engine) as s:
            record_upload(s, children.submitter(spec), project_id, stored)
        return True

    def _answer(self, item: SearchWork) -> None:
        with session_scope(self.engine) as s:
            answer = self.answer_counts(s, self.settings, item.query, item.asked_by)
        try:
            self.hub.json(
                "POST", f"/hub/v1/agent/searches/{item.search_id}/answer", answer.model_dump(mode="json")
            )
        except HubError as exc:
            log.warning("search %s: answer not delivered: %s", item.search_id, exc)

    # -- progress ------------------------------------------------------------------------------
    def progress_once(self) -> None:
        with self.lock:
            for child_id in self._unit(lambda s: children.open_children(s)):
                self._start(child_id)  # a child received just before a crash
                if self._unit(children.advance, self.settings, self.airlock, child_id):
                    not_before, _ = self.upload_backoff.get(child_id, (0.0, 0.0))
                    if time.monotonic() >= not_before:
                        self._upload(child_id)
            self._report()

    def _report(self) -> None:
        for child_id, state, reason in self._unit(children.unreported):
            try:
                if state in ENDED:
                    self._send_log(child_id)
                self.hub.json(
                    "POST",
                    f"/hub/v1/agent/children/{child_id}/state",
                    StateIn(state=ChildState(state), reason=Reason(reason)).model_dump(),
                )
            except HubError as exc:
                log.info("child %s: state not reported yet: %s", child_id, exc)
                if exc.status is None:
                    return  # the hub is away: try again next round
                continue
            self._unit(children.mark_reported, child_id, state, reason)

    def _send_log(self, child_id: str) -> None:
        """Before the hub hears that a child's job ended: its screened log (the submitter's
        view here, within the budgets) and exit code, for the hub's TES FULL view."""
        shown = self._unit(children.screened_log, self.settings, self.airlock, child_id)
        if shown is None:
            return
        try:
            self.hub.request(
                "PUT", f"/hub/v1/agent/children/{child_id}/log", shown.model_dump_json().encode()
            )
        except HubError as exc:
            if exc.status is None:
                raise  # the hub is away: the state waits for the log, next round
            # Refused (an older hub without the route): the state is reported without it.
            log.warning("child %s: screened log not taken by the hub: %s", child_id, exc)

    def _upload(self, child_id: str) -> None:
        """Send exactly the released files (by hash), the disclosure record and the newest
        signed checkpoint of this node's audit log, which covers the release and the reads."""
        files, record = self._unit(children.release_material, self.settings, self.airlock, child_id)
        note = self._unit(_latest_note)
        try:
            # Checked here with the hub's own bounds (`tre.federation.bounded_json`): a record
            # the hub would refuse is named in this node's log, not sent again and again.
            body = ReleaseIn(
                files=[ReleasedFile(name=f.name, sha256=f.sha256, size=f.size) for f in files],
                disclosure_record=record,
                checkpoint=note,
            )
        except ValidationError as exc:
            self.upload_backoff[child_id] = (time.monotonic() + MAX_UPLOAD_PAUSE_S, MAX_UPLOAD_PAUSE_S)
            first = exc.errors()[0]
            log.error(
                "child %s: the release cannot be sent, the hub would refuse it (%s: %s); an admin must act",
                child_id,
                ".".join(str(p) for p in first.get("loc", ())),
                first.get("msg", ""),
            )
            return
        try:
            for f in files:
                self.hub.request(
                    "PUT",
                    f"/hub/v1/agent/children/{child_id}/files/{f.sha256}",
                    f.data,
                    "application/octet-stream",
                )
            self.hub.request(
                "POST", f"/hub/v1/agent/children/{child_id}/release", body.model_dump_json().encode()
            )
        except HubError as exc:
            _, pause = self.upload_backoff.get(child_id, (0.0, self.settings.federation_retry_s / 2))
            pause = min(MAX_UPLOAD_PAUSE_S, pause * 2)
            self.upload_backoff[child_id] = (time.monotonic() + pause, pause)
            log.warning("child %s: results not delivered yet (next try in %.0f s): %s", child_id, pause, exc)
            return
        self.upload_backoff.pop(child_id, None)
        self._unit(children.mark_released, child_id)

    # -- loops ---------------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except HubError as exc:
                log.info("poll: %s", exc)
                self.stopping.wait(self.settings.federation_retry_s)
            except Exception:  # noqa: BLE001 - the agent must outlive any one bad round
                log.exception("poll round failed")
                self.stopping.wait(self.settings.federation_retry_s)

    def _progress_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.progress_once()
            except Exception:  # noqa: BLE001 - the agent must outlive any one bad round
                log.exception("progress round failed")
            self.stopping.wait(self.progress_every_s)

    def start(self) -> None:
        for target, name in ((self._poll_loop, "tre-fed-poll"), (self._progress_loop, "tre-fed-progress")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.hub.close()


def _latest_note(session: Session) -> str:
    checkpoint = latest_checkpoint(session)
    return checkpoint.note if checkpoint is not None else ""


def child_rows(engine: Engine) -> list[dict[str, Any]]:
    """The agent's record, for `tre node children` (staff on the node)."""
    with session_scope(engine, read_only=True) as s:
        return [
            json.loads(
                json.dumps({c.name: getattr(r, c.name) for c in FedNodeChild.__table__.columns}, default=str)
            )
            for r in s.scalars(select(FedNodeChild).order_by(FedNodeChild.received_at))
        ]
