"""The learning store: generations, feedback and the user's edits of suggested values.

SQLite in WAL mode by default (one file; many readers alongside one writer, each write a short
``BEGIN IMMEDIATE`` transaction that waits up to ``busy_timeout`` for the lock instead of
failing), or any SQLAlchemy URL - PostgreSQL where several ComfyUI servers share one store.

Default location: inside ComfyUI the nodes pass ``<ComfyUI user directory>/kubik/learning.sqlite3``;
elsewhere ``$KUBIK_LEARNING_URL`` (a SQLAlchemy URL or a file path), else
``$XDG_DATA_HOME/kubik/learning.sqlite3`` (``~/.local/share/kubik/learning.sqlite3``).

A store file that is not a SQLite database, or fails SQLite's quick_check, raises
StoreCorruptError naming the file; it is never replaced or rewritten.

Tables:
  generations      one row per image: prompt, analysis, parameters, LoRAs, seed, model, preset
  generation_loras the LoRAs of each generation (name, hash, strengths), for per-LoRA scores
  feedback         rating 1-5, quality/accuracy/aesthetic 1-5 (optional), tags, comment,
                   saved/shared/regenerated flags
  edits            a suggested value the user changed: family, style, field, suggested, final
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import LearningError, StoreCorruptError, UnknownGenerationError

STORE_FILE_NAME = "learning.sqlite3"
SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 60_000
SUB_RATINGS = ("quality", "accuracy", "aesthetic")

_ENGINES: dict[str, Any] = {}
_CHECKED: set[str] = set()
_ENGINES_LOCK = threading.Lock()


def default_store_location() -> str:
    """The store outside ComfyUI (see the module docstring)."""
    url = os.environ.get("KUBIK_LEARNING_URL")
    if url:
        return url
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(xdg, "kubik", STORE_FILE_NAME)


@dataclass
class GenerationRecord:
    """What was generated; every field but ``prompt`` is optional."""

    prompt: str
    negative: str = ""
    family: str = ""
    style: str = ""
    content_type: str = ""
    model: str = ""
    seed: int | None = None
    preset: str = ""
    image_path: str = ""
    analysis: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    # [{"name", "sha256", "autov2", "strength_model", "strength_clip", "suggested": bool}]
    loras: list[dict[str, Any]] = field(default_factory=list)


def _tables(metadata):
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
    text = os.fspath(location)
    if "://" in text:
        if text.startswith("sqlite:///") and not text.startswith("sqlite:///:memory:"):
            return text, Path(text[len("sqlite:///"):])
        return text, None
    path = Path(text).expanduser().absolute()
    return f"sqlite:///{path}", path


def _check_sqlite_file(path: Path) -> None:
    """Raise StoreCorruptError if ``path`` exists and is not a SQLite database."""
    if not path.exists() or path.stat().st_size == 0:
        return
    if path.is_dir():
        raise StoreCorruptError(f"learning store {path} is a folder, not a database file")
    with open(path, "rb") as handle:
        magic = handle.read(len(SQLITE_MAGIC))
    if magic != SQLITE_MAGIC:
        raise StoreCorruptError(
            f"learning store {path} is not a SQLite database (damaged or overwritten). It was left "
            "untouched: move it aside to start a new store, or restore it from a backup.")


def _engine_for(url: str, sqlite_path: Path | None):
    from sqlalchemy import create_engine, event

    with _ENGINES_LOCK:
        key = f"{os.getpid()}:{url}"
        engine = _ENGINES.get(key)
        if engine is not None:
            return engine
        if sqlite_path is not None:
            sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_connection, _record):
                dbapi_connection.isolation_level = None   # SQLAlchemy emits BEGIN itself
                cursor = dbapi_connection.cursor()
                cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _on_begin(connection):
                # Writers take the lock up front (no deadlock upgrading a read lock to a write
                # lock); readers use a plain deferred BEGIN and never block writers under WAL.
                read_only = connection.get_execution_options().get("kubik_read_only", False)
                connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
        else:
            engine = create_engine(url, pool_pre_ping=True)
        _ENGINES[key] = engine
        return engine


class LearningStore:
    """Read and write the learning store. Cheap to construct: engines are shared per URL."""

    def __init__(self, location: str | os.PathLike | None = None):
        from sqlalchemy import MetaData
        from sqlalchemy.exc import DatabaseError, OperationalError

        location = location or default_store_location()
        self.url, self.path = to_url(location)
        if self.path is not None:
            _check_sqlite_file(self.path)
        self.engine = _engine_for(self.url, self.path)
        self.metadata = MetaData()
        self.generations, self.generation_loras, self.feedback, self.edits = _tables(self.metadata)
        try:
            if self.url not in _CHECKED:
                if self.path is not None:
                    with self._reading() as conn:
                        result = conn.exec_driver_sql("PRAGMA quick_check").scalar()
                    if result != "ok":
                        raise StoreCorruptError(f"learning store {self.path} failed SQLite's integrity "
                                                f"check ({result}); it was left untouched")
                self.metadata.create_all(self.engine)
                _CHECKED.add(self.url)
        except DatabaseError as exc:
            if self.path is not None and not isinstance(exc, OperationalError):
                raise StoreCorruptError(f"learning store {self.path} cannot be read as a database "
                                        f"({exc.orig}); it was left untouched") from exc
            raise LearningError(f"learning store {self.describe()}: {exc.orig}") from exc

    def _reading(self):
        """A connection for reads only (a deferred transaction on SQLite)."""
        conn = self.engine.connect()
        return conn.execution_options(kubik_read_only=True)

    def describe(self) -> str:
        """Where the store is, without any password in the URL."""
        if self.path is not None:
            return str(self.path)
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    # ------------------------------------------------------------------ writing
    def record_generation(self, record: GenerationRecord) -> str:
        """Store one generation and its LoRAs; returns the new generation id."""
        if not isinstance(record.prompt, str):
            raise LearningError("prompt must be text")
        gen_id = uuid.uuid4().hex
        edited = int(bool(record.params.get("overrides"))) if isinstance(record.params, dict) else 0
        with self.engine.begin() as conn:
            conn.execute(self.generations.insert().values(
                id=gen_id, created_at=time.time(), prompt=record.prompt, negative=record.negative,
                family=record.family, style=record.style, content_type=record.content_type,
                model=record.model, seed=None if record.seed is None else str(int(record.seed)),
                preset=record.preset,
                image_path=record.image_path, analysis=_dumps(record.analysis),
                params=_dumps(record.params), edited=edited))
            rows = [_lora_row(gen_id, lora) for lora in record.loras]
            if rows:
                conn.execute(self.generation_loras.insert(), rows)
        return gen_id

    def record_feedback(self, generation_id: str, rating: int, quality: int | None = None,
                        accuracy: int | None = None, aesthetic: int | None = None,
                        tags: Iterable[str] = (), comment: str = "", saved: bool = False,
                        shared: bool = False, regenerated: bool = False) -> int:
        """Store a rating of a recorded generation; returns the feedback row id."""
        rating = _check_rating("rating", rating, required=True)
        subs = {name: _check_rating(name, value) for name, value in
                (("quality", quality), ("accuracy", accuracy), ("aesthetic", aesthetic))}
        from sqlalchemy import select

        with self.engine.begin() as conn:
            known = conn.execute(select(self.generations.c.id).where(
                self.generations.c.id == generation_id)).first()
            if known is None:
                raise UnknownGenerationError(
                    f"generation {generation_id!r} is not in the learning store {self.describe()}: "
                    "rate an image saved by Kubik Save Image (its generation_id output)")
            result = conn.execute(self.feedback.insert().values(
                generation_id=generation_id, created_at=time.time(), rating=rating,
                tags=_dumps([str(t).strip() for t in tags if str(t).strip()]),
                comment=str(comment or ""), saved=bool(saved), shared=bool(shared),
                regenerated=bool(regenerated), **subs))
            return int(result.inserted_primary_key[0])

    def record_edits(self, family: str, style: str, suggested: Mapping[str, Any],
                     final: Mapping[str, Any], generation_id: str | None = None) -> int:
        """Store every field where ``final`` differs from ``suggested``; returns how many."""
        rows = []
        now = time.time()
        for name, value in final.items():
            if name in suggested and suggested[name] != value and value is not None:
                rows.append(dict(generation_id=generation_id, created_at=now, family=family,
                                 style=style or "", field=name, suggested=_dumps(suggested[name]),
                                 final=_dumps(value)))
        if rows:
            with self.engine.begin() as conn:
                conn.execute(self.edits.insert(), rows)
        return len(rows)

    # ------------------------------------------------------------------ reading
    def count(self, table: str) -> int:
        from sqlalchemy import func, select

        tables = {"generations": self.generations, "feedback": self.feedback, "edits": self.edits,
                  "generation_loras": self.generation_loras}
        with self._reading() as conn:
            return int(conn.execute(select(func.count()).select_from(tables[table])).scalar())

    def lora_ratings(self) -> dict[str, tuple[int, float, int]]:
        """Per LoRA name: (ratings, sum of ratings on [0, 1], good ratings (>= 4))."""
        from sqlalchemy import case, func, select

        from .scores import GOOD_RATING

        gl, fb = self.generation_loras, self.feedback
        query = (select(gl.c.lora, func.count(fb.c.id), func.sum((fb.c.rating - 1) / 4.0),
                        func.sum(case((fb.c.rating >= GOOD_RATING, 1), else_=0)))
                 .join(fb, fb.c.generation_id == gl.c.generation_id)
                 .group_by(gl.c.lora))
        with self._reading() as conn:
            return {row[0]: (int(row[1]), float(row[2] or 0.0), int(row[3] or 0))
                    for row in conn.execute(query)}

    def preset_outcomes(self, family: str, style: str = "") -> dict[str, tuple[int, int]]:
        """Per preset used for (family, style): (good ratings, bad ratings)."""
        from sqlalchemy import case, func, select

        from .scores import BAD_RATING, GOOD_RATING

        g, fb = self.generations, self.feedback
        query = (select(g.c.preset, func.sum(case((fb.c.rating >= GOOD_RATING, 1), else_=0)),
                        func.sum(case((fb.c.rating <= BAD_RATING, 1), else_=0)))
                 .join(fb, fb.c.generation_id == g.c.id)
                 .where(g.c.family == family, g.c.preset != "")
                 .group_by(g.c.preset))
        if style:
            query = query.where(g.c.style == style)
        with self._reading() as conn:
            return {row[0]: (int(row[1] or 0), int(row[2] or 0)) for row in conn.execute(query)}

    def recent_edits(self, family: str, style: str = "", limit: int = 50) -> list[dict[str, Any]]:
        """The latest edits for ``family`` (and ``style`` if given), newest first."""
        from sqlalchemy import select

        e = self.edits
        query = select(e.c.field, e.c.suggested, e.c.final, e.c.style).where(e.c.family == family)
        if style:
            query = query.where(e.c.style == style)
        query = query.order_by(e.c.created_at.desc(), e.c.id.desc()).limit(limit)
        with self._reading() as conn:
            return [{"field": r[0], "suggested": json.loads(r[1]), "final": json.loads(r[2]),
                     "style": r[3]} for r in conn.execute(query)]

    def rows(self, sql_table: str, limit: int = 100_000) -> list[dict[str, Any]]:
        """Plain rows of one table (for insights and tests)."""
        from sqlalchemy import select

        table = {"generations": self.generations, "feedback": self.feedback, "edits": self.edits,
                 "generation_loras": self.generation_loras}[sql_table]
        with self._reading() as conn:
            return [dict(r._mapping) for r in conn.execute(select(table).limit(limit))]


def _lora_row(gen_id: str, lora: Mapping[str, Any]) -> dict[str, Any]:
    name = str(lora.get("name", "")).strip()
    if not name:
        raise LearningError("every LoRA of a generation needs a name")
    return dict(generation_id=gen_id, lora=name, sha256=str(lora.get("sha256", "") or ""),
                strength_model=float(lora.get("strength_model", 1.0)),
                strength_clip=float(lora.get("strength_clip", lora.get("strength_model", 1.0))),
                suggested=bool(lora.get("suggested", False)))


def _check_rating(name: str, value: Any, required: bool = False) -> int | None:
    if value is None or (not required and value == 0):
        if required:
            raise LearningError(f"{name} is required (1 to 5)")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or int(value) != value or not 1 <= value <= 5:
        raise LearningError(f"{name} must be a whole number from 1 to 5, got {value!r}")
    return int(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def open_store(location: str | os.PathLike | None = None) -> LearningStore:
    return LearningStore(location)


