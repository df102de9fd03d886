"""Connections to the learning store: engines, the schema, transactions and their errors.

One ``Database`` per store URL and process, shared by every LearningStore on that URL. It keeps
what the store promises (store.py's docstring):
* SQLite in WAL mode, each write a short ``BEGIN IMMEDIATE`` transaction that waits up to
  ``busy_timeout`` for the lock instead of failing; or any SQLAlchemy URL (``postgresql://`` uses
  psycopg 3, else psycopg2, whichever is installed);
* a file that is not a SQLite database, or fails SQLite's quick_check, raises StoreCorruptError
  and is never replaced or rewritten. The file is checked again before each transaction, so one
  overwritten, replaced or removed while in use is noticed (never written into the old copy);
* a read-only file, folder, server or database user raises StoreReadOnlyError on writes, while
  reading still works (a WAL store in a read-only folder is read as an immutable file);
* a transaction whose connection drops before it commits runs again on a new connection; one
  that drops while committing is reported as such, never half-written (the server rolls back);
* schema creation is safe when several servers start on a new store at once (SQLite's write
  lock, a PostgreSQL advisory lock, else a re-check);
* every database error becomes a LearningError naming the store and the fix.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Callable

from .errors import LearningError, StoreCorruptError, StoreReadOnlyError

STORE_FILE_NAME = "learning.sqlite3"
SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 60_000
CONNECT_TIMEOUT_S = 10
WRITE_ATTEMPTS = 3          # tries of a transaction whose connection drops before COMMIT
TABLE_NAMES = ("generations", "generation_loras", "feedback", "edits")
# PostgreSQL advisory lock held while one server creates the tables ("Kubik" in ASCII).
SCHEMA_LOCK_KEY = 0x4B7562696B
# PostgreSQL SQLSTATEs of a transaction the server rolled back and that can simply run again.
RETRY_SQLSTATES = {"40001", "40P01"}   # serialization failure, deadlock

_DATABASES: dict[str, "Database"] = {}
_DATABASES_LOCK = threading.Lock()


def build_tables(metadata):
    """The four tables (see store.py) on ``metadata``."""
    from sqlalchemy import (Boolean, Column, Float, ForeignKey, Index, Integer, String,
                            Table, Text)

    generations = Table(
        "generations", metadata,
        Column("id", String(32), primary_key=True),
        Column("created_at", Float, nullable=False),
        Column("prompt", Text, nullable=False),
        Column("negative", Text, nullable=False, default=""),
        Column("family", String(64), nullable=False, default=""),
        Column("style", String(64), nullable=False, default=""),
        Column("content_type", String(64), nullable=False, default=""),
        Column("model", Text, nullable=False, default=""),
        # Text: ComfyUI seeds go up to 2**64 - 1, beyond SQL's signed 64-bit integers.
        Column("seed", String(20)),
        Column("preset", String(64), nullable=False, default=""),
        Column("image_path", Text, nullable=False, default=""),
        Column("analysis", Text, nullable=False, default="{}"),
        Column("params", Text, nullable=False, default="{}"),
        Column("edited", Integer, nullable=False, default=0),
    )
    generation_loras = Table(
        "generation_loras", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("generation_id", String(32), ForeignKey("generations.id"), nullable=False),
        Column("lora", String(255), nullable=False),
        Column("sha256", String(64), nullable=False, default=""),
        Column("strength_model", Float, nullable=False, default=1.0),
        Column("strength_clip", Float, nullable=False, default=1.0),
        Column("suggested", Boolean, nullable=False, default=False),
        Index("ix_generation_loras_generation", "generation_id"),
        Index("ix_generation_loras_lora", "lora"),
    )
    feedback = Table(
        "feedback", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("generation_id", String(32), ForeignKey("generations.id"), nullable=False),
        Column("created_at", Float, nullable=False),
        Column("rating", Integer, nullable=False),
        Column("quality", Integer),
        Column("accuracy", Integer),
        Column("aesthetic", Integer),
        Column("tags", Text, nullable=False, default="[]"),
        Column("comment", Text, nullable=False, default=""),
        Column("saved", Boolean, nullable=False, default=False),
        Column("shared", Boolean, nullable=False, default=False),
        Column("regenerated", Boolean, nullable=False, default=False),
        Index("ix_feedback_generation", "generation_id"),
    )
    edits = Table(
        "edits", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("generation_id", String(32)),
        Column("created_at", Float, nullable=False),
        Column("family", String(64), nullable=False),
        Column("style", String(64), nullable=False, default=""),
        Column("field", String(64), nullable=False),
        Column("suggested", Text, nullable=False),
        Column("final", Text, nullable=False),
        Index("ix_edits_family_field", "family", "field"),
    )
    return generations, generation_loras, feedback, edits


def to_url(location: str | os.PathLike) -> tuple[str, Path | None]:
    """(SQLAlchemy URL, the SQLite file or None) for a file path or a URL."""
    text = os.fspath(location)
    if "://" in text:
        if text.startswith("sqlite:///") and not text.startswith("sqlite:///:memory:"):
            return text, Path(text[len("sqlite:///"):])
        return text, None
    path = Path(text).expanduser().absolute()
    return f"sqlite:///{path}", path


def describe_url(url: str) -> str:
    """A store URL without its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(a URL that does not parse)"


