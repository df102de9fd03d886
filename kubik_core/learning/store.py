"""The learning store: generations, feedback and the user's edits of suggested values.

SQLite in WAL mode by default (one file, many readers alongside one writer), or any SQLAlchemy
URL - PostgreSQL where several ComfyUI servers share one store. database.py holds the
connections and keeps the promises: nothing already saved is lost, a damaged file is left
untouched, a read-only store can still be read, and every database problem is a LearningError
naming the store and the fix. Every value is bounded before anything is written (validate.py),
and each write is one transaction: all of it is recorded or none.

Default location: inside ComfyUI the nodes pass ``<ComfyUI user directory>/kubik/learning.sqlite3``
(location.py);
elsewhere ``$KUBIK_LEARNING_URL`` (a SQLAlchemy URL or a file path), else
``$XDG_DATA_HOME/kubik/learning.sqlite3`` (``~/.local/share/kubik/learning.sqlite3``).

Tables:
  generations      one row per image: prompt, analysis, parameters, LoRAs, seed, model, preset
  generation_loras the LoRAs of each generation (name, hash, strengths), for per-LoRA scores
  feedback         rating 1-5, quality/accuracy/aesthetic 1-5 (optional), tags, comment,
                   saved/shared/regenerated flags; one row per rated generation (rating an
                   image again replaces its rating)
  edits            a suggested value the user changed: family, style, field, suggested, final
"""
from __future__ import annotations

import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from . import validate
from .database import STORE_FILE_NAME, database, to_url
from .errors import LearningError, UnknownGenerationError

SUB_RATINGS = ("quality", "accuracy", "aesthetic")


def default_store_location() -> str:
    """The store outside ComfyUI (see the module docstring)."""
    url = os.environ.get("KUBIK_LEARNING_URL")
    if url:
        return url
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(xdg, "kubik", STORE_FILE_NAME)


@dataclass
class GenerationRecord:
    """What was generated; every field but ``prompt`` is optional (bounds: validate.py)."""

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


@dataclass
class ParameterEdits:
    """The sampling values the user changed from the optimizer's suggestion, for one generation."""

    family: str
    style: str
    suggested: Mapping[str, Any]
    final: Mapping[str, Any]


