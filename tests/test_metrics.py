import math

import numpy as np
import pytest

from llmrec.metrics import bootstrap_interval, mae, rating_metrics, rmse, roc_auc


def test_rmse_and_mae_by_hand():
    y, p = [1, 3, 5], [2, 3, 3]
    assert rmse(y, p) == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert mae(y, p) == pytest.approx(1.0)


def test_predictions_are_clipped_to_the_rating_scale():
    assert rmse([5, 1], [7, -2]) == 0.0


def test_auc_by_hand():
    # liked (>= 4): items 2 and 3. Pairs (liked, not liked) ranked right: (2>0),(2>1),(3>0); (3<1)
    y, s = [1, 3, 4, 5], [1.0, 4.0, 4.5, 2.0]
    assert roc_auc(y, s) == pytest.approx(3 / 4)
    assert roc_auc([1, 2, 3], [1, 2, 3]) != roc_auc([1, 2, 3], [1, 2, 3])  # NaN: one class only
    assert rating_metrics([1, 5], [3, 3])["auc"] == 0.5  # a constant ranks nothing


def test_metric_input_errors():
    with pytest.raises(ValueError, match="shape"):
        rmse([1, 2], [1])
    with pytest.raises(ValueError, match="NaN"):
        rmse([1, 2], [1, np.nan])
    with pytest.raises(ValueError, match="empty"):
        mae([], [])


def test_bootstrap_interval_contains_the_estimate_and_the_paired_difference_is_zero():
    rng = np.random.default_rng(0)
    y = rng.integers(1, 6, 300)
    p = np.clip(y + rng.normal(0, 1, 300), 1, 5)
    low, high = bootstrap_interval(y, p, n_boot=300)
    assert low < rmse(y, p) < high
    assert bootstrap_interval(y, p, baseline=p, n_boot=50) == (0.0, 0.0)


def test_bootstrap_resamples_users_when_users_have_several_test_ratings():
    # global_time splits give a user several test ratings, whose errors go together: resampling
    # ratings as if independent would understate the interval; resampling users does not
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(40), 20)
    bias = rng.normal(0, 1.0, 40)[users]  # each user's errors share a bias
    y = rng.integers(1, 6, len(users)).astype(float)
    p = y + bias + rng.normal(0, 0.1, len(users))
    low, high = bootstrap_interval(y, p, n_boot=300)
    ulow, uhigh = bootstrap_interval(y, p, groups=users, n_boot=300)
    assert uhigh - ulow > 2 * (high - low)
    # one rating per user: the same draws, the same interval as resampling ratings
    one = np.arange(len(y))
    assert bootstrap_interval(y, p, groups=one, n_boot=50) == bootstrap_interval(y, p, n_boot=50)


def test_versus_table_pairs_every_method_with_every_opponent():
    from llmrec.metrics import versus
    rng = np.random.default_rng(0)
    y = rng.integers(1, 6, 300).astype(float)
    good, noise = y + rng.normal(0, 0.3, 300), y + rng.normal(0, 3.0, 300)
    table = versus(y, {"good": good, "noise": noise}, {"global": np.full(300, y.mean())}, n_boot=200)
    assert list(table.columns) == ["method", "rmse", "vs_global_low", "vs_global_high"]
    row = table.set_index("method")
    assert row.loc["good", "vs_global_high"] < 0 < row.loc["noise", "vs_global_low"]
    assert row.loc["good", "rmse"] == rmse(y, good)
    # the same resamples as bootstrap_interval with that baseline
    assert (row.loc["good", "vs_global_low"], row.loc["good", "vs_global_high"]) == \
        bootstrap_interval(y, good, baseline=np.full(300, y.mean()), n_boot=200)


def test_seeds_interval_pairs_the_units_and_needs_two():
    from llmrec.metrics import seeds_interval as mean_interval  # one seed: an interval of a mean

    rng = np.random.default_rng(0)
    shared = rng.normal(0, 1, 500)  # what both methods share per impression: pairing removes it
    a, b = 0.7 + shared + rng.normal(0, 0.05, 500), 0.6 + shared + rng.normal(0, 0.05, 500)
    low, high = mean_interval(a, b)
    assert low < np.mean(a - b) < high and 0.08 < low and high < 0.12
    unpaired = mean_interval(a)
    assert unpaired[1] - unpaired[0] > 10 * (high - low)
    assert all(np.isnan(mean_interval([0.5])))
    with pytest.raises(ValueError, match="same units"):
        mean_interval([1.0, 2.0], [1.0])
    # seeds that disagree as a whole widen it; seeds that agree do not
    agree = mean_interval(np.stack([a, a]), np.stack([b, b]))
    disagree = mean_interval(np.stack([a - 0.05, a + 0.05]), np.stack([b, b]))
    assert agree == pytest.approx((low, high), abs=0.01) and disagree[1] - disagree[0] > 2 * (high - low)


def test_ratio_interval_pairs_timed_steps():
    from llmrec.metrics import ratio_interval

    cached = np.array([0.3, 0.5, 0.3, 0.45, 0.4])
    ratio, low, high = ratio_interval(6 * cached, cached)  # every batch costs six times as much
    assert ratio == pytest.approx(6) and low == pytest.approx(6) and high == pytest.approx(6)
    ratio, low, high = ratio_interval(6 * cached * [1.05, 0.95, 1.0, 1.02, 0.98], cached)
    assert low < ratio < high and 5.5 < low and high < 6.5
    assert np.isnan(ratio_interval([1.0], [0.5])[1])
    with pytest.raises(ValueError, match="as many steps"):
        ratio_interval([1.0, 2.0], [1.0])
