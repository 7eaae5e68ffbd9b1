"""Every number the simulated support agents use, in one place, each with its source.

Sources are marked ``paper:`` (the agent-in-the-loop paper the benchmark reproduces),
``assumption`` (a plausible value nobody measured; change it freely), or ``calibrated``
(fitted on dstc11-hotel so that a measured quantity matches the paper; the fit is
checked by ``tests/unit/test_agents.py``, which fails when a change breaks it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Literal

Profile = Literal["careful", "careless", "fatigued", "deferred"]
PROFILES: tuple[Profile, ...] = ("careful", "careless", "fatigued", "deferred")

CarelessMode = Literal["rubber_stamp", "random", "copy"]
CARELESS_MODES: tuple[CarelessMode, ...] = ("rubber_stamp", "random", "copy")

# assumption: most agents are careful; one in ten each fatigues, is careless, or records
# missing knowledge at the end of the shift (the paper names all four behaviours, not shares)
REALISTIC: Mapping[Profile, float] = MappingProxyType(
    {"careful": 0.7, "fatigued": 0.1, "careless": 0.1, "deferred": 0.1}
)
# assumption: the judge ablation's crew, a quarter careless so that filtering has noise to catch
CARELESS_25: Mapping[Profile, float] = MappingProxyType({"careful": 0.75, "careless": 0.25})


@dataclass(frozen=True)
class SimConfig:
    """The rates, the profile mix and the seed of a simulated crew of agents."""

    seed: int = 0
    mix: Mapping[Profile, float] = field(default_factory=lambda: dict(REALISTIC))

    # --- relevance: P(RELEVANT) = sigmoid(bias + gold*is_gold + sim*cosine + entity*same) ---
    # assumption: a shown object that is neither needed, similar nor about the hotel in
    # question is marked relevant ~1% of the time (sigmoid(-5.0)): most shown objects
    # are not needed, so a higher rate would drown the relevant ones
    relevance_bias: float = -5.0
    # assumption: needing the object is the strongest cue (a needed object about the right
    # hotel with little word overlap is still marked relevant ~80% of the time)
    relevance_gold: float = 5.2
    # assumption: word overlap with the conversation pulls the label up, so near-misses
    # (similar words, not needed) draw false positives and paraphrases false negatives
    relevance_similarity: float = 2.5
    # assumption: same hotel as the one the customer is talking about
    relevance_entity: float = 1.2
    # assumption: the object behind the reply the agent just sent (as-is or edited) is
    # marked relevant nearly always: a person does not send an answer built from knowledge
    # they call irrelevant (without it, 35% of careful relevance annotations contradicted
    # the sent reply in a trial run and the judge rightly rejected them)
    relevance_sent: float = 6.0

    # --- missing knowledge: the agent searches the knowledge base from memory ---
    # assumption: the agent reads the first results of its search that it was not shown
    search_k: int = 10
    # assumption: it types the hotel's name (when it remembers it) and the content words it
    # remembers of the last turns; right after the case: two turns, a few words lost
    immediate_turns: int = 2
    immediate_drop: float = 0.2
    immediate_entity_recall: float = 0.95
    # assumption: hours later it remembers the question only, half its words, some mixed up
    # with words from elsewhere in the conversation, and the hotel less often
    deferred_turns: int = 1
    deferred_drop: float = 0.5
    deferred_replace: float = 0.15
    deferred_entity_recall: float = 0.7
    # assumption: a needed object in the results is recognised this often
    recognise_immediate: float = 0.9
    recognise_deferred: float = 0.8
    # calibrated on dstc11-hotel by tests/unit/test_agents.py: when the needed object is not
    # recognised, the agent reports a near-miss from its results this often, so that careful
    # agents' item-level agreement with gold is paper: 76.5% immediate, 63.9% deferred
    settle_immediate: float = 0.11
    settle_deferred: float = 0.08
    # assumption: a deferred agent writes its notes 3 to 8 hours after the case
    deferred_delay_h: tuple[float, float] = (3.0, 8.0)

    # --- preference and adoption from the agent's noisy reading of each candidate ---
    # assumption: the agent's estimate of a reply's token-F1 to what the answer must say is
    # off by this standard deviation
    reading_noise: float = 0.08
    # assumption: readings closer than this are a tie
    tie_margin: float = 0.02
    # assumption: a reply read at or above this is sent as-is; at or above edit_threshold it
    # is edited; below, both are rejected and the agent writes its own
    as_is_threshold: float = 0.55
    edit_threshold: float = 0.25
    # assumption: an edit adds each reference sentence the reply lacks with this chance
    edit_share: float = 0.6
    # assumption: an agent's own reply keeps each sentence of what it knows with this chance
    own_reply_keep: float = 0.7
    # assumption: why an edit / a rejection, as shares of the rationale categories
    edit_reasons: Mapping[str, float] = field(
        default_factory=lambda: {"INCOMPLETE": 0.65, "TONE": 0.2, "POLICY": 0.15}
    )
    reject_reasons: Mapping[str, float] = field(
        default_factory=lambda: {"INACCURATE": 0.6, "IRRELEVANT": 0.3, "OTHER": 0.1}
    )

    # --- careless modes ---
    # assumption: a careless agent rubber-stamps, clicks at random or copies its last case
    careless_modes: Mapping[CarelessMode, float] = field(
        default_factory=lambda: {"rubber_stamp": 0.4, "random": 0.3, "copy": 0.3}
    )
    # assumption: a tired agent mostly accepts the defaults, sometimes repeats itself
    fatigued_modes: Mapping[CarelessMode, float] = field(
        default_factory=lambda: {"rubber_stamp": 0.6, "copy": 0.3, "random": 0.1}
    )
    # assumption: after this many annotations a fatigued agent acts carelessly half the time
    fatigue_half_life: float = 40.0
    # assumption: a careless agent reports random retrieved objects as missing this often
    careless_missing: float = 0.3

    def profile_shares(self) -> dict[Profile, float]:
        """The mix as a plain dict (a copy: the config stays frozen)."""
        return dict(self.mix)

    def describe(self) -> dict[str, object]:
        """Every number of the config as plain JSON values, for the benchmark's report."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = dict(value) if isinstance(value, Mapping) else value
        return out
