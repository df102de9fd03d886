"""Offline text relevance: a BM25 index over each LoRA's name, title, trigger words and tags.

Used when no CLIP is connected (the graph's CLIP gives embeddings otherwise, recommend.py).
BM25 (Robertson & Zaragoza, k1 = 1.2, b = 0.75) over word tokens. A document's term frequency
and length never change after indexing, so each posting stores its finished BM25 contribution;
a query adds the postings of its words into one numpy vector, so it costs a few vector
additions whatever the library's size.
"""
from __future__ import annotations

import math
import re
from typing import Iterable

import numpy as np

WORD = re.compile(r"[a-z0-9]+")
# Words that say nothing about what a LoRA does (file-name noise, prompt glue).
STOPWORDS = frozenset("""
a an the of and or with in on at by for to from into over under is are be this that it its as
lora loras locon lycoris loha lokr model v1 v2 v3 v4 v5 xl sdxl sd sd15 sd1 sd2 sd3 flux pony
safetensors final epoch step steps dim alpha version
""".split())
K1, B = 1.2, 0.75


# Single letters that are only the rest of a possessive or a contraction ("child's", "don't").
_CLITICS = frozenset("stdm")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens without stop words; a trailing plural 's' is dropped. Single
    letters stay ("double v", "o-yoroi", "ukiyo-e"), except those of "'s" and "n't"."""
    out = []
    for word in WORD.findall(text.lower().replace("_", " ")):
        if word in STOPWORDS or word in _CLITICS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


class BM25Index:
    """``postings[word] = (document ids, BM25 contributions)`` as numpy arrays."""

    def __init__(self, documents: Iterable[list[str]]):
        raw: dict[str, list[tuple[int, int]]] = {}
        lengths: list[int] = []
        for doc_id, words in enumerate(documents):
            lengths.append(len(words))
            counts: dict[str, int] = {}
            for word in words:
                counts[word] = counts.get(word, 0) + 1
            for word, count in counts.items():
                raw.setdefault(word, []).append((doc_id, count))
        self.size = len(lengths)
        average = (sum(lengths) / self.size) if self.size else 1.0
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for word, plist in raw.items():
            idf = math.log(1 + (self.size - len(plist) + 0.5) / (len(plist) + 0.5))
            docs = np.fromiter((d for d, _ in plist), dtype=np.int64, count=len(plist))
            weights = np.fromiter(
                (idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths[d] / (average or 1.0)))
                 for d, tf in plist), dtype=np.float64, count=len(plist))
            self.postings[word] = (docs, weights)

    def scores(self, query: Iterable[str]) -> np.ndarray:
        """BM25 score of every document (0 where no query word occurs)."""
        result = np.zeros(self.size)
        for word in set(query):
            hit = self.postings.get(word)
            if hit is not None:
                result[hit[0]] += hit[1]
        return result

    def containing(self, words: list[str]) -> np.ndarray:
        """Boolean mask of the documents that contain every word of ``words``."""
        mask = np.ones(self.size, dtype=bool)
        for word in words:
            hit = self.postings.get(word)
            if hit is None:
                return np.zeros(self.size, dtype=bool)
            present = np.zeros(self.size, dtype=bool)
            present[hit[0]] = True
            mask &= present
        return mask
