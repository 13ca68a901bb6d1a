"""Processes that start together on a new SQLite database each migrate it (`init_db`): two
`tre serve` units, `tre worker` beside `tre serve`. Alembic runs SQLite's DDL outside one
transaction (each process plans the migrations from the version it read first, and commits
them one by one), so two of them ran the same migration and the second failed to start with
"table ... already exists" (seen in CI's two-servers test). Real processes, released at one
moment. A race: before the fix this test failed in 8 of 12 runs here, not in every run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from tre.store.db import make_engine

PROCESSES = 4
ROUNDS = 3
MIGRATE = """
import sys, time
from pathlib import Path
from tre.store.db import init_db, make_engine
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
init_db(make_engine(sys.argv[1]))
"""


def test_processes_starting_together_on_a_new_database_all_migrate_it(tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        url = f"sqlite:///{tmp_path / f'tre-{round_}.db'}"
        go = tmp_path / f"go-{round_}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", MIGRATE, url, str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(PROCESSES)
        ]
        time.sleep(3)  # each has imported SQLAlchemy and Alembic and waits for the go
        go.touch()
        failed = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            if proc.returncode != 0:
                failed.append(err.strip().splitlines()[-1:] if err.strip() else out)
        assert not failed, f"round {round_}: {failed}"
        engine = make_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        engine.dispose()
