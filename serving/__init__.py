"""Knowledge base and the Ray Serve assistant (retriever -> ranker -> generator).

What other folders call (no Ray needed):

- ``serving.retriever.load_encoder(spec, stock_model)`` / ``kernel.rankers.load_ranker(spec)``
  / ``serving.generator.load_generator(spec, stock_model)``: a stock model or a checkpoint
  (``ModelSpec(version, artifact_uri)`` from ``kernel.checkpoints``).
- ``serving.offline.evaluate_retrieval(knowledge, cases, encoder, ranker)`` and the pure
  metrics in ``kernel.ranking``.
- ``kernel.prompt.build_messages`` / ``ground``: the generator prompt and citations.

``serving.app.build_app`` / ``start`` run the application (``aitl serve start``).
"""
