"""The shared kernel: what every part of aitl stands on (settings, errors, the event
contract, the shard store, model lifecycle records, prompt shape, ranking metrics, text).

Imports nothing from the packages above it (streams, processors, serving, trainers, the
application); ``make lint`` holds that with import-linter.
"""
