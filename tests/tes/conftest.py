"""A live tre for TES clients: uvicorn on 127.0.0.1, a worker thread, real bubblewrap jobs.

Project ``lung`` (alice) holds dataset ``lidc`` (two DICOM files) and the approved job
image; project ``other`` (bob) holds neither. dana reviews (DAC), root administers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.worlds import IMAGE, WorldFactory
from tre.api.app import create_app
from tre.config import Settings
from tre.jobs.worker import Worker
from tre.server import BackgroundServer
from tre.store.db import session_scope

needs_bwrap = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="bubblewrap not installed")


@dataclass
class LiveTre:
    url: str
    tokens: dict[str, str]
    settings: Settings
    engine: Engine

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


def populate(engine: Engine, dicom_dir: Path) -> None:
    with session_scope(engine) as s:
        world = WorldFactory(s, actor="root")
        world.users({"alice": ["researcher"], "bob": ["researcher"], "dana": ["dac"], "root": ["admin"]})
        world.project("lung", "Lung", members=["alice"], quota={"max_concurrent_jobs": 8})
        world.project("other", "Other", members=["bob"])
        world.dataset("lidc", dicom_dir, "LIDC sample")
        world.grant("lung", "lidc")
        world.approve_image("lung")


@pytest.fixture
def live_tre(
    settings: Settings, engine: Engine, token_for: Callable[..., str], dicom_dir: Path
) -> Iterator[LiveTre]:
    populate(engine, dicom_dir)
    app = create_app(settings, engine)
    worker = Worker(settings, engine)
    thread = threading.Thread(target=worker.serve_forever, daemon=True)
    thread.start()
    try:
        with BackgroundServer(app) as server:
            tokens = {
                u: token_for(u, r)
                for u, r in (
                    ("alice", "researcher"),
                    ("bob", "researcher"),
                    ("dana", "dac"),
                    ("root", "admin"),
                )
            }
            yield LiveTre(server.url, tokens, settings, engine)
    finally:
        worker.stop()
        thread.join(timeout=10)


__all__ = ["IMAGE", "LiveTre", "needs_bwrap"]
