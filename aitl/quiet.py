"""Third-party noise a newcomer cannot act on, silenced where the demo starts.

Each entry names the library and the message, so a new or real warning still prints.
Used by ``aitl demo`` only; the services and the tests keep every warning.
"""

from __future__ import annotations

import logging
import os
import warnings

# (message regex, module regex): warnings from libraries about their own internals
_WARNINGS: tuple[tuple[str, str], ...] = (
    # TRL's ORPO lives in trl.experimental; the trainers pin the version
    (r"You are importing from 'trl\.experimental'", r"trainers\.generator|trl\..*"),
    # TRL reads a transformers attribute that transformers 5 renamed (TRL's, not ours)
    (r"`is_gradient_checkpointing` is deprecated", r"transformers\..*|trl\..*"),
)
# loggers whose warnings are about optional accelerations aitl does not use on CPU
_LOGGERS: tuple[str, ...] = (
    # "Failed to load CPU gemm_4bit_forward from kernels-community"
    "bitsandbytes.backends.cpu.ops",
)


def quiet_third_party() -> None:
    """Silence the known third-party warnings, the per-model "Loading weights" bars and
    the datasets "Map" bars (the trainers' own progress bars stay)."""
    for message, module in _WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from datasets.utils.logging import disable_progress_bar as no_map_bars
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    no_map_bars()  # the "Map:" bars of TRL's tokenisation
