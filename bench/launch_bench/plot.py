"""Latency against concurrency (p50 solid, p99 dashed), one panel per sync model, one line per target."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from launch_bench.metrics import Summary

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def plot_latency(summaries: list[Summary], path: Path) -> Path | None:
    sync = [s for s in summaries if s.kind == "sync"]
    if not sync:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({s.model for s in sync})
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        _panel(ax, [s for s in sync if s.model == model], model)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _panel(ax: Axes, rows: list[Summary], model: str) -> None:
    targets = sorted({s.target for s in rows})
    for i, target in enumerate(targets):
        points = sorted((s.concurrency, s.get("p50_ms"), s.get("p99_ms")) for s in rows if s.target == target)
        xs = [p[0] for p in points]
        color = f"C{i}"
        width = 2.5 if target == "launch" else 1.2
        ax.plot(xs, [p[1] for p in points], "o-", color=color, linewidth=width, label=f"{target} p50")
        ax.plot(
            xs, [p[2] for p in points], "x--", color=color, linewidth=width, alpha=0.7, label=f"{target} p99"
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="concurrency (connections)",
        ylabel="latency (ms)",
        title=f"sync {model}: latency vs concurrency",
    )
    levels = sorted({s.concurrency for s in rows})
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.minorticks_off()
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
