"""Figures of the course, drawn with seaborn so that every notebook's plots look alike."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

METRIC_LABELS = {"rmse": "RMSE (lower is better)", "mae": "MAE (lower is better)",
                 "auc": "ROC-AUC (higher is better)", "mrr": "MRR (higher is better)",
                 "ndcg@5": "nDCG@5 (higher is better)", "ndcg@10": "nDCG@10 (higher is better)",
                 "vs_mf": "RMSE − MF's RMSE, 95% paired interval\n(below 0: better than MF)",
                 "step_s": "seconds per training step (lower is better)"}


def use_style() -> None:
    sns.set_theme(style="whitegrid", context="notebook")


def _values(table: pd.DataFrame, metric: str, method_col: str):
    """(value, low, high) columns of a metric; "vs_mf" is RMSE − MF's RMSE with the paired
    interval vs_mf_low/vs_mf_high that notebook 04 records."""
    if metric == "vs_mf":
        mf = table.loc[table[method_col] == "MF", "rmse"]
        value = table["rmse"] - (mf.iloc[0] if len(mf) else float("nan"))
        value = value.where(table["vs_mf_low"].notna())
        return value, table["vs_mf_low"], table["vs_mf_high"]
    low, high = (table.get(f"{metric}_{end}") for end in ("low", "high"))
    return table[metric], low, high


def far_out(values: pd.Series) -> pd.Series:
    """Rows whose value lies far from the others': beyond 3 interquartile ranges of them, and more
    than a quarter of their median away from it. Drawn at the panel's edge with their value, so
    that one row (zero-shot's RMSE near 2) does not squeeze the range the others differ in."""
    v = values.dropna()
    if len(v) < 4:
        return pd.Series(False, index=values.index)
    q1, median, q3 = v.quantile([0.25, 0.5, 0.75])
    spread = max(q3 - q1, 1e-9)
    outside = (values > q3 + 3 * spread) | (values < q1 - 3 * spread)
    return (outside & ((values - median).abs() > 0.25 * abs(median))).fillna(False)


CHANCE = {"auc": (0.5, "chance")}  # a reference line drawn in every panel of that metric


def plot_metric_bars(table: pd.DataFrame, metrics=("rmse", "mae", "auc"), title: str = "",
                     method_col: str = "method", hue_col: str | None = "family",
                     reference_lines: dict | None = None, users_col: str | None = None):
    """One panel per metric, one dot per method with its value written beside it, coloured by
    `hue_col`. Where the table has <metric>_low / <metric>_high the interval is drawn as a
    whisker (rows without one have none). A dot plot does not pretend a zero: differences of a
    few hundredths stay readable, and nothing looks twice as large as it is. The metric "vs_mf"
    draws notebook 04's paired interval of RMSE − MF's RMSE, with 0 marked. A row far from the
    others (`far_out`) is drawn at the panel's edge as a triangle with its value, the axis cut;
    in a panel where other rows have intervals, a row without one says so. `reference_lines`
    ({metric: (value, label)}; default: AUC 0.5, chance) draws a labelled dashed line. With
    `users_col`, a row scored on fewer users than the most is labelled "(N users)"."""
    reference_lines = CHANCE if reference_lines is None else reference_lines
    if users_col is not None:
        most = table[users_col].max()
        table = table.assign(**{method_col: [m if n == most else f"{m} ({n} users)"
                                             for m, n in zip(table[method_col], table[users_col])]})
    use_style()
    n = len(table)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.42 * n + 1.9), sharey=True,
                             squeeze=False)
    axes = axes[0]
    groups = list(dict.fromkeys(table[hue_col])) if hue_col and hue_col in table else [None]
    colours = dict(zip(groups, sns.color_palette(n_colors=max(len(groups), 1))))
    rows = range(n)
    for ax, metric in zip(axes, metrics):
        value, low, high = _values(table, metric, method_col)
        cut = far_out(value)
        if metric in reference_lines:  # a row on the reference line (AUC 0.5) is drawn on it, never cut
            cut &= (value - reference_lines[metric][0]).abs() > 1e-9
        if cut.any():  # the axis spans the other rows, their whiskers and any reference line
            inner = [x[~cut] for x in (value, low, high) if x is not None]
            lo_x, hi_x = min(x.min() for x in inner), max(x.max() for x in inner)
            if metric in reference_lines:
                lo_x, hi_x = min(lo_x, reference_lines[metric][0]), max(hi_x, reference_lines[metric][0])
            pad = 0.18 * (hi_x - lo_x or 1.0)
            lo_x, hi_x = lo_x - pad, hi_x + pad
            value, far = value.where(~cut), value.where(cut)
            for r, x in zip(rows, far):
                if pd.notna(x):
                    edge = hi_x if x > hi_x else lo_x
                    ax.scatter([edge], [r], marker=">" if x > hi_x else "<", s=60, color="0.25", zorder=4)
                    ax.annotate(f"{x:.3f} (off the axis)", (edge, r), xytext=(-6 if x > hi_x else 6, 5),
                                textcoords="offset points", fontsize=7.5, color="0.2",
                                ha="right" if x > hi_x else "left")
        for group in groups:
            mask = (table[hue_col] == group).to_numpy() if group is not None else [True] * n
            y = [r for r, m in zip(rows, mask) if m]
            v = value[mask]
            ax.scatter(v, y, color=colours[group], s=36, zorder=3, label=group)
            if low is not None and high is not None:
                lo, hi = low[mask], high[mask]
                ok = lo.notna() & hi.notna() & v.notna()
                if ok.any():  # drawn from low to high: a bootstrap interval need not contain the point
                    yy = [r for r, k in zip(y, ok) if k]
                    ax.hlines(yy, lo[ok], hi[ok], color=colours[group], lw=1.5, zorder=2)
                    ax.scatter(pd.concat([lo[ok], hi[ok]]), yy + yy, marker="|", s=60,
                               color=colours[group], zorder=2)
        for r, x in zip(rows, value):
            if pd.notna(x):
                ax.annotate(f"{x:+.3f}" if metric == "vs_mf" else f"{x:.3f}", (x, r), xytext=(5, 4),
                            textcoords="offset points", fontsize=7.5, color="0.2")
        if low is not None and high is not None and (low.notna() & high.notna()).any():
            for r, x, lo in zip(rows, value, low):
                if pd.notna(x) and pd.isna(lo):
                    ax.annotate("no interval", (x, r), xytext=(5, -9), textcoords="offset points",
                                fontsize=6.5, color="0.45", style="italic")
        if metric == "vs_mf":
            ax.axvline(0, color="0.3", lw=1, ls="--")
        if metric in reference_lines:
            at, label = reference_lines[metric]
            ax.axvline(at, color="0.45", lw=1, ls=":", zorder=1, label=f"_{label}")
            ax.annotate(label, (at, 0), xycoords=("data", "axes fraction"), xytext=(3, 3),
                        textcoords="offset points", fontsize=7.5, color="0.35")
        ax.margins(x=0.18)
        if cut.any():
            ax.set_xlim(lo_x, hi_x)
        ax.set_xlabel(METRIC_LABELS.get(metric, metric))
    axes[0].set_yticks(list(rows))
    axes[0].set_yticklabels(table[method_col])
    axes[0].set_ylim(n - 0.5, -0.5)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if len(groups) > 1:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=len(groups),
                   frameon=False)
    return fig


