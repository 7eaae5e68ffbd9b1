"""The retriever's query/knowledge encoder: a sentence-transformers bi-encoder.

The stock model is ``Settings.retriever_model`` (all-MiniLM-L6-v2 from its package by
default; any sentence-transformers path or cached id, e.g. an E5 model, on a GPU box). A
promoted checkpoint is a directory with ``aitl_model.json`` of kind
``sentence-transformer``. Vectors are L2-normalised so cosine and dot product agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kernel.checkpoints import ModelSpec, load_card
from kernel.errors import ModelError
from kernel.models import resolve_embedder, torch_device

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

RETRIEVER_KIND = "sentence-transformer"


@dataclass
class Encoder:
    """A loaded bi-encoder and the version it serves."""

    model: SentenceTransformer
    version: str
    batch_size: int = 64
    query_prefix: str = ""
    document_prefix: str = ""

    @property
    def dim(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None)
        dim = get_dim() if get_dim else self.model.get_sentence_embedding_dimension()
        if dim is None:
            raise ValueError("the encoder does not report its embedding dimension")
        return int(dim)

    def encode(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        prefix = self.query_prefix if query else self.document_prefix
        vectors = self.model.encode(
            [prefix + t for t in texts],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def load_encoder(spec: ModelSpec, stock_model: str, **options: Any) -> Encoder:
    """The encoder of ``spec``: the stock model, or a ``sentence-transformer`` checkpoint.

    ``options`` go to :class:`Encoder` (``batch_size``, ``query_prefix`` e.g.
    ``"query: "`` for E5, ``document_prefix``).
    """
    from sentence_transformers import SentenceTransformer

    if spec.is_stock:
        source = resolve_embedder(stock_model)
    else:
        directory, card = load_card(spec.artifact_uri, "retriever", spec.sha256)
        kind = card.get("kind", RETRIEVER_KIND)
        if kind != RETRIEVER_KIND:
            raise ModelError(f"retriever checkpoint kind {kind!r} is not {RETRIEVER_KIND!r}")
        source = str(directory)
    model = SentenceTransformer(source, device=torch_device())
    model.eval()
    return Encoder(model=model, version=spec.version, **options)