class LearningStore:
    """Read and write the learning store. Cheap to construct: connections are shared per URL.

    Opening checks the store (and creates its tables if it is new), so a store that cannot be
    used is reported at once, as a LearningError naming it and the fix.
    """

    def __init__(self, location: str | os.PathLike | None = None):
        location = location or default_store_location()
        self.url, self.path = to_url(location)
        self._db = database(self.url, self.path)
        self.generations = self._db.tables["generations"]
        self.generation_loras = self._db.tables["generation_loras"]
        self.feedback = self._db.tables["feedback"]
        self.edits = self._db.tables["edits"]
        self._db.open()

    @property
    def engine(self):
        """The SQLAlchemy engine (shared by the stores of this URL in this process)."""
        return self._db.engine

    def describe(self) -> str:
        """Where the store is, without any password in the URL."""
        return self._db.label

    # ------------------------------------------------------------------ writing
    def record_generation(self, record: GenerationRecord) -> str:
        """Store one generation and its LoRAs; returns the new generation id."""
        return self.record_generations([record])[0]

    def record_generations(self, records: Sequence[GenerationRecord],
                           edits: ParameterEdits | None = None) -> list[str]:
        """Store generations (one per image of a batch) and the user's edits of the suggested
        values, in one transaction: all are recorded or none. Returns the generation ids."""
        now = time.time()
        generation_rows, lora_rows = [], []
        for record in records:
            row, loras = _generation_rows(record, now)
            generation_rows.append(row)
            lora_rows += loras
        edit_rows = _edit_rows(edits.family, edits.style, edits.suggested, edits.final,
                               generation_rows[0]["id"] if generation_rows else None, now) \
            if edits is not None else []

        def work(conn):
            if generation_rows:
                conn.execute(self.generations.insert(), generation_rows)
            if lora_rows:
                conn.execute(self.generation_loras.insert(), lora_rows)
            if edit_rows:
                conn.execute(self.edits.insert(), edit_rows)

        self._db.run(work, write=True)
        return [row["id"] for row in generation_rows]

    def record_feedback(self, generation_id: str, rating: int, quality: int | None = None,
                        accuracy: int | None = None, aesthetic: int | None = None,
                        tags: Sequence[str] | str = (), comment: str = "", saved: bool = False,
                        shared: bool = False, regenerated: bool = False) -> int:
        """Store the rating of a recorded generation; returns its feedback row id.

        An image has one rating: rating it again replaces the whole rating (all fields) in the
        same row, so a re-rating never counts twice. Two raters of one image at once are
        serialized (SQLite's write lock; PostgreSQL locks the generation's row).
        """
        from sqlalchemy import select

        generation_id = validate.generation_id(generation_id)
        values = dict(
            generation_id=generation_id, rating=validate.rating("rating", rating, required=True),
            quality=validate.rating("quality", quality), accuracy=validate.rating("accuracy", accuracy),
            aesthetic=validate.rating("aesthetic", aesthetic),
            tags=_dumps(validate.tags(tags)),
            comment=validate.text("comment", comment, validate.MAX_COMMENT_CHARS),
            saved=bool(saved), shared=bool(shared), regenerated=bool(regenerated))
        unknown = self._unknown(generation_id)
        if len(generation_id) > validate.GENERATION_ID_CHARS:
            raise unknown
        fb = self.feedback

        def work(conn):
            known = conn.execute(select(self.generations.c.id).where(
                self.generations.c.id == generation_id).with_for_update()).first()
            if known is None:
                raise unknown
            current = conn.execute(select(fb.c.id).where(fb.c.generation_id == generation_id)
                                   .order_by(fb.c.id.desc()).limit(1)).scalar()
            if current is None:
                result = conn.execute(fb.insert().values(created_at=time.time(), **values))
                return int(result.inserted_primary_key[0])
            conn.execute(fb.update().where(fb.c.id == current).values(created_at=time.time(), **values))
            return int(current)

        return self._db.run(work, write=True)

    def _unknown(self, generation_id: str) -> UnknownGenerationError:
        return UnknownGenerationError(
            f"generation {validate.describe(generation_id)} is not in the learning store "
            f"{self.describe()}: rate an image saved by Kubik Save Image (its generation_id output)")

    def record_edits(self, family: str, style: str, suggested: Mapping[str, Any],
                     final: Mapping[str, Any], generation_id: str | None = None) -> int:
        """Store every field where ``final`` differs from ``suggested``; returns how many."""
        rows = _edit_rows(family, style, suggested, final, generation_id, time.time())
        if rows:
            self._db.run(lambda conn: conn.execute(self.edits.insert(), rows), write=True)
        return len(rows)

    # ------------------------------------------------------------------ reading
    def _read(self, query) -> list:
        return self._db.run(lambda conn: conn.execute(query).all(), write=False)

    def count(self, table: str) -> int:
        from sqlalchemy import func, select

        return int(self._read(select(func.count()).select_from(self._db.tables[table]))[0][0])

    def _current_feedback_ids(self):
        """The feedback row that holds each generation's rating (the newest one: stores written
        before re-rating replaced a rating may hold older rows of a generation, which no longer
        count)."""
        from sqlalchemy import func, select

        fb = self.feedback
        return select(func.max(fb.c.id)).group_by(fb.c.generation_id)

    def rating_of(self, generation_id: str) -> dict[str, Any] | None:
        """The current rating of a recorded generation, or None if it is not rated yet.

        Raises UnknownGenerationError for a generation the store has never recorded.
        """
        from sqlalchemy import select

        from ..common.bounded_json import BoundedJSONError, loads

        generation_id = validate.generation_id(generation_id)
        if len(generation_id) > validate.GENERATION_ID_CHARS:
            raise self._unknown(generation_id)
        fb = self.feedback

        def work(conn):
            known = conn.execute(select(self.generations.c.id).where(
                self.generations.c.id == generation_id)).first()
            if known is None:
                raise self._unknown(generation_id)
            return conn.execute(select(fb).where(fb.c.generation_id == generation_id)
                                .order_by(fb.c.id.desc()).limit(1)).first()

        row = self._db.run(work, write=False)
        if row is None:
            return None
        row = row._mapping
        try:   # a row written by another program may hold anything
            tags = loads(row["tags"], max_depth=2, max_bytes=validate.MAX_TAGS * validate.MAX_TAG_CHARS * 8)
            tags = validate.tags(tags)
        except (BoundedJSONError, LearningError, TypeError):
            tags = []
        return {"rating": row["rating"], "quality": row["quality"], "accuracy": row["accuracy"],
                "aesthetic": row["aesthetic"], "tags": tags, "comment": row["comment"] or "",
                "saved": bool(row["saved"]), "shared": bool(row["shared"]),
                "regenerated": bool(row["regenerated"]), "rated_at": row["created_at"]}

    def lora_ratings(self) -> dict[str, tuple[int, float, int]]:
        """Per LoRA name: (ratings, sum of ratings on [0, 1], good ratings (>= 4))."""
        from sqlalchemy import case, func, select

        from .scores import GOOD_RATING

        gl, fb = self.generation_loras, self.feedback
        query = (select(gl.c.lora, func.count(fb.c.id), func.sum((fb.c.rating - 1) / 4.0),
                        func.sum(case((fb.c.rating >= GOOD_RATING, 1), else_=0)))
                 .join(fb, fb.c.generation_id == gl.c.generation_id)
                 .where(fb.c.id.in_(self._current_feedback_ids()))
                 .group_by(gl.c.lora))
        return {row[0]: (int(row[1]), float(row[2] or 0.0), int(row[3] or 0)) for row in self._read(query)}

    def preset_outcomes(self, family: str, style: str = "") -> dict[str, tuple[int, int]]:
        """Per preset used for (family, style): (good ratings, bad ratings)."""
        from sqlalchemy import case, func, select

        from .scores import BAD_RATING, GOOD_RATING

        g, fb = self.generations, self.feedback
        query = (select(g.c.preset, func.sum(case((fb.c.rating >= GOOD_RATING, 1), else_=0)),
                        func.sum(case((fb.c.rating <= BAD_RATING, 1), else_=0)))
                 .join(fb, fb.c.generation_id == g.c.id)
                 .where(g.c.family == family, g.c.preset != "",
                        fb.c.id.in_(self._current_feedback_ids()))
                 .group_by(g.c.preset))
        if style:
            query = query.where(g.c.style == style)
        return {row[0]: (int(row[1] or 0), int(row[2] or 0)) for row in self._read(query)}

    def recent_edits(self, family: str, style: str = "", limit: int = 50) -> list[dict[str, Any]]:
        """The latest edits for ``family`` (and ``style`` if given), newest first. A row whose
        values are not bounded JSON (written by another program) is skipped."""
        from sqlalchemy import select

        from ..common.bounded_json import BoundedJSONError, loads

        e = self.edits
        query = select(e.c.field, e.c.suggested, e.c.final, e.c.style,
                       e.c.created_at).where(e.c.family == family)
        if style:
            query = query.where(e.c.style == style)
        query = query.order_by(e.c.created_at.desc(), e.c.id.desc()).limit(limit)
        edits = []
        for row in self._read(query):
            try:
                suggested, final = (loads(text, max_depth=validate.MAX_JSON_DEPTH,
                                          max_bytes=validate.MAX_EDIT_VALUE_CHARS * 4)
                                    for text in (row[1], row[2]))
            except (BoundedJSONError, TypeError):
                continue
            edits.append({"field": row[0], "suggested": suggested, "final": final, "style": row[3],
                          "created_at": row[4]})
        return edits

    def forget_edits(self, family: str) -> int:
        """Delete every edit of ``family`` (what its learned values come from), in one
        transaction; returns how many. Generations, ratings and other families' edits stay."""
        family = validate.text("family", family, validate.MAX_KEY_CHARS, required=True)
        statement = self.edits.delete().where(self.edits.c.family == family)
        return int(self._db.run(lambda conn: conn.execute(statement).rowcount, write=True))

    def rows(self, sql_table: str, limit: int = 100_000) -> list[dict[str, Any]]:
        """Plain rows of one table (for insights and tests)."""
        from sqlalchemy import select

        return [dict(r._mapping) for r in self._read(select(self._db.tables[sql_table]).limit(limit))]


