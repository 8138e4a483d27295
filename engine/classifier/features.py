"""What the classifier reads in a report: character n-grams of a normalised text.

Chinese has no spaces and residents misspell freely (泄露 for 泄漏, 电驴 for 电瓶车), so
words from a segmenter are less robust than overlapping character 1- to 3-grams, which
also need no dictionary. Normalising first makes full-width and half-width forms, letter
case and particular numbers (3号楼, 12345) the same feature.

Training (scikit-learn) reads n-grams as strings (``ngrams``); scoring a report reads the
same n-grams as 63-bit integer keys computed with numpy (``batch_keys``), because slicing
a few hundred Python strings per report cost more than the whole linear model. A key
packs the code points of an n-gram, 21 bits each: 1-grams are below 2**21, 2-grams below
2**42, 3-grams above, so the three kinds never collide.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import numpy.typing as npt

MAX_CHARS = 1200  # a long letter's request is in its first and last parts; cap the cost
NGRAM_RANGE = (1, 3)
_DIGITS = re.compile(r"[0-9]+")
_BITS = np.uint64(21)
_TWICE = np.uint64(42)
Keys = npt.NDArray[np.uint64]


def normalise(text: str) -> str:
    """NFKC, lower case, every number as 0, no white space or NUL; a long text keeps its
    head and tail."""
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    text = "".join(_DIGITS.sub("0", text.lower()).split()).replace("\0", "")
    if len(text) > MAX_CHARS:
        half = MAX_CHARS // 2
        text = text[:half] + text[-half:]
    return text


def ngrams(normalised: str) -> list[str]:
    """Every character n-gram of the normalised text, repeats included."""
    low, high = NGRAM_RANGE
    size = len(normalised)
    return [normalised[i:i + n] for n in range(low, high + 1) for i in range(size - n + 1)]


def gram_key(gram: str) -> int:
    """The integer key of one n-gram (what ``batch_keys`` computes for every n-gram)."""
    key = 0
    for char in gram:
        key = (key << 21) | ord(char)
    return key


def batch_keys(normalised: list[str]) -> tuple[Keys, npt.NDArray[np.int64]]:
    """The keys of every text's n-grams and, for each, the index of its text: one pass over
    the texts joined by NUL (which ``normalise`` removes), dropping n-grams across a join."""
    points = np.frombuffer("\0".join(normalised).encode("utf-32-le"),
                           dtype=np.uint32).astype(np.uint64)
    if not len(points):
        return points, np.empty(0, dtype=np.int64)
    text_of = np.cumsum(points == 0)
    inside = points != 0
    pairs = (points[:-1] << _BITS) | points[1:]
    triples = (pairs[:-1] << _BITS) | points[2:]
    keep1 = inside
    keep2 = inside[:-1] & inside[1:]
    keep3 = keep2[:-1] & inside[2:]
    keys = np.concatenate((points[keep1], pairs[keep2], triples[keep3]))
    texts = np.concatenate((text_of[keep1], text_of[:-1][keep2], text_of[:-2][keep3]))
    return keys, texts.astype(np.int64)
