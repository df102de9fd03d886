"""The LoRA library a long-running server keeps: one scan per change, hashes in the background,
and CLIP embeddings of LoRA texts remembered across runs.

The nodes ask for the library on every run; ``LibraryService.library`` rescans through the
cached index (an unchanged library is not read again), builds a new ``LoraIndex`` only when a
file changed, and keeps one background thread computing the hashes still missing.
``EmbeddingCache`` keeps what a text encoder said about each LoRA text, so a second run embeds
only the prompt's new texts.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Hashable, Sequence

from .library import LoraLibrary, scan_library
from .recommend import LoraIndex

Embed = Callable[[list[str]], list[list[float]]]


class LibraryService:
    """The scanned library and its index, shared by every node run of one server (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._key = None
        self._library: LoraLibrary | None = None
        self._index: LoraIndex | None = None
        self._hashing: threading.Thread | None = None

    def library(self, folders: Sequence[str], cache_path: Path | None) -> tuple[LoraLibrary, LoraIndex]:
        """(library, index) of ``folders``, rescanned through the index cached at ``cache_path``;
        starts background hashing when some files have no hash yet and none is running."""
        with self._lock:
            library = scan_library(folders, cache_path=cache_path)
            key = (tuple(folders),
                   tuple(sorted((path, tuple(map(str, signature)))
                                for path, signature in library.signatures.items())))
            if self._key != key:
                self._key, self._library, self._index = key, library, LoraIndex(library)
            if library.missing_hashes() and (self._hashing is None or not self._hashing.is_alive()):
                self._hashing = library.start_background_hashing()
            return self._library, self._index


class EmbeddingCache:
    """Text embeddings by (encoder key, text), at most ``max_items`` (cleared when full)."""

    def __init__(self, max_items: int = 20_000):
        self.max_items = max_items
        self._vectors: dict[tuple[Hashable, str], list[float]] = {}

    def __len__(self) -> int:
        return len(self._vectors)

    def wrap(self, encoder_key: Hashable, embed: Embed) -> Embed:
        """``embed`` that asks the encoder only for texts it has not embedded before."""
        def cached(texts: list[str]) -> list[list[float]]:
            missing = [t for t in dict.fromkeys(texts) if (encoder_key, t) not in self._vectors]
            if missing:
                if len(self._vectors) + len(missing) > self.max_items:
                    self._vectors.clear()
                self._vectors.update({(encoder_key, t): v for t, v in zip(missing, embed(missing))})
            return [self._vectors[(encoder_key, t)] for t in texts]

        return cached
