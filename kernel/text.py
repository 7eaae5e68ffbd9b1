"""The one tokenizer, and the token similarities built on it: cheap, deterministic,
dependency-free. The judge rules, the simulated agents and the trainers' reference
scorer all use these, so they agree on what a word is."""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"[a-z0-9]+")
_STOP = (
    "a an the and or but if of to in on at for with from by as is are was were be been it its "
    "this that these those you your we our i me my he she they them their his her not no do "
    "does did can could will would should may might have has had so than then there here "
    "what which who whom how why when where please thanks thank hi hello dear"
)
STOPWORDS = frozenset(_STOP.split())


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def content_tokens(text: str) -> list[str]:
    return [t for t in tokens(text) if t not in STOPWORDS]


def cosine(a: str, b: str) -> float:
    """Cosine similarity of content-token count vectors, 0..1."""
    ca, cb = Counter(content_tokens(a)), Counter(content_tokens(b))
    if not ca or not cb:
        return 0.0
    dot = sum(n * cb[t] for t, n in ca.items() if t in cb)
    na = sum(n * n for n in ca.values()) ** 0.5
    nb = sum(n * n for n in cb.values()) ** 0.5
    return float(dot / (na * nb))


def containment(part: str, whole: str) -> tuple[float, int]:
    """Share of ``part``'s distinct content tokens found in ``whole``, and how many."""
    sp, sw = set(content_tokens(part)), set(content_tokens(whole))
    if not sp:
        return 0.0, 0
    hit = len(sp & sw)
    return hit / len(sp), hit


_STOCK = "ok okay k fine good great nice cool yes no none nothing n/a na - . ... x xx test asdf"
BOILERPLATE = frozenset(
    [*_STOCK.split(), "lgtm", "idk", "same", "default", "done", "no comment", "see above"]
    + ["as above", "looks good", "all good"]
)


def is_boilerplate(text: str, min_tokens: int = 2) -> bool:
    """Empty, a stock phrase, one repeated word, or fewer than ``min_tokens`` words."""
    norm = re.sub(r"\s+", " ", text.strip().lower()).strip(" .!")
    if not norm or norm in BOILERPLATE:
        return True
    words = tokens(norm)
    if not words or not any(len(w) >= 3 and w.isalpha() for w in words):
        return True
    if len(set(words)) == 1 and len(words) > 1:
        return True
    return len(words) < min_tokens and not content_tokens(norm)
