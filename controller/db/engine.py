"""Engine factory: SQLite (WAL) on one machine, any SQLAlchemy URL (e.g. postgresql+psycopg) beyond it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from controller.db.models import Base

log = logging.getLogger("edgefleet.controller.db")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the REST threads read while the ingest worker writes; busy_timeout
    # turns the rare writer collision into a short wait instead of an error.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str, *, create: bool = True, **kwargs: Any) -> Engine:
    """Engine for ``url``; ``create`` runs create_all (idempotent) so a fresh store works at once."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 10})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(url, **kwargs)
    if create:
        Base.metadata.create_all(engine)
    log.info("database: %s", parsed.render_as_string(hide_password=True))
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


__all__ = ["make_engine", "make_sessionmaker"]
