"""What the course's figures mark: axes cut for a far row, notes where an interval is missing."""

import matplotlib
import pandas as pd

from llmrec.plotting import far_out, plot_metric_bars

matplotlib.use("Agg")

TABLE = pd.DataFrame({
    "method": ["global average", "MF", "LM zero-shot", "LM few-shot", "LM fine-tuned"],
    "family": ["heuristic", "trained", "LM", "LM", "LM"],
    "rmse": [1.110, 0.947, 1.980, 1.066, 0.999],
    "rmse_low": [1.05, 0.89, 1.817, None, 0.941], "rmse_high": [1.17, 1.00, 2.131, None, 1.057],
    "mae": [0.93, 0.75, 1.74, 0.91, 0.79], "auc": [0.5, 0.77, 0.57, 0.69, 0.73]})


def test_a_far_row_is_drawn_at_the_edge_and_the_axis_keeps_the_others():
    assert far_out(TABLE.rmse).tolist() == [False, False, True, False, False]
    assert not far_out(pd.Series([1.0, 1.1, 1.2])).any()  # too few rows to call one far
    fig = plot_metric_bars(TABLE)
    rmse_ax = fig.axes[0]
    left, right = rmse_ax.get_xlim()
    assert right < 1.5 and left < 0.89  # zero-shot's 1.98 (and its whisker) cut, MF's whisker kept
    texts = [t.get_text() for t in rmse_ax.texts]
    assert "1.980 (off the axis)" in texts
    assert texts.count("no interval") == 1  # few-shot: the only row without one
    assert "no interval" not in [t.get_text() for t in fig.axes[2].texts]  # AUC: no row has one


def test_no_row_is_cut_when_none_is_far():
    fig = plot_metric_bars(TABLE[TABLE.method != "LM zero-shot"])
    assert not any("off the axis" in t.get_text() for t in fig.axes[0].texts)


def test_auc_panels_carry_a_chance_line():
    fig = plot_metric_bars(TABLE)
    auc_ax = fig.axes[2]
    assert any(list(line.get_xdata()) == [0.5, 0.5] for line in auc_ax.lines)
    assert "chance" in [t.get_text() for t in auc_ax.texts]
    assert not any(list(line.get_xdata()) == [0.5, 0.5] for line in fig.axes[0].lines)  # RMSE: none


def test_the_chosen_candidate_is_ringed_in_its_panel_only():
    from llmrec.plotting import plot_learning_curves
    long = pd.DataFrame({"k": [0, 1, 0, 1], "AUC": [0.60, 0.62, 0.58, 0.63],
                         "set": ["validation", "validation", "test", "test"], "encoder": ["a"] * 4})
    chosen = long[(long.set == "validation") & (long.k == 1)]
    fig = plot_learning_curves(long, x="k", y="AUC", hue="encoder", col="set", marks=chosen)
    val_ax, test_ax = fig.axes[:2]
    assert [t.get_text() for t in val_ax.texts] == ["chosen"] and val_ax.texts[0].xy == (1, 0.62)
    assert [t.get_text() for t in test_ax.texts] == []


def test_a_row_only_a_little_apart_is_not_cut():
    # smoke-sized MAEs: 0.857 is beyond 3 IQRs of a tight cluster, but only 0.22 from its median
    values = pd.Series([1.081, 1.185, 0.857, 0.878, 1.072, 1.050, 1.074, 1.160, 1.156, 1.054, 1.142])
    assert not far_out(values).any()


def test_the_chance_line_stays_when_a_row_sits_on_it():
    # the reference 02 AUCs: the global average's 0.5 lies beyond the others' fences, but it is on
    # the chance line: drawn there, with the line inside the axis
    aucs = [0.5, 0.7053, 0.6784, 0.7435, 0.7671, 0.7489, 0.7477]
    table = pd.DataFrame({"method": [f"m{i}" for i in range(7)], "family": ["f"] * 7, "rmse": [1.0] * 7,
                          "mae": [0.8] * 7, "auc": aucs})
    auc_ax = plot_metric_bars(table).axes[2]
    left, right = auc_ax.get_xlim()
    assert left < 0.5 < right and "0.500 (off the axis)" not in [t.get_text() for t in auc_ax.texts]
