"""The library a server keeps between runs (kubik_core.loras.service), on real LoRA files."""
from __future__ import annotations

import hashlib
import time

import pytest

from kubik_core.loras.service import EmbeddingCache, LibraryService
from kubik_core.loras.synthetic import write_lora


@pytest.mark.timeout(60)
def test_an_unchanged_library_keeps_its_index_and_hashes_arrive_in_the_background(tmp_path):
    folder = tmp_path / "loras"
    first = write_lora(folder / "one.safetensors", "kohya", "sdxl", seed=1)
    service = LibraryService()
    library, index = service.library([str(folder)], tmp_path / "index.json")
    assert [e.name for e in library.entries.values()] == ["one.safetensors"]
    assert service.library([str(folder)], tmp_path / "index.json") == (library, index)

    entry = library.by_name("one.safetensors")
    while not entry.sha256:       # the background thread hashes it (the timeout guards a hang)
        time.sleep(0.05)
    assert entry.sha256 == hashlib.sha256(first.read_bytes()).hexdigest()

    write_lora(folder / "two.safetensors", "kohya", "sdxl", seed=2)
    changed, new_index = service.library([str(folder)], tmp_path / "index.json")
    assert new_index is not index
    assert sorted(e.name for e in changed.entries.values()) == ["one.safetensors", "two.safetensors"]


def test_embeddings_are_asked_for_once_per_encoder_and_text():
    calls = []

    def encoder(texts):
        calls.append(list(texts))
        return [[float(len(t))] for t in texts]

    cache = EmbeddingCache(max_items=3)
    embed = cache.wrap("clip-a", encoder)
    assert embed(["ab", "abc", "ab"]) == [[2.0], [3.0], [2.0]]
    assert embed(["abc", "a"]) == [[3.0], [1.0]]
    assert calls == [["ab", "abc"], ["a"]]                      # each new text once
    assert cache.wrap("clip-b", encoder)(["ab"]) == [[2.0]]     # another encoder asks again
    assert calls[-1] == ["ab"] and len(cache) == 1              # full: cleared, then the new one
