"""Paper vs kit: the verdict rules, each finding on constructed records (one seed, a tie, a NaN
metric, a choice that validation and test would make differently), and README generated from
figures/ (README must be what `make report` writes)."""

import numpy as np
import pytest

from llmrec.course import report
from llmrec.course.papers import paper_findings
from llmrec.course.report import VERDICTS, claims, readme_results, update_readme, verdict


@pytest.mark.parametrize("value, low, high, direction, margin, expected", [
    (-0.02, -0.03, -0.01, -1, 0, "reproduced"),          # interval wholly below zero, as the paper says
    (-0.0003, -0.005, 0.004, -1, 0, "inconclusive"),     # right side, but the interval holds zero
    (0.0003, -0.004, 0.005, -1, 0, "inconclusive"),      # the sign of a point inside says nothing
    (-0.02, None, None, -1, 0, "direction only"),        # right side, no interval
    (-0.02, float("nan"), float("nan"), -1, 0, "direction only"),  # a NaN interval is no interval
    (0.01, None, None, -1, 0, "opposite direction only"),
    (0.02, 0.01, 0.03, -1, 0, "not reproduced"),         # interval wholly on the wrong side
    (0.06, 0.05, 0.07, +1, 0, "reproduced"),             # "higher is the paper's side"
    (0.004, -0.002, 0.008, -1, 0.01, "reproduced"),      # "matches": no worse than the margin
    (0.02, 0.015, 0.03, -1, 0.01, "not reproduced"),     # worse by more than the margin
    (0.008, -0.004, 0.02, -1, 0.01, "inconclusive"),
    (None, None, None, +1, 0, "not run in this preset"),
    (float("nan"), None, None, -1, 0, "no result"),      # it ran and gave NaN: not "not run"
])
def test_verdict_rules(value, low, high, direction, margin, expected):
    assert verdict(value, low, high, direction, margin) == expected
    assert expected in VERDICTS


def test_an_inconclusive_row_says_what_width_would_decide_it():
    text = report.deciding_width(-0.0003, -0.005, 0.004)
    assert "±0.0003" in text and "±0.0045" in text and "225× as many test units" in text


def test_without_records_every_claim_is_not_run():
    table = claims({})
    assert sorted(table.claim) == sorted(paper_findings())
    assert set(table.verdict) == {"not run in this preset"}


# --------------------------------------------------------------------------- Kang et al.

def _kang(reg_low=-0.2, reg_high=-0.05, tm_low=-0.03, tm_high=0.005, zs=(0.9, 1.2), reg_rmse=0.97):
    table = [{"method": "MF", "family": "trained on ratings", "rmse": 0.95},
             {"method": "Transformer+MLP", "family": "trained on ratings", "rmse": 0.98},
             {"method": "lm fine-tuned classification", "family": "language model", "rmse": 1.10},
             {"method": "lm fine-tuned regression", "family": "language model", "rmse": reg_rmse},
             {"method": "lm other regression", "family": "language model", "rmse": 0.90},
             {"method": "lm on MF (the kit's)", "family": "LM + MF (the kit's)", "rmse": 0.85}]
    versus = [{"method": r["method"], "rmse": r["rmse"], "vs_transformer_low": tm_low, "vs_transformer_high": tm_high}
              for r in table[3:]]
    return {"04_flan_t5_regression": {
        "table": table, "versus_mf": versus,
        # validation prefers the regression row, test the other: validation decides
        "validation_rmse": {"lm fine-tuned regression": 0.95, "lm other regression": 0.99, "lm on MF (the kit's)": 0.80},
        "regression_vs_classification": {"low": reg_low, "high": reg_high, "verdict": "…"},
        "zero_shot_vs_mf": {"zero_shot": 2.0, "mf": 0.95, "low": zs[0], "high": zs[1], "n_users": 100}}}


