"""A throwaway PostgreSQL server for the tests, from Debian's `postgresql` package.

Started once per test session with initdb/pg_ctl in a temporary folder, listening only on a
Unix socket and 127.0.0.1 with a free port; each test gets a fresh database.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.ports import free_port as _free_port


def find_pg_bin() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(candidate).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PgServer:
    def __init__(self) -> None:
        bindir = find_pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found; run scripts/install-system-deps")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="tre-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_user: list[str] = []
        self._template: str | None = None
        if os.geteuid() == 0:
            # initdb refuses to run as root: run the server as the postgres system user.
            pwd.getpwnam("postgres")
            os.chown(self.root, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, text=True)

    def start(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "tre",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.root / "log"),
            "-o",
            f"-p {self.port} -k {self.root} -h 127.0.0.1 -F",
            "start",
        )

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://tre@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, migrated: bool = False) -> str:
        """A fresh empty database, or with `migrated` a copy of one that the real migrations
        brought to head once per server (CREATE DATABASE ... TEMPLATE: milliseconds, where
        migrating each test's database took seconds on CI's shared cores)."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        template = self._migrated_template() if migrated else None
        clause = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=tre dbname=postgres", autocommit=True
        ) as c:
            c.execute(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    def _migrated_template(self) -> str:
        """The database at head that migrated copies are made from (built on first use; no
        connection may stay open to it, or CREATE DATABASE ... TEMPLATE refuses)."""
        if self._template is None:
            from tre.store.db import init_db, make_engine

            url = self.create_database()
            eng = make_engine(url)
            try:
                init_db(eng)
            finally:
                eng.dispose()
            self._template = url.rsplit("/", 1)[1]
        return self._template

    def drop_database(self, url: str) -> None:
        """Drop a test's database once it is done: a full run makes hundreds (~11 MB each), and
        leaving them all for stop() made its clean-up minutes long on a loaded disk."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=tre dbname=postgres", autocommit=True
        ) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