def _check_sqlite_file(path: Path) -> None:
    """Raise StoreCorruptError if ``path`` exists and is not a SQLite database."""
    try:
        if path.is_dir():
            raise StoreCorruptError(f"learning store {path} is a folder, not a database file: give "
                                    f"the path of a file, e.g. {path / STORE_FILE_NAME}")
        with open(path, "rb") as handle:
            magic = handle.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except PermissionError:
        raise StoreReadOnlyError(f"learning store {path} cannot be read (permission denied): make it "
                                 "readable and writable for the user running ComfyUI") from None
    if magic and magic != SQLITE_MAGIC:
        raise StoreCorruptError(
            f"learning store {path} is not a SQLite database (damaged or overwritten). It was left "
            "untouched: move it aside (with its -wal and -shm files) to start a new store, or "
            "restore it from a backup.")


def _with_driver(url: str) -> str:
    """``postgresql://`` (or ``postgres://``) with the PostgreSQL driver that is installed:
    SQLAlchemy's default for the bare scheme is psycopg2, the requirements name psycopg 3."""
    scheme, _sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return url
    for module in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{module}://{rest}"
    raise LearningError("the learning store is a PostgreSQL URL, but no PostgreSQL driver is "
                        'installed: pip install "psycopg[binary]"')


def _first_line(error: BaseException, limit: int = 300) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


# SQLite result codes by message, for Pythons before 3.11 (no sqlite_errorname).
_SQLITE_MESSAGES = {
    "database is locked": "SQLITE_BUSY", "attempt to write a readonly database": "SQLITE_READONLY",
    "file is not a database": "SQLITE_NOTADB", "database disk image is malformed": "SQLITE_CORRUPT",
    "database or disk is full": "SQLITE_FULL", "disk I/O error": "SQLITE_IOERR",
    "unable to open database file": "SQLITE_CANTOPEN",
}


def _sqlite_code(error: BaseException) -> str:
    name = getattr(error, "sqlite_errorname", "")
    if name:
        return name
    message = str(error)
    return next((code for text, code in _SQLITE_MESSAGES.items() if text in message), "")