def _generation_rows(record: GenerationRecord, now: float) -> tuple[dict, list[dict]]:
    """The checked generations row and generation_loras rows of one record."""
    key = lambda name: validate.text(name, getattr(record, name), validate.MAX_KEY_CHARS)
    params = record.params if isinstance(record.params, Mapping) else {}
    gen_id = uuid.uuid4().hex
    loras = record.loras or []
    if not isinstance(loras, (list, tuple)) or len(loras) > validate.MAX_LORAS:
        raise LearningError(f"the LoRAs of a generation must be a list of at most {validate.MAX_LORAS}, "
                            f"got {validate.describe(loras)}")
    row = dict(
        id=gen_id, created_at=now,
        prompt=validate.text("prompt", record.prompt, validate.MAX_PROMPT_CHARS),
        negative=validate.text("negative", record.negative, validate.MAX_PROMPT_CHARS),
        family=key("family"), style=key("style"), content_type=key("content_type"), preset=key("preset"),
        model=validate.text("model", record.model, validate.MAX_PATH_CHARS),
        seed=validate.seed(record.seed),
        image_path=validate.text("image_path", record.image_path, validate.MAX_PATH_CHARS),
        analysis=_json_column("analysis", record.analysis if record.analysis is not None else {}),
        params=_json_column("params", record.params if record.params is not None else {}),
        edited=int(bool(params.get("overrides"))))
    lora_rows = [dict(validate.lora_row(i, lora), generation_id=gen_id) for i, lora in enumerate(loras)]
    return row, lora_rows


