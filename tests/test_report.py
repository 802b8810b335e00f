"""Paper vs kit: the verdict rules, the claims on constructed records, and README generated from
figures/ (README must be what `make report` writes)."""

import pytest

from llmrec.papers import paper_findings
from llmrec.report import claims, readme_results, update_readme, verdict


@pytest.mark.parametrize("value, low, high, direction, expected", [
    (-0.02, -0.03, -0.01, -1, "reproduced"),        # interval wholly below zero, as the paper says
    (-0.001, -0.005, 0.004, -1, "direction only"),  # right side, interval across zero
    (-0.02, None, None, -1, "direction only"),      # right side, no interval
    (0.01, -0.002, 0.03, -1, "not reproduced"),     # wrong side
    (0.02, 0.01, 0.03, -1, "not reproduced"),       # interval wholly on the wrong side
    (0.06, 0.05, 0.07, +1, "reproduced"),           # "higher is the paper's side"
    (None, None, None, +1, "not run in this preset"),
    (float("nan"), None, None, -1, "not run in this preset"),
])
def test_verdict_rules(value, low, high, direction, expected):
    assert verdict(value, low, high, direction) == expected


def test_without_records_every_claim_is_not_run():
    table = claims({})
    assert sorted(table.claim) == sorted(paper_findings())
    assert set(table.verdict) == {"not run in this preset"}


def _records(reg_low, reg_high):
    base = [{"method": "MF", "family": "trained on ratings", "rmse": 0.95},
            {"method": "Transformer+MLP", "family": "trained on ratings", "rmse": 0.98}]
    lm = [{"method": "lm fine-tuned classification", "family": "language model", "rmse": 1.10},
          {"method": "lm fine-tuned regression", "family": "language model", "rmse": 0.97}]
    return {"02_baselines": {"MF": {"rmse": 0.95}},
            "03_flan_t5_classification": {"results": {"zero-shot": {"rmse": 2.0}}},
            "04_flan_t5_regression": {"table": base + lm, "regression_vs_classification":
                                      {"low": reg_low, "high": reg_high, "verdict": "…"}}}


def test_claims_follow_the_recorded_intervals():
    table = claims(_records(-0.2, -0.05)).set_index("claim")
    assert table.loc["kang2023.regression_beats_classification", "verdict"] == "reproduced"
    assert table.loc["kang2023.regression_beats_classification", "value"] == pytest.approx(-0.13)
    assert table.loc["kang2023.zero_shot_worse_than_mf", "verdict"] == "direction only"  # no interval
    assert table.loc["kang2023.fine_tuned_matches_transformer", "verdict"] == "direction only"  # 0.97 < 0.98
    table = claims(_records(0.01, 0.2)).set_index("claim")
    assert table.loc["kang2023.regression_beats_classification", "verdict"] == "not reproduced"


def test_readme_is_what_the_reference_figures_generate():
    # if this fails: `make report` (README's results section is written from figures/)
    assert update_readme(check=True)


def test_readme_section_has_a_row_per_method_and_changes_with_the_figures(tmp_path):
    import shutil

    import pandas as pd

    from llmrec.paths import reference_figures_dir

    for p in reference_figures_dir().glob("*.csv"):
        shutil.copy(p, tmp_path / p.name)
    text = readme_results(tmp_path)
    for method in pd.read_csv(tmp_path / "04_results.csv").method:
        assert f"| {method} |" in text
    t = pd.read_csv(tmp_path / "04_results.csv")
    t.loc[t.method == "MF", "rmse"] = 0.5
    t.to_csv(tmp_path / "04_results.csv", index=False)
    assert "| MF | 0.500 |" in readme_results(tmp_path) and readme_results(tmp_path) != text
