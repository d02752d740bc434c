"""Figures written to the run directory (matplotlib, PNG)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def _save(fig, path: str | Path, tight: bool = True) -> Path:
    """Write a figure as PNG (120 dpi) and close it."""
    path = Path(path)
    if tight:
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    else:  # legends outside the axes
        fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_cka(
    similarity: torch.Tensor,
    segments: list[list[int]],
    kept: list[int],
    path: str | Path,
    title: str = "linear CKA between unit outputs",
) -> Path:
    """Heatmap of the CKA matrix with segment boundaries; kept units marked on the axes."""
    s = similarity.detach().cpu().numpy()
    n = s.shape[0]
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(s, cmap="magma", vmin=min(0.0, float(s.min())), vmax=1.0, origin="upper")
    for seg in segments[1:]:
        b = seg[0] - 0.5
        ax.axhline(b, color="cyan", lw=1.5)
        ax.axvline(b, color="cyan", lw=1.5)
    ax.scatter(kept, [-1.2] * len(kept), marker="v", color="tab:green", s=18, clip_on=False, label="kept")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -1.8)
    ax.set_xlabel("unit i (output of prunable unit i, from 0)")
    ax.set_ylabel("unit j")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_accuracy_vs_reduction(
    points: dict[str, tuple[list[float], list[float]]], path: str | Path, title: str = ""
) -> Path:
    """Scatter of accuracy after fine-tuning against MACs reduction, one colour per method, one point per run."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    cmap = plt.get_cmap("tab10")
    for c, (method, (xs, ys)) in enumerate(sorted(points.items())):
        ax.scatter(xs, ys, color=cmap(c % 10), marker="os^Dv"[c // 10 % 5], label=method, s=36, alpha=0.85)
    ax.set_xlabel("MACs reduction (%)")
    ax.set_ylabel("test accuracy after fine-tuning (%)")
    ax.set_title(textwrap.fill(title, 80))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path, tight=False)


def plot_intervals(
    points: dict[str, tuple[tuple[float, float], tuple[float, float]]],
    path: str | Path,
    xlabel: str,
    ylabel: str,
    title: str = "",
    highlight: tuple[str, ...] = (),
    ylim: tuple[float, float] | None = None,
) -> Path:
    """One point per method at (x mean, y mean) with its interval half-widths as error bars: {label: ((x, x_half),
    (y, y_half))}. `highlight`: labels drawn larger, with a black edge; `ylim`: the y axis never extends past it."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    cmap = plt.get_cmap("tab10")
    for c, (label, ((x, xh), (y, yh))) in enumerate(sorted(points.items())):
        big = label in highlight
        ax.errorbar(x, y, xerr=xh, yerr=yh, fmt="os^Dv"[c // 10 % 5], color=cmap(c % 10), capsize=3, label=label,
                    markersize=8 if big else 6, markeredgecolor="black" if big else None)  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title, 80))
    ax.grid(alpha=0.3)
    if ylim is not None:  # e.g. accuracy: a two-seed interval can reach past 100 %
        low, high = ax.get_ylim()
        ax.set_ylim(max(low, ylim[0]), min(high, ylim[1]))
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path, tight=False)


def plot_forest(
    panels: dict[str, dict[str, tuple[float, float, float]]],
    path: str | Path,
    xlabel: str,
    title: str = "",
) -> Path:
    """Differences with intervals, one panel per entry of `panels` ({panel: {label: (mean, low, high)}}): a row per
    label (the same rows in every panel), a dot at the mean, a line from low to high, a line at 0; filled dots for
    intervals that exclude 0, hollow ones for those that do not."""
    labels = sorted({label for rows in panels.values() for label in rows}, reverse=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 2.2, 0.38 * len(labels) + 1.4), squeeze=False)
    for ax, (name, rows) in zip(axes[0], panels.items()):
        for y, label in enumerate(labels):
            if label not in rows:
                continue
            mean, low, high = rows[label]
            significant = low > 0 or high < 0
            ax.plot([low, high], [y, y], color="tab:blue", lw=1.5)
            ax.plot(mean, y, "o", color="tab:blue", markerfacecolor="tab:blue" if significant else "white")
        ax.axvline(0.0, color="0.3", lw=1, ls="--")
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels if ax is axes[0][0] else [])
        ax.set_ylim(-0.6, len(labels) - 0.4)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(textwrap.fill(title, 90), fontsize=10)
    return _save(fig, path)


def plot_kept_units(
    widths: list[int],
    kept: list[int],
    segments: list[list[int]],
    path: str | Path,
    title: str = "kept (blue) and removed (grey) units",
) -> Path:
    """The SGLP paper's Fig. 3: one bar per prunable unit (height = its output channels), kept units blue,
    removed grey; dotted lines mark segment boundaries."""
    kept_set = set(kept)
    n = len(widths)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * n + 2), 3.4))
    colors = ["tab:blue" if i in kept_set else "0.75" for i in range(n)]
    ax.bar(range(n), widths, color=colors, width=0.8)
    for seg in segments[1:]:
        ax.axvline(seg[0] - 0.5, color="0.3", ls=":", lw=1)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xlabel("unit index (from 0)")
    ax.set_ylabel("output channels")
    ax.set_title(f"{title}: {len(kept_set)} of {n} kept", fontsize=10)
    return _save(fig, path)


def plot_curve(
    series: dict[str, tuple[list[float], list[float], list[float]]],
    path: str | Path,
    xlabel: str,
    ylabel: str,
    title: str = "",
    right: tuple[str, list[float], list[float]] | None = None,
) -> Path:
    """Line plot of a sweep: per series (x, mean y, std y) with error bars; `right` = (label, x, y) drawn on a
    second y axis (e.g. parameters in Fig. 2b)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for c, (label, (xs, ys, sd)) in enumerate(series.items()):
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        ax.errorbar([xs[i] for i in order], [ys[i] for i in order], yerr=[sd[i] for i in order], marker="o",
                    capsize=3, color=plt.get_cmap("tab10")(c), label=label)  # fmt: skip
    xs_all = sorted({x for xs, _, _ in series.values() for x in xs})
    if xs_all and all(float(x).is_integer() for x in xs_all):
        ax.set_xticks(xs_all)  # the swept values themselves
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if right is not None:
        label, xs, ys = right
        ax2 = ax.twinx()
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        ax2.plot([xs[i] for i in order], [ys[i] for i in order], "s--", color="0.4", label=label)
        ax2.set_ylabel(label)
        handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax2.legend(handles=handles, loc="lower right", fontsize=8)  # one legend, above both axes' lines
    else:
        ax.legend(loc="best", fontsize=8)
    ax.set_title(textwrap.fill(title, 70), fontsize=10)
    return _save(fig, path)
