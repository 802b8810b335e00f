"""Each rule that writes a comparative word into a notebook, fed numbers on both sides."""

import math

import numpy as np
import pytest

from llmrec.metrics import against
from llmrec.readings import auc_against_chance, direction, paired, seeds_compare


@pytest.mark.parametrize("low, high, where", [(-0.2, -0.01, "below"), (0.01, 0.3, "above"), (-0.01, 0.01, "holds"),
                                              (-0.1, 0.0, "holds"), (0.0, 0.1, "holds"), (math.nan, 0.1, "nan")])
def test_direction_is_read_from_the_whole_interval(low, high, where):
    assert direction(low, high) == where


def test_an_inverted_interval_is_refused():
    with pytest.raises(ValueError, match="low end"):
        direction(0.2, 0.1)


def test_paired_words_follow_the_interval_not_the_point():
    assert paired(-0.151, -0.071, "the global average").startswith("better than the global average (paired 95%")
    assert paired(0.021, 0.083, "MF").startswith("worse than MF")
    # a method whose point is better but whose interval holds 0 is not called better
    assert paired(-0.050, 0.004, "the global average").startswith("not distinguishable from the global average")
    assert "−0.050 … +0.004" in paired(-0.050, 0.004, "MF")
    assert paired(math.nan, math.nan, "MF").startswith("not compared")
    assert against(-0.05, 0.004).startswith("not distinguishable") and against(-0.2, -0.1).startswith("better")


def test_auc_is_above_chance_only_when_its_interval_is():
    assert auc_against_chance(0.66, 0.79).startswith("ranks liked ratings above")
    assert auc_against_chance(0.45, 0.69).startswith("cannot be told from chance")
    assert auc_against_chance(math.nan, 0.69) == "has no AUC interval"
    assert auc_against_chance(0.30, 0.45).startswith("ranks liked ratings below")


def test_seeds_compare_says_lower_only_when_every_seed_is():
    assert seeds_compare([0.99, 1.00], [1.02, 1.03], "LM", "MF").startswith("LM lower in every seed")
    assert seeds_compare([1.02, 1.03], [0.99, 1.00], "LM", "MF").startswith("MF lower in every seed")
    assert seeds_compare([0.99, 1.025], [1.02, 1.03], "LM", "MF").startswith("the seeds overlap")
    assert "one seed" in seeds_compare([0.99], [1.02], "LM", "MF")
    with pytest.raises(ValueError, match="at least one seed"):
        seeds_compare(np.array([]), [1.0], "LM", "MF")


def test_small_shares_and_metric_lines_read_plainly():
    from llmrec.readings import metrics_line, share
    assert share(0.612) == "61.2%" and share(0.00004) == "under 0.1%"
    assert metrics_line({"rmse": np.float64(0.99911), "auc": 0.7}) == "RMSE 0.9991, AUC 0.7000"
