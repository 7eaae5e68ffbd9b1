"""Which engine holds the knowledge index: a Qdrant server, Qdrant Edge, or the local mode.

``AITL_QDRANT_URL`` set: a Qdrant server through qdrant-client (collections and aliases
are the server's). Otherwise embedded at ``path``: ``edge`` (the default, Qdrant Edge with
HNSW and BM25, in-process) or ``local`` (qdrant-client's local mode, an exact numpy scan,
fine for a few thousand objects). ``":memory:"`` gives a private, temporary index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from serving.knowledge.edge import EdgeKnowledgeIndex, EdgeTuning
from serving.knowledge.index import DEFAULT_ALIAS, Index, KnowledgeIndex, open_client

Engine = Literal["edge", "local"]


def open_index(
    url: str | None = None,
    path: Path | str | None = None,
    alias: str = DEFAULT_ALIAS,
    *,
    engine: Engine = "edge",
    hybrid: bool = False,
    tuning: EdgeTuning | None = None,
) -> Index:
    """The index for these settings (``hybrid``: dense + BM25, Qdrant Edge only)."""
    if url or engine == "local":
        if hybrid:
            raise ValueError("hybrid retrieval needs the embedded Qdrant Edge engine")
        return KnowledgeIndex(open_client(url, path), alias)
    if path is not None and str(path) != ":memory:":
        path = Path(path) / "edge"  # beside, never inside, a local-mode store at the path
    return EdgeKnowledgeIndex(path, alias, hybrid=hybrid, tuning=tuning)
