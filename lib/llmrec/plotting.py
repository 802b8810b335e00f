"""Figures of the course, drawn with seaborn so that every notebook's plots look alike."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

METRIC_LABELS = {"rmse": "RMSE (lower is better)", "mae": "MAE (lower is better)",
                 "auc": "ROC-AUC (higher is better)"}


def use_style() -> None:
    sns.set_theme(style="whitegrid", context="notebook")


def plot_metric_bars(table: pd.DataFrame, metrics=("rmse", "mae", "auc"), title: str = "",
                     method_col: str = "method", hue_col: str | None = "family"):
    """One panel per metric, one bar per method (table: a row per method, a column per metric).
    Columns <metric>_low / <metric>_high, where present, are drawn as interval whiskers."""
    use_style()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.45 * len(table) + 1.8),
                             sharey=True)
    axes = [axes] if len(metrics) == 1 else axes
    hue = hue_col if hue_col and hue_col in table else None
    for ax, metric in zip(axes, metrics):
        sns.barplot(data=table, y=method_col, x=metric, hue=hue, dodge=False, ax=ax, orient="h",
                    legend=ax is axes[0] and hue is not None)
        if {f"{metric}_low", f"{metric}_high"} <= set(table):
            ax.errorbar(table[metric], range(len(table)), fmt="none", ecolor="0.25", capsize=3,
                        xerr=[table[metric] - table[f"{metric}_low"],
                              table[f"{metric}_high"] - table[metric]])
        values = table[[c for c in (metric, f"{metric}_low", f"{metric}_high") if c in table]]
        values = values.stack().dropna()
        if len(values):
            span = values.max() - values.min()
            ax.set_xlim(max(0, values.min() - max(span, 0.02) * 0.8),
                        values.max() + max(span, 0.02) * 0.4)
        for container in ax.containers:
            if hasattr(container, "patches"):
                ax.bar_label(container, fmt="%.3f", label_type="center", color="white",
                             fontsize=8, fontweight="bold")
        ax.set_xlabel(METRIC_LABELS.get(metric, metric))
        ax.set_ylabel("")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if hue and axes[0].get_legend() is not None:
        sns.move_legend(axes[0], "upper center", bbox_to_anchor=(0.5, 0), title=None,
                        bbox_transform=fig.transFigure, ncol=table[hue].nunique(), frameon=False)
    return fig


def plot_learning_curves(history: pd.DataFrame, x: str = "epoch", y: str = "val_rmse",
                         hue: str = "method", title: str = "", col: str | None = None):
    """Validation (or training) curves of several models on one axis — or one panel per value
    of `col`, sharing the y axis. An x column of whole numbers gets whole-number ticks."""
    from matplotlib.ticker import MaxNLocator

    use_style()
    panels = list(dict.fromkeys(history[col])) if col else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 if col is None else 4.6 * len(panels), 3.8),
                             sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        part = history if panel is None else history[history[col] == panel]
        sns.lineplot(data=part, x=x, y=y, hue=hue, marker="o", ax=ax,
                     legend=panel == panels[-1])
        ax.set_ylabel(METRIC_LABELS.get(y.removeprefix("val_"), y).replace("RMSE", "validation RMSE")
                      if y.startswith("val_") else y)
        if panel is not None:
            ax.set_title(str(panel))
        if pd.api.types.is_integer_dtype(part[x]):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title) if col else axes[0][0].set_title(title)
    fig.tight_layout()
    return fig


def plot_data_efficiency(points: pd.DataFrame, metrics=("rmse", "auc"), reference: dict | None = None,
                         note: str = "", title: str = ""):
    """The data-efficiency figure: one panel per metric, the metric against the fraction of
    training data (log axis), one line per method with the mean over seeds and a band of ± one
    standard deviation. `reference` maps a metric to (label, value): a dashed horizontal line."""
    use_style()
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.2 * len(metrics), 4.4))
    axes = [axes] if len(metrics) == 1 else axes
    for ax, metric in zip(axes, metrics):
        sns.lineplot(data=points, x="fraction", y=metric, hue="method", style="method",
                     markers=True, dashes=False, errorbar="sd", ax=ax, legend=ax is axes[-1])
        if reference and metric in reference:
            label, value = reference[metric]
            ax.axhline(value, color="0.2", linestyle="--", linewidth=1.2)
            ax.annotate(label, (0.01, value), xycoords=("axes fraction", "data"),
                        textcoords="offset points", xytext=(0, 4), fontsize=8, color="0.2")
        ax.set_xscale("log")
        ax.set_xlabel("fraction of the training examples (log scale)")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    if axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), title=None, frameon=False)
    if title:
        fig.suptitle(title)
    if note:
        fig.text(0.01, 0.005, note, fontsize=8, color="0.3", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.05 if note else 0, 1, 1))
    return fig


def plot_convergence(curves: pd.DataFrame, title: str = ""):
    """Validation RMSE against the number of training examples seen (log axis), one line per
    method: which one gets good sooner?"""
    use_style()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    sns.lineplot(data=curves, x="examples_seen", y="val_rmse", hue="method", marker="o", ax=ax,
                 errorbar=None)
    ax.set_xscale("log")
    ax.set_xlabel("training examples seen (log scale)")
    ax.set_ylabel("validation RMSE")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), title=None, frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