def test_kang_claims_follow_their_paired_intervals():
    table = claims(_kang()).set_index("claim")
    assert table.loc["kang2023.regression_beats_classification", "verdict"] == "reproduced"
    assert table.loc["kang2023.regression_beats_classification", "value"] == pytest.approx(-0.13)
    assert table.loc["kang2023.zero_shot_worse_than_mf", "verdict"] == "reproduced"
    assert table.loc["kang2023.zero_shot_worse_than_mf", "value"] == pytest.approx(1.05)
    assert "100 test users" in table.loc["kang2023.zero_shot_worse_than_mf", "interval"]
    # "matches or beats": the upper bound 0.005 is within the 0.01 margin
    row = table.loc["kang2023.fine_tuned_matches_transformer"]
    assert row.verdict == "reproduced" and row.value == pytest.approx(-0.01)
    assert row.why.startswith("lm fine-tuned regression")  # chosen on validation, not the test's 0.90 row
    assert "paired bootstrap" in row.interval
    table = claims(_kang(reg_low=0.01, reg_high=0.2, tm_low=0.02, tm_high=0.05)).set_index("claim")
    assert table.loc["kang2023.regression_beats_classification", "verdict"] == "not reproduced"
    assert table.loc["kang2023.fine_tuned_matches_transformer", "verdict"] == "not reproduced"


def test_a_tie_is_inconclusive_and_a_nan_is_no_result():
    table = claims(_kang(reg_low=-0.011, reg_high=0.011, tm_low=-0.02, tm_high=0.03)).set_index("claim")
    assert table.loc["kang2023.regression_beats_classification", "verdict"] == "inconclusive"
    assert "deciding it needs" in table.loc["kang2023.regression_beats_classification", "why"]
    assert table.loc["kang2023.fine_tuned_matches_transformer", "verdict"] == "inconclusive"
    table = claims(_kang(reg_rmse=float("nan"))).set_index("claim")
    assert table.loc["kang2023.regression_beats_classification", "verdict"] == "no result"


def test_zero_shot_without_a_paired_interval_is_not_run():
    records = _kang()
    del records["04_flan_t5_regression"]["zero_shot_vs_mf"]
    assert claims(records).set_index("claim").verdict["kang2023.zero_shot_worse_than_mf"] == "not run in this preset"


# --------------------------------------------------------------------------- ONCE

