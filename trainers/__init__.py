"""Trainers, evaluation and the model lifecycle (one module per component trained).

One cycle, programmatically::

    from kernel.settings import load_settings
    from trainers.cycle import run_cycle
    from trainers.registry import KafkaLifecycleLog, Registry

    settings = load_settings()
    registry = Registry(KafkaLifecycleLog(settings.kafka), key=settings.lifecycle_key_bytes())
    result = run_cycle("retriever", settings=settings, registry=registry)

``snapshot`` (sealed shards up to a watermark) -> ``retriever`` / ``ranker`` /
``generator`` (train + evaluate) -> ``gate`` -> ``registry`` (lifecycle events);
``service`` runs cycles on a trigger; ``config`` holds every knob with its help text.
"""
