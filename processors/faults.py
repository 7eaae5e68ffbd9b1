"""Crash points for the fault tests: the worker SIGKILLs itself where a real crash hurts most.

``AITL_PROCESSORS_FAULT_POINT`` (read once into :class:`ProcessorSettings`) names the point:

- ``after_parquet_rename``: the shard's Parquet file is in place, its manifest is not;
- ``after_manifest``: the shard is sealed in the store, its ``ShardSealed`` event is not sent;
- ``in_revoke``: partitions are being revoked and the open shards' writes are in flight
  (with ``fault_store_delay_s``, a slow store, they are still writing).

Unset (the default), every hook is a no-op.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

from processors.settings import ProcessorSettings

log = logging.getLogger(__name__)

# the store's write stages (kernel.shards.ShardStore.write) that are crash points
_STORE_STAGES = {"parquet_renamed": "after_parquet_rename", "manifest_written": None}


class Faults:
    """The worker's one crash point and the slow store, from the settings."""

    def __init__(self, ps: ProcessorSettings) -> None:
        self.point = ps.fault_point
        self.store_delay_s = ps.fault_store_delay_s

    def hit(self, point: str) -> None:
        """SIGKILL this process if ``point`` is the configured crash point."""
        if point != self.point:
            return
        log.warning("fault injection: SIGKILL at %s", point)
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)  # the signal is delivered before this returns

    def store_stage(self, stage: str) -> None:
        """The shard store's hook (runs in the writer thread): slow, then maybe crash."""
        if self.store_delay_s and stage != "manifest_written":
            time.sleep(self.store_delay_s)
        point = _STORE_STAGES.get(stage)
        if point is not None:
            self.hit(point)
