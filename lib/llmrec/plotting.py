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
    """One panel per metric, one bar per method (table: a row per method, a column per metric)."""
    use_style()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.45 * len(table) + 1.8),
                             sharey=True)
    axes = [axes] if len(metrics) == 1 else axes
    hue = hue_col if hue_col and hue_col in table else None
    for ax, metric in zip(axes, metrics):
        sns.barplot(data=table, y=method_col, x=metric, hue=hue, dodge=False, ax=ax, orient="h",
                    legend=ax is axes[-1] and hue is not None)
        values = table[metric].dropna()
        if len(values):
            span = values.max() - values.min()
            ax.set_xlim(max(0, values.min() - max(span, 0.02) * 0.8),
                        values.max() + max(span, 0.02) * 0.4)
        for container in ax.containers:
            ax.bar_label(container, fmt="%.3f", padding=2, fontsize=8)
        ax.set_xlabel(METRIC_LABELS.get(metric, metric))
        ax.set_ylabel("")
    if hue and axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "lower right", title=None, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_learning_curves(history: pd.DataFrame, x: str = "epoch", y: str = "val_rmse",
                         hue: str = "method", title: str = ""):
    """Validation (or training) curves of several models on one axis."""
    use_style()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    sns.lineplot(data=history, x=x, y=y, hue=hue, marker="o", ax=ax)
    ax.set_ylabel(METRIC_LABELS.get(y.removeprefix("val_"), y).replace("RMSE", "validation RMSE")
                  if y.startswith("val_") else y)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
