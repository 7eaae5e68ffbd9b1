"""Per-cycle reporting: the metrics PNG and optional MLflow tracking."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SKIP = {"queries", "judged_pairs"}


def plot_cycle(
    path: Path,
    title: str,
    candidate: Mapping[str, float],
    serving: Mapping[str, float],
    loss_history: Sequence[tuple[int, float]],
    verdict: str,
) -> Path:
    """One PNG: candidate vs serving per eval metric, and the training loss curve."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [k for k in candidate if k not in _SKIP and k in serving]
    fig = Figure(figsize=(11, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    x = range(len(names))
    ax1.bar([i - 0.2 for i in x], [serving[n] for n in names], 0.4, label="serving")
    ax1.bar([i + 0.2 for i in x], [candidate[n] for n in names], 0.4, label="candidate")
    for i, n in enumerate(names):
        ax1.annotate(
            f"{candidate[n]:.3f}", (i + 0.2, candidate[n]), ha="center", va="bottom", fontsize=7
        )
    ax1.set_xticks(list(x), names, rotation=20, ha="right", fontsize=8)
    ax1.set_title("eval slice: serving vs candidate", fontsize=10)
    ax1.legend(fontsize=8)
    if loss_history:
        steps, losses = zip(*loss_history, strict=True)
        ax2.plot(steps, losses, marker=".", linewidth=1)
    ax2.set_xlabel("step")
    ax2.set_ylabel("training loss")
    ax2.set_title("training", fontsize=10)
    fig.suptitle(f"{title}\n{verdict}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path


def log_mlflow(
    tracking_uri: str | None,
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    artifact_dir: Path | None,
) -> bool:
    """Log one cycle to MLflow when a tracking URI is set and mlflow is installed."""
    if not tracking_uri:
        return False
    try:
        import mlflow  # optional: not a dependency of aitl
    except ImportError:
        log.warning("MLFLOW_TRACKING_URI is set but mlflow is not installed; not tracking")
        return False
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name):
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(dict(metrics))
        if artifact_dir is not None:
            for name in ("metrics.png", "lineage.json", "aitl_model.json"):
                if (artifact_dir / name).exists():
                    mlflow.log_artifact(str(artifact_dir / name))
    return True
