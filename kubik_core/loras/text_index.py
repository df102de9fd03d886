"""Offline text relevance: a BM25 index over each LoRA's name, title, trigger words and tags.

Used when no CLIP is connected (the graph's CLIP gives embeddings otherwise, recommend.py).
BM25 (Robertson & Zaragoza, k1 = 1.2, b = 0.75) over word tokens; the index is built once per
scanned library and answers a query by walking the postings of the query's words only, so its
cost grows with how many LoRAs share the prompt's words, not with the library's size.
"""
from __future__ import annotations

import math
import re
from typing import Iterable

WORD = re.compile(r"[a-z0-9]+")
# Words that say nothing about what a LoRA does (file-name noise, prompt glue).
STOPWORDS = frozenset("""
a an the of and or with in on at by for to from into over under is are be this that it its as
lora loras locon lycoris loha lokr model v1 v2 v3 v4 v5 xl sdxl sd sd15 sd1 sd2 sd3 flux pony
safetensors final epoch step steps dim alpha version
""".split())
K1, B = 1.2, 0.75


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens without stop words; a trailing plural 's' is dropped."""
    out = []
    for word in WORD.findall(text.lower().replace("_", " ")):
        if word in STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


class BM25Index:
    """Inverted index: ``postings[word] = [(doc, term frequency), ...]``."""

    def __init__(self, documents: Iterable[list[str]]):
        self.postings: dict[str, list[tuple[int, int]]] = {}
        self.lengths: list[int] = []
        for doc_id, words in enumerate(documents):
            self.lengths.append(len(words))
            counts: dict[str, int] = {}
            for word in words:
                counts[word] = counts.get(word, 0) + 1
            for word, count in counts.items():
                self.postings.setdefault(word, []).append((doc_id, count))
        n = len(self.lengths)
        self.average_length = (sum(self.lengths) / n) if n else 0.0
        self.idf = {word: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5))
                    for word, p in self.postings.items()}

    def scores(self, query: Iterable[str]) -> dict[int, float]:
        """BM25 score of every document sharing at least one word with ``query``."""
        result: dict[int, float] = {}
        avg = self.average_length or 1.0
        lengths = self.lengths
        for word in set(query):
            postings = self.postings.get(word)
            if not postings:
                continue
            idf = self.idf[word]
            for doc, tf in postings:
                norm = tf + K1 * (1 - B + B * lengths[doc] / avg)
                result[doc] = result.get(doc, 0.0) + idf * tf * (K1 + 1) / norm
        return result