def _edit_rows(family: Any, style: Any, suggested: Any, final: Any, generation_id: str | None,
               now: float) -> list[dict[str, Any]]:
    """An edits row for each field where ``final`` differs from ``suggested`` (and is set)."""
    family = validate.text("family", family, validate.MAX_KEY_CHARS, required=True)
    style = validate.text("style", style, validate.MAX_KEY_CHARS)
    if not isinstance(suggested, Mapping) or not isinstance(final, Mapping):
        raise LearningError("the suggested and final values of an edit must be mappings of field to value")
    rows = []
    for name, value in final.items():
        if name not in suggested or value is None or suggested[name] == value:
            continue
        name = validate.text("edited field name", name, validate.MAX_KEY_CHARS, required=True)
        for what, item in (("suggested", suggested[name]), ("final", value)):
            if isinstance(item, float) and not math.isfinite(item):
                raise LearningError(f"the {what} value of {name} is {item!r}, not a finite number")
        rows.append(dict(generation_id=generation_id, created_at=now, family=family, style=style,
                         field=name,
                         suggested=_json_column(f"suggested {name}", suggested[name], validate.MAX_EDIT_VALUE_CHARS),
                         final=_json_column(f"final {name}", value, validate.MAX_EDIT_VALUE_CHARS)))
    return rows


def _json_column(name: str, value: Any, limit: int = validate.MAX_JSON_CHARS) -> str:
    text = _dumps(validate.plain_data(name, value))
    if len(text) > limit:
        raise LearningError(f"{name} takes {len(text):,} characters as JSON; the learning store keeps "
                            f"at most {limit:,}")
    return text


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False)
