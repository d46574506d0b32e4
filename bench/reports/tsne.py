"""t-SNE of the pool's embeddings with the points queried at the first, middle and last cycles (Fig. 4).

Inputs are a run's ``embeddings`` artifact (final-cycle model, float16) and ``embedding_indices``
(train-set indices: a fixed random pool subset, the same for every run of a sweep, plus every
labeled image). The paper embeds every strategy's queries with one model trained on all of
CIFAR-10; the records hold each run's own final model instead, so each panel is that run's feature
space (the caption says so). The middle cycle is ``(cycles - 1) // 2``: the fifth of ten, as in
the paper.
"""

from __future__ import annotations

import math
import os

import numpy as np

from albench.reports.data import Run

ROLE_MARKERS = {"first": "o", "middle": "^", "last": "s"}
ROLE_COLORS = {"first": "tab:blue", "middle": "tab:orange", "last": "tab:red"}


def marked_cycles(cycles: list[int]) -> dict[str, int]:
    """{'first', 'middle', 'last'} -> cycle, for the recorded ``cycles`` (duplicates dropped)."""
    cycles = sorted(cycles)
    if not cycles:
        return {}
    out = {"first": cycles[0], "middle": cycles[(len(cycles) - 1) // 2], "last": cycles[-1]}
    seen, uniq = set(), {}
    for role, c in out.items():
        if c not in seen:
            uniq[role] = c
            seen.add(c)
    return uniq


DEFAULT_POINTS = 1000  # per panel: the marked queries plus a random background (report --tsne-points)


def tsne_input(run: Run, *, max_points: int = DEFAULT_POINTS, seed: int = 0) -> dict | None:
    """The rows of one run's embeddings a t-SNE panel shows, or None when the run lacks them.

    Images queried at the marked cycles fill up to two thirds of ``max_points`` (a random subset when
    there are more); the rest is random other rows (generator seeded by ``seed``), so the pool shows
    behind them. Returns {'series', 'seed', 'x' (n, D) float32, 'role' (n,) object array: 'first' /
    'middle' / 'last' / '' for background, 'cycles': {role: cycle}, 'n_embedded' (rows recorded)}.
    """
    emb = run.artifact("embeddings")
    idx = run.artifact("embedding_indices")
    queries = run.queries()
    if emb is None or idx is None or not queries or len(emb) != len(idx) or len(emb) < 5:
        return None
    rng = np.random.default_rng(seed)
    row_of = {int(t): r for r, t in enumerate(idx.tolist())}
    marks = marked_cycles(list(queries))
    role = np.full(len(idx), "", dtype=object)
    for r_name, c in marks.items():
        rows = [row_of[int(t)] for t in queries[c] if int(t) in row_of]
        role[rows] = r_name
    marked = np.flatnonzero(role != "")
    cap = max(1, (2 * max_points) // 3)
    if len(marked) > cap:
        marked = np.sort(rng.choice(marked, size=cap, replace=False))
    rest = np.flatnonzero(role == "")
    fill = max(0, max_points - len(marked))
    if len(rest) > fill:
        rest = np.sort(rng.choice(rest, size=fill, replace=False))
    rows = np.concatenate([rest, marked])  # background first so queried points are drawn on top
    return {"series": run.series, "seed": run.seed, "x": emb[rows].astype(np.float32), "role": role[rows],
            "cycles": marks, "n_embedded": int(len(idx))}


def embed(x: np.ndarray, *, seed: int = 0, threads: int | None = 1) -> np.ndarray:
    """(n, 2) t-SNE of ``x`` (scikit-learn, Barnes-Hut, PCA init, perplexity min(30, (n - 1) / 3)).
    ``threads`` caps its OpenMP threads (None: the library default)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
    with threadpool_limits(limits=threads):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                    random_state=int(seed)).fit_transform(x)


def _embed_job(args: tuple) -> np.ndarray:
    x, seed, threads = args
    return embed(x, seed=seed, threads=threads)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def tsne_points(run: Run, *, max_points: int = DEFAULT_POINTS, seed: int = 0, threads: int | None = 1) -> dict | None:
    """One run's panel: :func:`tsne_input` with its 2-d t-SNE under 'xy' (and 'x' dropped), or None."""
    panel = tsne_input(run, max_points=max_points, seed=seed)
    if panel is not None:
        panel["xy"] = embed(panel.pop("x"), seed=seed, threads=threads)
    return panel


def tsne_panels(inputs: list[dict], *, seed: int = 0, threads: int | None = 1, jobs: int | None = None) -> list[dict]:
    """Embed every :func:`tsne_input` panel (their 'x' replaced by 'xy'), ``jobs`` at a time in worker
    processes (None: the cores this process may use; 1: here, one after another). Each embedding is
    seeded and single-threaded by default, so the result does not depend on ``jobs``."""
    jobs = usable_cores() if jobs is None else max(1, int(jobs))
    work = [(p.pop("x"), seed, threads) for p in inputs]
    if jobs == 1 or len(work) <= 1:
        xys = [_embed_job(w) for w in work]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawned, not forked: the report process may hold torch's or OpenMP's threads
        with ProcessPoolExecutor(max_workers=min(jobs, len(work)), mp_context=mp.get_context("spawn")) as ex:
            xys = list(ex.map(_embed_job, work))
    for p, xy in zip(inputs, xys):
        p["xy"] = xy
    return inputs


def tsne_figure(panels: list[dict], *, dataset: str, caption: str, flagged: set[str]):
    """One panel per strategy: background pool points in grey, marked cycles' queries in colour."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D

    from albench.reports.output import add_caption
    from albench.reports.provenance import display_name

    n = len(panels)
    cols = min(3, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    with sns.axes_style("white"):
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.5 * rows), squeeze=False)
        for ax, p in zip(axes.flat, panels):
            xy, role = p["xy"], p["role"]
            bg = role == ""
            ax.scatter(xy[bg, 0], xy[bg, 1], s=3, color="0.78", lw=0, rasterized=True)
            for r_name in ("first", "middle", "last"):
                sel = role == r_name
                if sel.any():
                    ax.scatter(xy[sel, 0], xy[sel, 1], s=12, marker=ROLE_MARKERS[r_name], color=ROLE_COLORS[r_name],
                               edgecolor="black", linewidths=0.2, alpha=0.85, rasterized=True)
            cyc = ", ".join(f"{k} = cycle {v}" for k, v in p["cycles"].items())
            ax.set_title(f"{display_name(p['series'], p['series'] in flagged)}, seed {p['seed']}\n({cyc})",
                         fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("t-SNE 1", fontsize=8)
            ax.set_ylabel("t-SNE 2", fontsize=8)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        handles = [Line2D([], [], ls="", marker="o", color="0.78", ms=4, label="other pool / labeled images")]
        handles += [Line2D([], [], ls="", marker=ROLE_MARKERS[r], color=ROLE_COLORS[r], mec="black", mew=0.3, ms=6,
                           label=f"queried at the {r} cycle") for r in ("first", "middle", "last")]
        fig.tight_layout()
        ncol = 4 if cols >= 3 else 2  # one row where the figure is wide enough
        y0 = add_caption(fig, caption, reserve_in=0.35 if ncol == 4 else 0.55,
                         title=f"{dataset}: t-SNE of final-model embeddings with queried images")
        fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, y0))
    return fig
