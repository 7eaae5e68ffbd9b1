"""Knowledge bases and grounded support cases: DSTC-format loading and the demo dataset."""

from serving.knowledge.dataset import (
    Case,
    Dataset,
    DatasetError,
    KnowledgeKind,
    KnowledgeObject,
    load_dstc,
)
from serving.knowledge.demo_data import generate_demo

__all__ = [
    "Case",
    "Dataset",
    "DatasetError",
    "KnowledgeKind",
    "KnowledgeObject",
    "generate_demo",
    "load_dstc",
]
