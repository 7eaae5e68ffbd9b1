"""The annotation types, one module each, registered by being here.

Every module of this package (other than ``base``) that defines :class:`Annotation`
subclasses adds them to :data:`ANNOTATIONS`; nothing else lists the types. The order is
the modules' names', so it is stable.
"""

from __future__ import annotations

import importlib
import pkgutil

from kernel.annotations.adoption import Adoption, AdoptionDecision, RationaleCategory
from kernel.annotations.base import Annotation, JudgeInput, Rule, RuleConfig, RuleOutcome
from kernel.annotations.missing_knowledge import AnnotationTiming, MissingItem, MissingKnowledge
from kernel.annotations.preference import PairwisePreference, Preference
from kernel.annotations.relevance import KnowledgeRelevance, Relevance, RelevanceLabel


def _discover() -> tuple[type[Annotation], ...]:
    found: dict[str, type[Annotation]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Annotation)
                and value is not Annotation
                and value.__module__ == module.__name__
            ):
                found[value.schema_name] = value
    return tuple(found.values())


ANNOTATIONS: tuple[type[Annotation], ...] = _discover()
BY_TYPE: dict[str, type[Annotation]] = {cls.annotation_type: cls for cls in ANNOTATIONS}

__all__ = [
    "ANNOTATIONS",
    "BY_TYPE",
    "Adoption",
    "AdoptionDecision",
    "Annotation",
    "AnnotationTiming",
    "JudgeInput",
    "KnowledgeRelevance",
    "MissingItem",
    "MissingKnowledge",
    "PairwisePreference",
    "Preference",
    "RationaleCategory",
    "Relevance",
    "RelevanceLabel",
    "Rule",
    "RuleConfig",
    "RuleOutcome",
]
