"""Stream processors: annotations in, trustworthy privacy-safe training shards out.

One Faust worker (``aitl processors start``; several split the partitions) joins each
annotation with its context, asks the Virtual Judge whether to trust it, redacts PII,
builds retriever / ranker / generator examples, assigns a temporal train/eval split and
seals Parquet shards with manifests. Nothing is lost or counted twice across a kill -9:
a message is acknowledged only once everything it produced is durable (see
``offsets.py``), and examples already sealed are dropped on replay (see ``sealer.py``).

Layout: ``app.py`` (the Faust edge), ``engine.py`` (the pure core), ``judge/``,
``redact.py``, ``split.py``, ``examples.py``, ``sealer.py``, ``offsets.py``,
``knowledge.py``, ``metrics.py``, ``settings.py``. What each annotation type contributes
(its rules, its rows) lives with the type in ``kernel/annotations/``.
"""