def plot_speedups(speed: pd.DataFrame, title: str = ""):
    """06's cache timing: seconds per step for each way of training (left), and the speed-up of
    the cache beside what the layer count predicts (right)."""
    use_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 0.55 * len(speed) + 2.0), sharey=True)
    y = list(range(len(speed)))
    left.scatter(speed.step_s, y, color="C0", s=40, zorder=3)
    for yy, x in zip(y, speed.step_s):
        left.annotate(f"{x:.2f} s", (x, yy), xytext=(5, 4), textcoords="offset points", fontsize=8)
    left.set_xlabel(METRIC_LABELS["step_s"])
    left.set_xlim(0, speed.step_s.max() * 1.3)
    right.scatter(speed["speed-up of the cache"], y, color="C1", s=40, zorder=3, label="measured")
    right.scatter(speed.theory, y, color="0.3", marker="|", s=300, zorder=3, label="layer count predicts")
    for yy, x in zip(y, speed["speed-up of the cache"]):
        right.annotate(f"{x:.1f}×", (x, yy), xytext=(5, 4), textcoords="offset points", fontsize=8)
    right.set_xlabel("speed-up of the cache (×)")
    right.set_xlim(0, max(speed["speed-up of the cache"].max(), speed.theory.max()) * 1.25)
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False, fontsize=8)
    left.set_yticks(y)
    left.set_yticklabels(speed.way)
    left.set_ylim(len(speed) - 0.5, -0.5)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_learning_curves(history: pd.DataFrame, x: str = "epoch", y: str = "val_rmse",
                         hue: str = "method", title: str = "", col: str | None = None,
                         ylabel: str | None = None, xlabel: str | None = None,
                         marks: pd.DataFrame | None = None, mark_label: str = "chosen"):
    """Validation (or training) curves of several models on one axis — or one panel per value
    of `col`, sharing the y axis. An x column of whole numbers gets whole-number ticks; the
    legend sits outside the axes, where it covers no data. `marks` (rows of `history`'s x, y and
    col columns) are ringed and labelled `mark_label`: the candidate a choice kept."""
    use_style()
    panels = list(dict.fromkeys(history[col])) if col else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 if col is None else 4.6 * len(panels), 3.8),
                             sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        part = history if panel is None else history[history[col] == panel]
        sns.lineplot(data=part, x=x, y=y, hue=hue, marker="o", ax=ax,
                     legend=panel == panels[-1])
        ax.set_ylabel(ylabel or (METRIC_LABELS.get(y.removeprefix("val_"), y).replace("RMSE", "validation RMSE")
                                 if y.startswith("val_") else y))
        if xlabel:
            ax.set_xlabel(xlabel)
        if panel is not None:
            ax.set_title(str(panel))
        if pd.api.types.is_integer_dtype(part[x]):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if marks is not None:
            here = marks if panel is None else marks[marks[col] == panel]
            ax.scatter(here[x], here[y], s=240, facecolors="none", edgecolors="0.1", linewidths=1.6, zorder=5)
            for _, m in here.iterrows():
                ax.annotate(mark_label, (m[x], m[y]), xytext=(9, -12), textcoords="offset points",
                            fontsize=8, color="0.1")
    if title:
        fig.suptitle(title) if col else axes[0][0].set_title(title)
    fig.tight_layout()  # before the legend moves out: the axes keep their size, the saved
    if axes[0][-1].get_legend() is not None:  # figure grows to take the legend in
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), title=None, frameon=False)
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
        fractions = sorted(points["fraction"].unique())
        ax.set_xticks(fractions)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{100 * x:g}%"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("share of the training examples (log scale)")
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