def _once(n_seeds=2, shift=0.05, noise=0.3, val_prefers="Original NAML", seed_spread=0.0):
    """Originals and DIRE rows on 400 impressions, [seeds, impressions] per method; DIRE rows
    `shift` above NRMS on average; each seed of a method moves by up to `seed_spread` as a whole."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.9, 400)
    per = {"Original NAML": base - 0.02 + rng.normal(0, noise, 400),     # the lower on test
           "Original NRMS": base + rng.normal(0, noise, 400),
           "DIRE small (k=0)": base + shift + (e := rng.normal(0, noise, 400)),
           "DIRE big (k=1)": base + shift + e + np.resize([0.05, -0.05], 400),  # ties with small, paired
           "DIRE big (k=0)": base + shift - 0.03 + e}  # the larger encoder's frozen row
    offsets = np.linspace(-seed_spread, seed_spread, n_seeds) if n_seeds > 1 else np.zeros(1)
    per = {m: np.stack([p + o for o in offsets]) for m, p in per.items()}
    val = {m: 0.6 for m in per} | {val_prefers: 0.7, "DIRE big (k=1)": 0.65}
    rows = [{"method": m, "family": "Original" if m.startswith("Original") else "DIRE (pretrained encoder)",
             "auc": float(np.mean(p)), "auc_std": float("nan") if n_seeds == 1 else 0.01, "val_auc": val[m],
             "model": None if m.startswith("Original") else m.split()[1], "seeds": n_seeds,
             "k": None if m.startswith("Original") else int(m[-2]), "lora": False} for m, p in per.items()]
    speed = [{"way": "cached (top k trained)", "speed-up of the cache": 1.0, "theory": 1.0, "of theory": 1.0,
              "of theory low": 1.0, "of theory high": 1.0},
             {"way": "frozen, no cache", "speed-up of the cache": 1.0, "theory": 2.67, "of theory": 0.37,
              "of theory low": 0.35, "of theory high": 0.4},
             {"way": "full fine-tuning", "speed-up of the cache": 7.1, "theory": 6.0, "of theory": 7.1 / 6,
              "of theory low": 1.1, "of theory high": 1.27}]
    return {"06_once_dire": {"summary": rows, "per_impression_auc": {m: p.tolist() for m, p in per.items()},
                             "chosen": {"big": {"k": 1, "lora": False}, "small": {"k": 0, "lora": False}},
                             "train_samples": 1500, "epochs": 1, "cache_speed": speed, "bootstrap_seed": 0}}


SIZES = {"small": 23e6, "big": 135e6}


def test_once_claims_are_paired_over_impressions_and_choose_on_validation():
    table = claims(_once(), sizes=SIZES).set_index("claim")
    row = table.loc["once2024.dire_beats_original"]
    assert row.verdict == "reproduced" and "400 test impressions" in row.interval and "seeds" in row.interval
    # paired with NAML (validation's choice), not NRMS (the test's): the gap is the larger one
    assert row.why.startswith("DIRE big (k=1)") and "vs Original NAML" in row.why and row.value > 0.06
    assert "NAML's user encoder" in row.why and "1,500 training samples" in row.why
    # the largest encoder's frozen row, fixed by size — not the row a test result picks
    assert table.loc["once2024.frozen_is_strong", "why"].startswith("DIRE big (k=0) (135.0M")
    assert table.loc["once2024.larger_encoder_better", "verdict"] == "inconclusive"    # same shift: a tie


def test_the_seeds_spread_widens_the_interval_and_one_seed_still_has_one():
    def width(records):
        row = claims(records, sizes=SIZES).set_index("claim").loc["once2024.dire_beats_original"]
        return row.high - row.low, row.verdict

    one, verdict_one = width(_once(n_seeds=1))
    assert verdict_one == "reproduced" and one > 0           # one seed: the impressions still give an interval
    steady, _ = width(_once(n_seeds=2))
    spread, _ = width(_once(n_seeds=2, seed_spread=0.05))   # seeds that disagree by ±0.05 as a whole
    assert spread > 1.5 * steady


def test_a_small_difference_is_not_reproduced_by_its_point():
    # 0.002 of AUC on 400 noisy impressions: the interval holds zero (it used to read "reproduced")
    table = claims(_once(shift=0.002, val_prefers="Original NRMS"), sizes=SIZES).set_index("claim")
    assert table.loc["once2024.dire_beats_original", "verdict"] == "inconclusive"


def test_nan_survives_the_json_record_as_no_result():
    from llmrec.course.record import _clean

    records = _clean(_kang(reg_rmse=float("nan")) | _once())
    records["06_once_dire"]["cache_speed"][2]["of theory low"] = None  # one timed step: no interval
    table = claims(records, sizes=SIZES).set_index("claim")
    assert table.loc["kang2023.regression_beats_classification", "verdict"] == "no result"
    assert table.loc["once2024.cache_compute_share", "verdict"] == "direction only"
    for row in records["06_once_dire"]["summary"]:
        row["val_auc"] = None  # nothing to choose by: never silently the NaN row
    assert claims(records, sizes=SIZES).set_index("claim").verdict["once2024.dire_beats_original"] == "no result"


def test_once_without_per_impression_aucs_is_not_run_and_the_cache_is_graded_against_full_tuning():
    records = _once()
    del records["06_once_dire"]["per_impression_auc"]
    table = claims(records, sizes=SIZES).set_index("claim")
    for fid in ("once2024.dire_beats_original", "once2024.frozen_is_strong", "once2024.larger_encoder_better"):
        assert table.loc[fid, "verdict"] == "not run in this preset"
    cache = table.loc["once2024.cache_compute_share"]
    assert cache.verdict == "reproduced" and cache.value == pytest.approx(7.1 / 6 - 1)  # not the 0.37 of "no cache"
    records["06_once_dire"]["cache_speed"][2].update({"of theory": 0.5, "of theory low": 0.45, "of theory high": 0.55})
    assert claims(records).set_index("claim").verdict["once2024.cache_compute_share"] == "not reproduced"


# --------------------------------------------------------------------------- README

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
    mf_row = next(line for line in readme_results(tmp_path).splitlines() if line.startswith("| MF |"))
    assert "| 0.500 |" in mf_row and readme_results(tmp_path) != text


def test_readme_reading_is_worded_by_the_intervals(tmp_path):
    """README's reading and first-screen summary are generated: a row whose interval against MF
    moves across 0 changes its words, and every claim appears under its verdict."""
    import shutil

    import pandas as pd

    from llmrec.course.report import readme_reading, readme_summary
    from llmrec.paths import reference_figures_dir

    for p in reference_figures_dir().glob("*.csv"):
        shutil.copy(p, tmp_path / p.name)
    t = pd.read_csv(tmp_path / "04_results.csv")
    row = t[(t.method != "MF") & t.vs_mf_low.notna()].method.iloc[0]
    t.loc[t.method == row, ["vs_mf_low", "vs_mf_high"]] = -0.02, -0.01
    t.to_csv(tmp_path / "04_results.csv", index=False)
    assert f"{row} is better than MF (paired 95% interval" in "\n".join(readme_reading(tmp_path))
    t.loc[t.method == row, ["vs_mf_low", "vs_mf_high"]] = -0.02, 0.01
    t.to_csv(tmp_path / "04_results.csv", index=False)
    assert f"{row} is not distinguishable from MF" in "\n".join(readme_reading(tmp_path))
    summary = readme_summary(tmp_path)
    for says, given in pd.read_csv(tmp_path / "07_claims.csv")[["paper says", "verdict"]].itertuples(index=False):
        line = next(x for x in summary.splitlines() if x.startswith(f"- **{given}**"))
        assert says in line


def test_zero_shot_claim_reads_the_way_whose_answers_are_ratings():
    """03 scores zero-shot two ways; the claim reads the one where the rating tokens hold the most
    probability (chosen without a rating), whatever the test RMSEs say, and names the other."""
    records = _kang()
    records["04_flan_t5_regression"]["zero_shot_vs_mf"] = {
        "zero-shot": {"zero_shot": 1.98, "mf": 0.95, "low": 0.7, "high": 1.2, "n_users": 100, "rating_token_share": 0.09},
        "zero-shot, answer opened with 'Rating:'": {"zero_shot": 1.08, "mf": 0.95, "low": 0.03, "high": 0.25,
                                                     "n_users": 100, "rating_token_share": 0.97}}
    row = claims(records).set_index("claim").loc["kang2023.zero_shot_worse_than_mf"]
    assert row.value == pytest.approx(0.13) and row.verdict == "reproduced"
    assert row.why.startswith("zero-shot, answer opened with 'Rating:' (the rating tokens hold 97%")
    assert "zero-shot (the rating tokens hold 9% of its next-token probability): 1.980" in row.why
    # the opened answer, now within MF's noise: inconclusive, although the other way is far worse
    records["04_flan_t5_regression"]["zero_shot_vs_mf"]["zero-shot, answer opened with 'Rating:'"].update(low=-0.05, high=0.2)
    assert claims(records).set_index("claim").loc["kang2023.zero_shot_worse_than_mf"].verdict == "inconclusive"


def test_readme_prose_states_the_laptop_presets_window():
    # the language-model table names the packed window and the context before a target: the preset's
    import yaml

    from llmrec.paths import repo_root

    text = (repo_root() / "README.md").read_text()
    laptop = yaml.safe_load((repo_root() / "presets" / "laptop.yaml").read_text())["notebooks"]["03_flan_t5_classification"]
    assert f"last {laptop['WINDOW']} training ratings" in text
    assert f"every rating after the first {laptop['MIN_CONTEXT']} a target" in text


@pytest.mark.parametrize("damage, message", [
    (lambda text: text[: len(text) - 7], r"ends in the middle of a line"),
    (lambda text: text.replace("\n", "\n,,extra,field,,,,,,,,,,,,,,,\n", 1).rstrip("\n") + "\n", r"line 2 has \d+ fields, its header \d+"),
])
def test_report_refuses_a_damaged_reference_csv_and_writes_nothing(tmp_path, monkeypatch, damage, message):
    """A reference CSV cut short was published: README rewritten with the rows dropped."""
    import shutil

    from llmrec.paths import reference_figures_dir, repo_root

    fig = tmp_path / "figures"
    shutil.copytree(reference_figures_dir(), fig)
    (fig / "04_results.csv").write_text(damage((fig / "04_results.csv").read_text()))
    readme = tmp_path / "README.md"
    readme.write_text((repo_root() / "README.md").read_text())
    before = readme.read_text()
    monkeypatch.setattr(report, "reference_figures_dir", lambda: fig)
    monkeypatch.setattr(report, "repo_root", lambda: tmp_path)
    with pytest.raises(report.ReportError, match=message) as err:
        report.update_readme()
    assert "04_results.csv" in str(err.value) and "git checkout figures/" in str(err.value)
    assert readme.read_text() == before