def _can_create_in(folder: Path) -> bool:
    """Whether this process may create files in ``folder`` (tried: os.access answers for the
    real user id, and root without CAP_DAC_OVERRIDE is refused what os.access allows)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _can_write(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_WRONLY))
        return True
    except OSError:
        return False


def _sqlstate(error: BaseException) -> str:
    return getattr(error, "sqlstate", None) or getattr(error, "pgcode", None) or ""


class Database:
    """This process's connections to one store, shared by every LearningStore on its URL:
    the engines, the schema check done once, and the translation of database errors."""

    def __init__(self, url: str, path: Path | None):
        from sqlalchemy import MetaData

        self.url, self.path = url, path
        self.label = str(path) if path is not None else describe_url(url)
        self.metadata = MetaData()
        self.tables = dict(zip(TABLE_NAMES, build_tables(self.metadata)))
        self.lock = threading.RLock()
        # SQLite takes one writer at a time: this process's threads queue here, in order, rather
        # than in SQLite's busy handler, which polls with sleeps (twice as fast with 4 writers).
        self.write_lock = threading.Lock() if path is not None else contextlib.nullcontext()
        self.ready = False                 # the file checked and the tables present
        self.identity: tuple[int, int] | None = None   # SQLite: the file that was checked
        self.readonly_engine = None        # SQLite in a read-only folder: reads only
        # SQLite: a plain connection held open while the file is in use. It keeps referring to
        # the file that was checked even after that file is replaced (see _check_file).
        self.anchor = None
        self.engine = self._sqlite_engine() if path is not None else self._server_engine()

    # ---------------------------------------------------------------- engines
    def _sqlite_engine(self):
        from sqlalchemy import create_engine, event

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreReadOnlyError(f"learning store {self.path}: its folder cannot be created "
                                     f"({exc.strerror}). Point KUBIK_LEARNING_URL at a writable "
                                     "place.") from exc
        engine = create_engine(self.url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            import sqlite3

            dbapi_connection.isolation_level = None   # SQLAlchemy emits BEGIN itself
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                # A read-only file or folder: reading may still work; writes report it.
                if not _sqlite_code(exc).startswith("SQLITE_READONLY"):
                    raise
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection):
            # Writers take the lock up front (no deadlock upgrading a read lock to a write
            # lock); readers use a plain deferred BEGIN and never block writers under WAL.
            read_only = connection.get_execution_options().get("kubik_read_only", False)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine

    def _server_engine(self):
        from sqlalchemy import create_engine
        from sqlalchemy.exc import ArgumentError

        url = _with_driver(self.url)
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith("postgresql") else {}
        try:
            return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        except ImportError as exc:
            raise LearningError(f"the learning store {self.label} needs the Python package "
                                f"{exc.name or 'of its database driver'}: install it (PostgreSQL: "
                                'pip install "psycopg[binary]")') from exc
        except ArgumentError as exc:
            raise LearningError(f"the learning store location {self.label} is not a file path or a "
                                f"SQLAlchemy URL (dialect+driver://user:password@host/database): "
                                f"{_first_line(exc)}") from exc

    def _open_readonly(self, cause: BaseException) -> None:
        """Read a WAL store in a read-only folder (SQLite cannot make its -shm file there) as an
        immutable file - exact unless its -wal file holds changes not yet merged."""
        import sqlite3

        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        wal = Path(f"{self.path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreReadOnlyError(
                f"learning store {self.path}: its folder is read-only and {wal.name} holds changes "
                "not merged into the store yet, so it cannot be read safely. Make the folder "
                "writable once (the next use of the store merges them).") from cause
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro&immutable=1"
        self.readonly_engine = create_engine(
            "sqlite://", poolclass=NullPool, creator=lambda: sqlite3.connect(uri, uri=True))

    # ---------------------------------------------------------------- transactions
    def open(self) -> None:
        """Check the store now, so that one that cannot be used is reported at once."""
        if self.path is not None:
            self._check_file()
        self.prepare()

    def run(self, work: Callable[[Any], Any], write: bool) -> Any:
        """``work(connection)`` in one transaction, after checking the store (see the module doc)."""
        if self.path is not None:
            self._check_file()
        if not self.ready:
            self.prepare()
        return self._transaction(work, write)

    def prepare(self) -> None:
        """Check the file (SQLite) and create missing tables; once per process and file."""
        with self.lock:
            if self.ready:
                return
            if self.path is not None:
                result = self._transaction(
                    lambda conn: conn.exec_driver_sql("PRAGMA quick_check").scalar(), write=False)
                if result != "ok":
                    raise StoreCorruptError(f"learning store {self.path} failed SQLite's integrity "
                                            f"check ({result}); it was left untouched: restore it "
                                            "from a backup, or move it aside to start a new store")
            if self._missing_tables():
                try:
                    self._transaction(self._create_tables, write=True)
                except LearningError:
                    # Another server may have made them at this moment (a database without a
                    # schema lock here): only a store still without its tables is an error.
                    if self._missing_tables():
                        raise
            self.identity = self._file_identity()
            if self.path is not None and self.readonly_engine is None:
                import sqlite3

                self.anchor = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                              isolation_level=None, check_same_thread=False)
            self.ready = True

    def _missing_tables(self) -> list[str]:
        from sqlalchemy import inspect

        return self._transaction(
            lambda conn: [name for name in TABLE_NAMES if not inspect(conn).has_table(name)], write=False)

    def _create_tables(self, conn) -> None:
        if conn.dialect.name == "postgresql":
            # Servers starting together on a new store: one creates, the others wait and find
            # the tables made (SQLite's BEGIN IMMEDIATE serializes the same way).
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
        self.metadata.create_all(conn, checkfirst=True)

    def _file_identity(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def _check_file(self) -> None:
        """SQLite: a store file replaced or removed while in use is opened anew (never written
        into the old copy); one overwritten with something else is reported, untouched.

        SQLite finds a store's -wal and -shm files by name, so after a replacement the old copy's
        -wal would be replayed into the new file. It is merged into the old copy first, through
        the anchor connection (the only one sure to hold that copy), which empties it.
        (Restore a backup by moving it into place, or with ComfyUI stopped, never by copying
        over the store: a copy in place cannot be told from the store itself.)
        """
        with self.lock:
            if self.ready and self._file_identity() != self.identity:
                self._reset(merge_wal=True)
        _check_sqlite_file(self.path)

    def _reset(self, merge_wal: bool = False) -> None:
        """Drop the open connections: the next transaction checks and opens the file again."""
        import sqlite3

        with self.lock:
            if self.anchor is not None:
                if merge_wal:
                    try:
                        self.anchor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    except sqlite3.Error:
                        pass   # an old copy that cannot be written has no changes to merge
                self.anchor.close()
                self.anchor = None
            self.engine.dispose()
            self.readonly_engine = None
            self.ready = False

    def _transaction(self, work: Callable[[Any], Any], write: bool) -> Any:
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        attempt = 0
        while True:
            attempt += 1
            stage = "connect"
            engine = self.readonly_engine if (not write and self.readonly_engine is not None) else self.engine
            try:
                with self.write_lock if write else contextlib.nullcontext(), engine.connect() as conn:
                    if not write:
                        conn.execution_options(kubik_read_only=True)
                    stage = "work"
                    with conn.begin():
                        result = work(conn)
                        stage = "commit"
                return result
            except DBAPIError as exc:
                if not write and engine is self.engine and self._folder_is_read_only(exc):
                    self._open_readonly(exc)
                    continue
                # A read may always run again; a write only if it surely did not commit.
                if (stage != "commit" or not write) and attempt < WRITE_ATTEMPTS and self._retryable(exc):
                    continue
                raise self._error(exc, write, stage, attempt) from exc
            except SQLAlchemyError as exc:
                raise LearningError(f"learning store {self.label}: {_first_line(exc)}") from exc

    def _folder_is_read_only(self, exc) -> bool:
        return self.path is not None and self._sqlite_problem(exc.orig) == "readonly_folder"

    @staticmethod
    def _retryable(exc) -> bool:
        return bool(exc.connection_invalidated) or _sqlstate(exc.orig) in RETRY_SQLSTATES

    # ---------------------------------------------------------------- errors
    def _sqlite_problem(self, error: BaseException) -> str:
        code = _sqlite_code(error)
        if code == "SQLITE_READONLY_DIRECTORY" or (
                code in ("SQLITE_READONLY", "SQLITE_CANTOPEN") and not _can_create_in(self.path.parent)
                and (not self.path.exists() or _can_write(self.path))):
            return "readonly_folder"
        for prefix, problem in (("SQLITE_READONLY", "readonly_file"), ("SQLITE_BUSY", "locked"),
                                ("SQLITE_LOCKED", "locked"), ("SQLITE_NOTADB", "damaged"),
                                ("SQLITE_CORRUPT", "damaged"), ("SQLITE_FULL", "full"),
                                ("SQLITE_IOERR", "io"), ("SQLITE_CANTOPEN", "cantopen")):
            if code.startswith(prefix):
                return problem
        return ""

    def _error(self, exc, write: bool, stage: str, attempts: int) -> LearningError:
        """The store's own error for a database error: what happened and what fixes it."""
        detail = _first_line(exc.orig)
        outcome = "nothing was recorded" if write else "it could not be read"
        label = self.label
        if exc.connection_invalidated and stage == "commit":
            return LearningError(f"the connection to the learning store {label} was lost while "
                                 "committing, so the record may or may not have been saved: check "
                                 "with `kubik insights` before recording it again")
        if exc.connection_invalidated:
            return LearningError(f"the connection to the learning store {label} was lost {attempts} "
                                 f"times, so {outcome} (unfinished work is rolled back: nothing "
                                 "was half-written). Check the server and the network, then try "
                                 "again.")
        if self.path is not None:
            return self._sqlite_error(self._sqlite_problem(exc.orig), detail, outcome)
        state = _sqlstate(exc.orig)
        if stage == "connect" and not state.startswith("42"):
            return LearningError(f"cannot connect to the learning store {label}: {detail}. Check "
                                 "that the server runs and that KUBIK_LEARNING_URL is right.")
        if state == "25006":
            return StoreReadOnlyError(f"learning store {label} is read-only (a read-only server or "
                                      "transaction), so nothing can be recorded; reading still works. "
                                      "Point KUBIK_LEARNING_URL at the primary server.")
        if state == "42501":
            return StoreReadOnlyError(f"learning store {label}: the database user lacks a permission "
                                      f"({detail}), so {outcome}. Grant it SELECT and INSERT on the "
                                      "store's tables (and CREATE for a new store), or use another user.")
        if state == "53100":
            return LearningError(f"learning store {label}: the server's disk is full, so {outcome}. "
                                 "Free space on the server and try again.")
        return LearningError(f"learning store {label}: {detail} ({outcome})")

    def _sqlite_error(self, problem: str, detail: str, outcome: str) -> LearningError:
        path = self.path
        if problem == "readonly_folder" and not path.exists():
            return StoreReadOnlyError(f"learning store {path} cannot be created: its folder "
                                      f"{path.parent} is read-only. Make the folder writable, or "
                                      "point KUBIK_LEARNING_URL at a store in a writable place.")
        if problem in ("readonly_folder", "readonly_file"):
            where = f"its folder {path.parent} is read-only" if problem == "readonly_folder" \
                else "the file is read-only"
            fix = "make the folder writable" if problem == "readonly_folder" else "make it writable"
            return StoreReadOnlyError(f"learning store {path}: {where}, so nothing can be recorded "
                                      f"(reading still works). To record, {fix}, or point "
                                      "KUBIK_LEARNING_URL at a store in a writable place.")
        if problem == "locked":
            return LearningError(f"learning store {path} is locked: another program has held its "
                                 f"write lock for over {BUSY_TIMEOUT_MS / 1000:g} s (a database "
                                 "browser with unsaved changes, or a stuck process), so "
                                 f"{outcome}. Close that program and try again.")
        if problem == "damaged":
            self._reset()
            return StoreCorruptError(f"learning store {path} is damaged ({detail}). It was left "
                                     "untouched: move it aside (with its -wal and -shm files) to "
                                     "start a new store, or restore it from a backup.")
        if problem == "full":
            return LearningError(f"learning store {path}: the disk is full, so {outcome}. Free "
                                 "some space on it and try again.")
        if problem == "io":
            return LearningError(f"learning store {path}: disk I/O error ({detail}), so {outcome}. "
                                 "Check the disk, and that the file was not moved while in use.")
        if problem == "cantopen":
            return LearningError(f"learning store {path} cannot be opened ({detail}): check that "
                                 "its folder exists and can be written, or point "
                                 "KUBIK_LEARNING_URL elsewhere.")
        return LearningError(f"learning store {path}: {detail} ({outcome})")


def database(url: str, path: Path | None) -> Database:
    """The shared Database of ``url`` in this process (a forked child makes its own)."""
    key = f"{os.getpid()}:{url}"
    with _DATABASES_LOCK:
        database = _DATABASES.get(key)
        if database is None:
            database = _DATABASES[key] = Database(url, path)
        return database
