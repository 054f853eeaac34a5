"""Report figures of the defect domain: score distributions per defect type, anomaly-map overlays."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from domains.common.contract import Figure


def score_figure(labels: np.ndarray, scores: dict[str, np.ndarray], thresholds: dict[str, float], good: str) -> Figure:
    """Each model's image scores per test group (good first), with its threshold."""
    kinds = [good, *sorted(set(labels) - {good})]
    fig, axes = plt.subplots(1, len(scores), figsize=(4.5 * len(scores), 4), squeeze=False)
    rng = np.random.default_rng(0)  # horizontal jitter only
    for ax, (name, s) in zip(axes[0], scores.items()):
        groups = [s[labels == k] for k in kinds]
        ax.boxplot(groups, showfliers=False, widths=0.6)
        for i, values in enumerate(groups, 1):
            ax.scatter(
                i + rng.uniform(-0.18, 0.18, len(values)),
                values,
                s=6,
                alpha=0.5,
                color="C2" if kinds[i - 1] == good else "C3",
            )
        ax.axhline(thresholds[name], ls="--", color="grey", label="threshold")
        ax.set_xticks(
            range(1, len(kinds) + 1),
            [f"{k}\n({len(g)})" for k, g in zip(kinds, groups)],
            rotation=30 if len(kinds) > 4 else 0,
        )
        ax.set(title=name, ylabel="image score")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return Figure(
        "Image scores per defect type",
        fig,
        "Test images' scores by type (good in green); the dashed "
        "line is each model's threshold, set on held-out good images.",
    )


def heat_range(maps: np.ndarray, threshold: float) -> tuple[float, float]:
    """A model's colour scale: from its decision threshold (below it: no colour) to the 99.9th percentile."""
    top = float(np.quantile(maps.ravel()[:: max(1, maps.size // 2_000_000)], 0.999))
    return threshold, max(top, threshold + 1e-6)


def _show(
    ax,
    image: np.ndarray,
    heat: np.ndarray | None,
    mask: np.ndarray | None,
    title: str,
    scale: tuple[float, float] = (0.0, 1.0),
) -> None:
    """One panel: the image in grey or colour, the anomaly map over it, the true defect outlined."""
    picture = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    ax.imshow(picture, cmap="gray" if image.shape[0] == 1 else None, vmin=0, vmax=255)
    if heat is not None:
        ax.imshow(np.ma.masked_less(heat, scale[0]), cmap="jet", alpha=0.5, vmin=scale[0], vmax=scale[1])
    if mask is not None and mask.any():
        ax.contour(mask, levels=[0.5], colors="lime", linewidths=0.6, linestyles="dotted")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def overlay_figure(
    name: str,
    images: np.ndarray,
    masks: np.ndarray | None,
    labels: np.ndarray,
    maps: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    good: str,
    per_group: int,
) -> Figure:
    """Best and worst good and defective test images of one model, with its anomaly maps."""
    goods, bads = np.flatnonzero(labels == good), np.flatnonzero(labels != good)
    groups = [
        ("good, lowest scores (best)", goods[np.argsort(scores[goods])][:per_group]),
        ("good, highest scores (worst)", goods[np.argsort(scores[goods])][::-1][:per_group]),
        ("defective, highest scores (best)", bads[np.argsort(scores[bads])][::-1][:per_group]),
        ("defective, lowest scores (worst)", bads[np.argsort(scores[bads])][:per_group]),
    ]
    groups = [(title, rows) for title, rows in groups if len(rows)]
    scale = heat_range(maps, threshold)  # one colour scale for every panel
    fig, axes = plt.subplots(len(groups), per_group, figsize=(2.4 * per_group, 2.6 * len(groups)), squeeze=False)
    for r, (title, rows) in enumerate(groups):
        for c in range(per_group):
            ax = axes[r, c]
            if c >= len(rows):
                ax.axis("off")
                continue
            i = rows[c]
            verdict = "flagged" if scores[i] >= threshold else "passed"
            _show(
                ax,
                images[i],
                maps[i],
                None if masks is None else masks[i],
                f"{labels[i]}: {scores[i]:.3g} ({verdict})",
                scale,
            )
        axes[r, 0].text(
            -0.08, 0.5, title, transform=axes[r, 0].transAxes, rotation=90, va="center", ha="right", fontsize=9
        )
    fig.tight_layout()
    return Figure(
        f"Anomaly maps of {name}",
        fig,
        "Test images with the model's anomaly map over them, coloured "
        "where it exceeds the model's threshold; the true defect dotted in green; title: type, image score and "
        "verdict at the threshold.",
    )


def comparison_figure(
    images: np.ndarray,
    masks: np.ndarray | None,
    labels: np.ndarray,
    maps: dict[str, np.ndarray],
    scores: dict[str, np.ndarray],
    thresholds: dict[str, float],
    good: str,
) -> Figure:
    """One typical image per defect type (the first model's median-scored one) and every model's map of it."""
    first = next(iter(scores))
    rows = []
    for kind in sorted(set(labels) - {good}):
        members = np.flatnonzero(labels == kind)
        rows.append(members[np.argsort(scores[first][members])][len(members) // 2])
    scales = {name: heat_range(m, thresholds[name]) for name, m in maps.items()}
    fig, axes = plt.subplots(len(rows), len(maps) + 1, figsize=(2.4 * (len(maps) + 1), 2.5 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        _show(axes[r, 0], images[i], None, None, f"{labels[i]}")  # the defect as it looks, nothing drawn over it
        for c, (name, m) in enumerate(maps.items(), 1):
            _show(
                axes[r, c],
                images[i],
                m[i],
                None if masks is None else masks[i],
                f"{name}: {scores[name][i]:.3g}",
                scales[name],
            )
    fig.tight_layout()
    return Figure(
        "Every model on the same defects",
        fig,
        "One test image per defect type (the median-scored one "
        "of the first model) as it is, then each model's map, coloured above that model's threshold; true "
        "defect dotted in green.",
    )
