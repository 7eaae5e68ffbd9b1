"""Reply-quality metrics of the benchmark: helpfulness and simulated adoption.

* **helpfulness** (reference-based, used when no LLM judge endpoint is configured):
  ``0.8 * cos(chosen, reference) + 0.2 * citation precision``, where *chosen* is the
  candidate a careful agent would prefer (the one closer to the human reference), cos is
  the cosine of sentence embeddings (the stock embedder, fixed across before/after so the
  yardstick never moves), and citation precision is the share of the chosen reply's cited
  knowledge ids that are gold (0 when it cites nothing).
* **adoption**: share of cases where the agent would send a candidate as-is or lightly
  edited: the chosen candidate's token F1 against the reference is at least
  ``ADOPT_THRESHOLD`` (0.40; the simulated agents send as-is at 0.55 and edit from 0.25).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from aitl.flywheel.agents import token_f1

ADOPT_THRESHOLD = 0.40
HELPFULNESS_WEIGHTS = (0.8, 0.2)

Embed = Callable[[list[str]], np.ndarray]  # texts -> L2-normalised rows


@dataclass(frozen=True)
class Reply:
    text: str
    cited_ids: tuple[str, ...]


def citation_precision(cited: Sequence[str], gold: Sequence[str]) -> float:
    if not cited:
        return 0.0
    return len(set(cited) & set(gold)) / len(set(cited))


def reply_scores(
    candidates: Sequence[Sequence[Reply]],
    references: Sequence[str],
    golds: Sequence[Sequence[str]],
    embed: Embed,
) -> list[dict[str, float]]:
    """Per case: helpfulness, adoption (0 or 1), reference similarity and citation
    precision of the candidate a careful agent would pick (best token F1 to the reference).

    Per-case values are what paired comparisons (win rates, bootstrap intervals) need;
    :func:`reply_quality` is their mean.
    """
    if not (len(candidates) == len(references) == len(golds)) or not candidates:
        raise ValueError("need one candidate list, reference and gold list per case")
    flat = [r.text for cands in candidates for r in cands]
    cand_vecs = embed(flat)
    ref_vecs = embed(list(references))
    w_sim, w_cite = HELPFULNESS_WEIGHTS
    out, row = [], 0
    for i, cands in enumerate(candidates):
        f1s = [token_f1(r.text, references[i]) for r in cands]
        best = int(np.argmax(f1s))
        cos = float(np.clip(cand_vecs[row + best] @ ref_vecs[i], 0.0, 1.0))
        cite = citation_precision(cands[best].cited_ids, golds[i])
        out.append(
            {
                "helpfulness": w_sim * cos + w_cite * cite,
                "adoption": float(f1s[best] >= ADOPT_THRESHOLD),
                "reference_similarity": cos,
                "citation_precision": cite,
            }
        )
        row += len(cands)
    return out


def reply_quality(
    candidates: Sequence[Sequence[Reply]],
    references: Sequence[str],
    golds: Sequence[Sequence[str]],
    embed: Embed,
) -> dict[str, float]:
    """Mean helpfulness and adoption over cases (each with its candidate replies)."""
    scores = reply_scores(candidates, references, golds, embed)
    n = len(scores)
    return {k: sum(s[k] for s in scores) / n for k in scores[0]}
