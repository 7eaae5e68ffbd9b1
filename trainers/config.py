"""Trainer configuration: dataclasses whose fields carry help text (TRL ``*_config.py`` style).

Every field has a default that runs on one laptop CPU. A config comes from code, from a
YAML file (``CycleConfig.from_yaml``, one mapping per section) or from CLI flags
(``aitl train ... --max-steps``); it is recorded verbatim as lineage of every version.
The environment is read once, at the entrypoint, into :class:`TrainerSettings`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


def _help_list(text: str, default: list[str]) -> Any:
    return field(default_factory=lambda: list(default), metadata={"help": text})


@dataclass
class RetrieverConfig:
    """Bi-encoder fine-tuning with in-batch + hard negatives (MultipleNegativesRankingLoss)."""

    base_model: str | None = _help(
        "sentence-transformers model to start from; None = the serving retriever "
        "(or settings.retriever_model while nothing is promoted)",
        None,
    )
    epochs: float = _help("passes over the snapshot's train rows", 1.0)
    max_steps: int = _help("stop after this many optimizer steps (-1 = use epochs)", -1)
    batch_size: int = _help("pairs per batch; every other pair's texts are in-batch negatives", 32)
    learning_rate: float = _help("AdamW learning rate", 2e-5)
    warmup_ratio: float = _help("share of steps with a linear learning-rate warm-up", 0.1)
    hard_negatives: int = _help(
        "hard-negative columns per pair (objects the agent marked irrelevant); rows with "
        "fewer are padded with other rows' knowledge texts",
        1,
    )
    min_weight: float = _help("drop rows whose judge weight is below this", 0.0)
    use_weights: bool = _help(
        "draw train rows with probability proportional to their judge weight (same count "
        "as the kept rows, seeded); False = every kept row counts once (the ablation)",
        True,
    )
    max_seq_length: int = _help("token limit of queries and knowledge texts", 128)
    ks: tuple[int, ...] = _help("Recall@k cut-offs evaluated; Precision uses the smallest", (75, 8))
    seed: int = _help("random seed (sampling order, padding negatives)", 42)


@dataclass
class RankerConfig:
    """Cross-encoder fine-tuning on graded relevance labels with a BCE loss."""

    architecture: Literal["auto", "cross-encoder", "embedding"] = _help(
        "cross-encoder (BCE) or embedding (bi-encoder, CoSENT); auto = the serving ranker's "
        "kind when it is one of these, else embedding",
        "auto",
    )
    base_model: str | None = _help(
        "model to start from; None = the serving ranker when it has the same architecture, "
        "else (embedding) the serving retriever, else settings.retriever_model (MiniLM; a "
        "cross-encoder gets a fresh head)",
        None,
    )
    epochs: float = _help("passes over the snapshot's train rows", 1.0)
    max_steps: int = _help("stop after this many optimizer steps (-1 = use epochs)", -1)
    batch_size: int = _help("(query, object) pairs per batch", 16)
    learning_rate: float = _help("AdamW learning rate (the head starts random)", 5e-5)
    warmup_ratio: float = _help("share of steps with a linear learning-rate warm-up", 0.1)
    min_weight: float = _help("drop rows whose judge weight is below this", 0.0)
    use_weights: bool = _help(
        "draw train rows with probability proportional to their judge weight (same count "
        "as the kept rows, seeded); False = every kept row counts once (the ablation)",
        True,
    )
    balance_labels: bool = _help(
        "cross-encoder: weigh relevant rows by #irrelevant/#relevant in the BCE loss (agents "
        "mark most shown objects irrelevant, and an unbalanced loss learns the prior first)",
        True,
    )
    max_length: int = _help("token limit of the (query, text) pair", 256)
    k: int = _help("cut-off of Precision@k and nDCG@k (the serving top-k)", 8)
    pool_size: int = _help(
        "evaluation pool per query: its labelled objects plus the knowledge objects with the "
        "most word overlap (unlabelled ones count as irrelevant) up to this size",
        24,
    )
    relevant_at: float = _help("a label at least this counts as relevant for Precision@k", 0.5)
    seed: int = _help("random seed", 42)


@dataclass
class GeneratorConfig:
    """ORPO preference tuning of a causal LM with a LoRA adapter (QLoRA on CUDA)."""

    base_model: str | None = _help(
        "causal LM under the adapter; None = settings.generator_model", None
    )
    quantization: Literal["auto", "4bit", "none"] = _help(
        "auto = bitsandbytes 4-bit NF4 base (QLoRA) on CUDA, full precision on CPU", "auto"
    )
    lora_r: int = _help("LoRA rank of each adapter matrix", 8)
    lora_alpha: int = _help("LoRA scaling numerator", 16)
    lora_dropout: float = _help("dropout on the LoRA input", 0.05)
    target_modules: list[str] = _help_list(
        "linear layers that get adapters", ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    beta: float = _help("ORPO's odds-ratio weight (lambda in the paper)", 0.1)
    epochs: float = _help("passes over the snapshot's train rows", 1.0)
    max_steps: int = _help("stop after this many optimizer steps (-1 = use epochs)", -1)
    batch_size: int = _help("preference pairs per device batch", 2)
    gradient_accumulation_steps: int = _help("batches per optimizer step", 1)
    learning_rate: float = _help("AdamW learning rate of the adapter", 5e-4)
    max_length: int = _help(
        "token limit of prompt + reply (prompts carry ~350-600 tokens of knowledge)", 768
    )
    max_completion_length: int = _help("token limit of a reply", 128)
    use_chat_template: bool = _help(
        "wrap prompts as a user turn and replies as the assistant turn (when the tokenizer "
        "has a chat template), exactly as generation does",
        True,
    )
    min_weight: float = _help("drop pairs whose judge weight is below this", 0.0)
    use_weights: bool = _help(
        "draw train rows with probability proportional to their judge weight (same count "
        "as the kept rows, seeded); False = every kept row counts once (the ablation)",
        True,
    )
    rationale_boost: int = _help(
        "repeat a pair this many times when the agent's rationale names a substantive flaw "
        "of the rejected reply (INACCURATE, INCOMPLETE, POLICY, IRRELEVANT) and is not "
        "boilerplate; 1 disables the rationale signal",
        2,
    )
    eval_examples: int = _help("eval prompts generated and judged (CPU generation is slow)", 16)
    max_new_tokens: int = _help("tokens generated per reply when evaluating", 64)
    eval_batch_size: int = _help("prompts generated together when evaluating", 8)
    seed: int = _help("random seed", 42)


@dataclass
class GateConfig:
    """When a candidate replaces the serving version."""

    margin: float = _help(
        "the candidate must beat the serving version's gate metric by more than this", 0.0
    )
    tie_queries: float = _help(
        "gate metrics closer than this many eval queries' worth (this / queries) are tied, "
        "and the tie-break metric decides; 0: exact ties only",
        1.0,
    )
    retriever_metric: str = _help("retriever gate metric (tie-break: mrr)", "recall_at_75")
    ranker_metric: str = _help("ranker gate metric (tie-break: ndcg_at_8)", "precision_at_8")
    generator_metric: str = _help(
        "generator gate metric; win_rate is against the serving model, so it must exceed "
        "0.5 + margin (tie-break: reply_similarity)",
        "win_rate",
    )
    open_for_tests: bool = _help(
        "allow a negative margin, which promotes every candidate: tests and demos that must "
        "see a promotion; the gate refuses a negative margin otherwise",
        False,
    )


@dataclass
class CycleConfig:
    """One flywheel cycle: snapshot -> train -> evaluate -> gate -> register/promote."""

    retriever: RetrieverConfig = field(default_factory=RetrieverConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    promote: bool = _help("promote a candidate that passes the gate (False: register only)", True)
    progress: bool = _help("show progress bars", True)
    plot: bool = _help("write metrics.png into the checkpoint", True)
    mlflow_tracking_uri: str | None = _help("log params/metrics/artifacts to MLflow", None)
    mlflow_experiment: str = _help("MLflow experiment name", "aitl")

    def section(self, component: str) -> RetrieverConfig | RankerConfig | GeneratorConfig:
        """The trainer config of ``retriever``, ``ranker`` or ``generator``."""
        value = getattr(self, component.lower())
        assert isinstance(value, RetrieverConfig | RankerConfig | GeneratorConfig)
        return value

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CycleConfig:
        """Build from nested mappings; unknown keys raise so typos are not silently ignored."""
        sections = {
            "retriever": RetrieverConfig,
            "ranker": RankerConfig,
            "generator": GeneratorConfig,
            "gate": GateConfig,
        }
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key in sections:
                kwargs[key] = sections[key](**_tuples(sections[key], value or {}))
            elif key in {f.name for f in dataclasses.fields(cls)}:
                kwargs[key] = value
            else:
                raise ValueError(f"unknown trainer config key {key!r}")
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: Path) -> CycleConfig:
        import yaml

        return cls.from_dict(yaml.safe_load(path.read_text()) or {})


def _tuples(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return {k: tuple(v) if k == "ks" else v for k, v in raw.items()}


def describe(config: object) -> list[tuple[str, Any, str]]:
    """(name, default, help) per field of a config dataclass, for docs and ``--help``."""
    assert dataclasses.is_dataclass(config)
    return [
        (f.name, getattr(config, f.name), f.metadata.get("help", ""))
        for f in dataclasses.fields(config)
    ]


class TrainerSettings(BaseSettings):
    """Environment of the trainer service, read once at the entrypoint (``AITL_TRAINERS_*``)."""

    model_config = SettingsConfigDict(env_prefix="AITL_TRAINERS_", frozen=True, extra="ignore")

    every_examples: int = Field(default=500, description="new accepted train examples per cycle")
    every_minutes: float = Field(
        default=60.0, description="cycle at least this often (if new data)"
    )
    components: str = Field(default="retriever,ranker", description="comma-separated components")
    margin: float = Field(default=0.0, ge=0.0, description="promotion gate margin (>= 0)")
    config_file: Path | None = Field(default=None, description="YAML trainer config")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "AITL_TRAINERS_MLFLOW_TRACKING_URI"),
    )
