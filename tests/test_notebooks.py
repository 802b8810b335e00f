"""Notebooks 00-06 through papermill with the smoke preset, then the files they wrote."""

import math
import shutil

import numpy as np
import pandas as pd
import pytest

from llmrec.course.record import load_metrics
from llmrec.course.runner import run_course
from llmrec.paths import results_dir, run_figures_dir, runs_dir

pytestmark = pytest.mark.notebook
PRESET = "smoke"


def _figures_exist(names, min_bytes):
    for name in names:
        assert (run_figures_dir(PRESET) / f"{name}.png").stat().st_size > min_bytes, name


# Metric names whose value must be a finite number wherever they appear in a record; other
# fields may be None by design (no GPU, no MF interval on a baseline row, no k for NAML).
METRICS = {"rmse", "mae", "auc", "mrr", "ndcg@5", "ndcg@10", "val_rmse", "val_auc"}


def _finite(value, key=None):
    """True if every number is finite and no metric is missing. record._clean writes NaN and
    infinity as null, so a metric that is None was NaN or infinite."""
    if isinstance(value, dict):
        return all(_finite(v, k) for k, v in value.items())
    if isinstance(value, list):
        return all(_finite(v, key) for v in value)
    if value is None:
        return key not in METRICS
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def test_the_finiteness_check_can_fail():
    assert _finite({"table": [{"rmse": 1.0, "vs_mf_low": None}], "gpu": None})
    assert not _finite({"table": [{"rmse": None}]})  # a NaN metric, as recorded
    assert not _finite({"runs": [{"auc": float("inf")}]})


def test_every_notebook_ran_and_recorded(smoke_run):
    assert [p.name for p in smoke_run] == [
        "00_setup_check.ipynb", "01_data_prep.ipynb", "02_baselines.ipynb",
        "03_flan_t5_classification.ipynb", "04_flan_t5_regression.ipynb",
        "05_data_efficiency.ipynb", "06_once_dire.ipynb", "07_report.ipynb"]
    for path in smoke_run:
        assert path.parent == runs_dir(PRESET)
        record = load_metrics(path.stem, PRESET)
        assert record["preset"] == PRESET
        assert record["versions"]["torch"].startswith("2.13")
        assert _finite(record["metrics"])


def test_data_prep_numbers(smoke_run):
    m = load_metrics("01_data_prep", PRESET)["metrics"]
    assert m["ratings"] == 100_004 and m["processed_users"] == 40
    assert m["test_examples"] == m["val_examples"] == 40
    assert 30 < m["mean_prompt_words"] < 120


def test_baseline_figure_and_csv(smoke_run):
    figures = run_figures_dir(PRESET)
    _figures_exist(("01_rating_distribution", "02_baselines", "02_learning_curves"), 10_000)
    table = pd.read_csv(figures / "02_baselines.csv")
    assert table.method.tolist() == ["global average", "item average", "user average",
                                     "user + item bias", "MF", "MLP", "Transformer+MLP"]
    assert (table.rmse_low <= table.rmse).all() and (table.rmse <= table.rmse_high).all()
    # the global average recomputed here, from the split the notebook used, by hand
    from llmrec.splits import ensure_processed
    p = ensure_processed("movielens-small", history_len=5, max_users=40, seed=0, verbose=False)
    mu = p.train_ratings()["rating"].mean()
    y = p.split("test")["rating"].to_numpy()
    row = table.set_index("method").loc["global average"]
    assert row.rmse == pytest.approx(np.sqrt(np.mean((y - mu) ** 2)), rel=1e-5)
    assert row.mae == pytest.approx(np.mean(np.abs(y - mu)), rel=1e-5)
    curves = pd.read_csv(figures / "02_learning_curves.csv")
    assert set(curves.method) == {"MF", "MLP", "Transformer+MLP"}
    assert curves.val_rmse.notna().all()
    counts = pd.read_csv(figures / "01_rating_distribution.csv")
    assert counts["count"].sum() == 100_004


def test_language_model_notebooks(smoke_run):
    figures = run_figures_dir(PRESET)
    t3 = pd.read_csv(figures / "03_results.csv")
    assert t3.method.tolist()[-5:] == ["tiny-llama zero-shot", "tiny-llama zero-shot, answer opened with 'Rating:'",
                                       "tiny-llama few-shot (1)", "tiny-llama zero-shot, reading its ratings",
                                       "tiny-llama fine-tuned classification"]
    # each language-model row says on how many users it was scored, and has its interval
    lm_rows = t3[t3.family == "language model"].set_index("method")
    assert lm_rows.users.tolist() == [24, 24, 16, 40, 40] and lm_rows.rmse_low.notna().all()
    assert t3[["rmse", "mae"]].notna().all().all()
    record3 = load_metrics("03_flan_t5_classification", PRESET)["metrics"]
    assert record3["formulation"] == "packed" and record3["n_train"] > 64  # every target, not N_TRAIN
    assert set(record3["test_predictions"]) == {"zero-shot", "zero-shot, answer opened with 'Rating:'", "few-shot (1)",
                                                "fine-tuned classification", "zero-shot, reading its ratings"}
    shares = record3["rating_token_share"]  # the digits' share of the whole next-token distribution
    assert set(shares) == {"zero-shot", "zero-shot, answer opened with 'Rating:'"} and all(0 < v < 1 for v in shares.values())
    _figures_exist(["03_rating_tokens"], 10_000)
    tokens = pd.read_csv(figures / "03_rating_tokens.csv")
    assert np.allclose(tokens.groupby("what").share.sum(), 1.0)  # each a distribution over 1..5
    assert (t3.method == "MF").sum() == 1  # baselines read back from notebook 02
    t4 = pd.read_csv(figures / "04_results.csv")
    methods = set(t4.method)
    assert {"tiny-llama fine-tuned regression", "tiny-bert regression (prompt)",
            "tiny-bert regression (prompt + averages)", "tiny-llama fine-tuned classification",
            "tiny-llama fine-tuned regression on MF (the kit's)",
            "MF + tiny-bert item text (the kit's)"} <= methods
    assert metrics_of_04_compare_the_same_targets()
    kit = t4[t4.method.str.endswith("(the kit's)") & (t4.family != "blend")]
    assert set(kit.family) == {"LM item text + MF (the kit's)", "LM + MF (the kit's)"}
    # a blend w·MF + (1 − w)·LM: by convexity its RMSE is at most the same mix of theirs (the MF
    # that 04 trains itself, whose RMSE its record keeps beside the blend's), and w is the
    # minimum of the validation curve the record keeps, not a test-set choice
    metrics4 = load_metrics("04_flan_t5_regression", PRESET)["metrics"]
    rmse4 = pd.DataFrame(metrics4["versus_mf"]).set_index("method").rmse
    (blend,) = [m for m in methods if m.startswith("blend of MF and") and "another seed" not in m]
    assert "blend of MF and MF (another seed)" in methods  # the control beside it
    chosen = metrics4["blends"][blend]
    w, curve = chosen["mf_weight"], pd.Series(chosen["validation_rmse"])
    assert curve.index[curve.argmin()] == f"{w}" or float(curve.idxmin()) == w
    partner = blend.removeprefix("blend of MF and ")
    assert rmse4[blend] <= w * rmse4["MF"] + (1 - w) * rmse4[partner] + 1e-9
    for column in ("vs_mf_high", "vs_global_high", "vs_averages_high"):
        assert t4[column].notna().sum() >= 5, column  # every 04 prediction has its intervals
    for name in ("03_loss_curves", "04_loss_curves"):
        curves = pd.read_csv(figures / f"{name}.csv")
        assert set(curves.curve.str.rsplit(", ", n=1).str[1]) == {"training", "validation"}
        assert curves.value.notna().all()
    record = load_metrics("04_flan_t5_regression", PRESET)
    assert record["parameters"]["MODEL"] == "tiny-llama"


def test_data_efficiency_notebook(smoke_run):
    figures = run_figures_dir(PRESET)
    _figures_exist(("05_data_efficiency", "05_convergence"), 10_000)
    points = pd.read_csv(figures / "05_data_efficiency.csv")
    record = load_metrics("05_data_efficiency", PRESET)
    params = record["parameters"]
    fractions, seeds = params["FRACTIONS"], range(params["SEED"], params["SEED"] + params["N_SEEDS"])
    expected = {(m, f, s) for m in params["BASELINES"] for f in fractions for s in seeds}
    lm_fractions = params["LM_FRACTIONS"] or fractions
    expected |= {(f"{m} regression", f, s) for m, limit in params["LM_MODELS"].items()
                 for f in lm_fractions if f <= limit for s in seeds}
    rows = list(zip(points.method, points.fraction, points.seed))
    assert len(rows) == len(set(rows)) and set(rows) == expected  # one row per point
    assert points[["rmse", "mae", "auc", "seconds"]].notna().all().all()
    base = points[points.method.isin(params["BASELINES"])].groupby(["fraction", "seed"]).n_train
    assert (base.nunique() == 1).all()  # every baseline got the same subset size at a (fraction, seed)
    # a language model reading one prompt per example trains on the same examples; the packed one
    # on the subset's ratings that lie in the users' windows: fewer, never more
    lm = points[~points.method.isin(params["BASELINES"])]
    offered = base.first().loc[list(zip(lm.fraction, lm.seed))].to_numpy()
    assert (lm.n_train.to_numpy() <= offered).all()
    assert (lm.n_train.to_numpy() < offered).any() and (lm.n_train.to_numpy() == offered).any()
    assert record["metrics"]["points_computed"] == len(expected)
    # where each method meets full-data MF, where MF meets the first language model (RMSE, AUC),
    # and where MF catches up with it at equal data
    statements = record["metrics"]["statements"]
    assert len(statements) == len(set(points.method)) - 1 + 3
    assert statements[-1].startswith("At equal data (") and "in every seed" in statements[-1]
    curves = pd.read_csv(figures / "05_convergence.csv")
    assert curves.val_rmse.notna().all() and (curves.examples_seen > 0).all()


def test_data_efficiency_rerun_reuses_every_point(smoke_run, monkeypatch, tmp_path):
    before = load_metrics("05_data_efficiency", PRESET)["metrics"]
    monkeypatch.setenv("LLMREC_DATA_DIR", str(tmp_path))
    run_course(PRESET, only=["05"])
    after = load_metrics("05_data_efficiency", PRESET)["metrics"]
    assert after["points_computed"] == 0
    assert after["points_reused"] == before["points_computed"]
    assert after["points"] == before["points"]


def test_once_dire_notebook(smoke_run):
    figures = run_figures_dir(PRESET)
    _figures_exist(("06_results", "06_ablation", "06_cache_speed"), 5_000)
    table = pd.read_csv(figures / "06_results.csv")
    record = load_metrics("06_once_dire", PRESET)
    chosen = record["metrics"]["chosen"]
    assert table.method.tolist()[:2] == ["Original NAML", "Original NRMS"]
    # per encoder: the row chosen on validation, and the fully frozen one (k = 0) for "frozen is strong"
    name = lambda m, k, lora: f"DIRE {m} (k={k}" + (", LoRA" if lora else "") + ")"
    assert table.method.tolist()[2:] == [n for m, c in chosen.items()
                                         for n in dict.fromkeys([name(m, c["k"], c["lora"]), name(m, 0, False)])]
    assert (table.seeds == record["parameters"]["N_SEEDS"]).all()
    # each interval is the bootstrap over the test impressions and the seeds: it holds the mean
    assert ((table.auc_low <= table.auc) & (table.auc <= table.auc_high)).all()
    per = record["metrics"]["per_impression_auc"]  # [seeds, impressions] per row, what 07 pairs
    assert sorted(per) == sorted(table.method)
    assert {np.shape(v) for v in per.values()} == {(record["parameters"]["N_SEEDS"], record["metrics"]["test_impressions"])}
    metrics = ["auc", "mrr", "ndcg@5", "ndcg@10"]
    runs = pd.DataFrame(record["metrics"]["runs"])
    # the table is the mean over seeds of the runs it says it summarises
    means = runs[runs.method.isin(table.method)].groupby("method")[metrics].mean()
    pd.testing.assert_frame_equal(table.set_index("method")[metrics].sort_index(),
                                  means.sort_index(), check_exact=False, rtol=1e-4,
                                  check_names=False)
    ablation = pd.read_csv(figures / "06_ablation.csv")
    for model, rows in ablation.groupby("model"):
        assert sorted(zip(rows.k, rows.lora)) == [(0, False), (1, False), (1, True)]
        # the table's k and LoRA: the fewest trained parameters among the candidates within
        # DIRE_MARGIN of the best validation AUC — chosen on validation, never on test
        margin = record["parameters"]["DIRE_MARGIN"]
        near = rows[rows.val_auc >= rows.val_auc.max() - margin]
        best = near.loc[near.trained_parameters.idxmin()]
        assert (best.k, best.lora) == (chosen[model]["k"], chosen[model]["lora"]) and best.chosen
        assert rows.chosen.sum() == 1
    speed = pd.read_csv(figures / "06_cache_speed.csv")
    assert (speed.step_s > 0).all()
    # interval of the cache's speed-up: the timed steps' spread, around the point
    assert ((speed["of theory low"] <= speed["of theory"] + 1e-9) & (speed["of theory"] <= speed["of theory high"] + 1e-9)).all()
    # 2 Originals x 2 seeds; per encoder 3 candidates (seed 0), the chosen one's seed-0 row
    # (a copy) and its seed 1, and the same two for the frozen one (k = 0) when it was not chosen
    assert len(record["metrics"]["runs"]) == 2 * 2 + sum(3 + 2 + 2 * (c["k"] != 0) for c in chosen.values())


def test_bring_your_own_data_runs_01_and_02(tmp_path, monkeypatch):
    # DATASET=custom from a preset, as README shows: a TSV with date strings and a genres
    # column joined by spaces (tests/fixtures/custom), through data prep and the baselines
    import yaml

    from conftest import FIXTURES
    preset = yaml.safe_load((runs_dir(PRESET).parents[1] / "presets" / "smoke.yaml").read_text())
    preset["common"].update(DATASET="custom", MAX_USERS=None, DATA_PATHS={
        "ratings_path": str(FIXTURES / "custom" / "ratings.tsv"),
        "items_path": str(FIXTURES / "custom" / "items.csv"), "genre_sep": " "})
    path = tmp_path / "smoke-custom.yaml"
    path.write_text(yaml.safe_dump(preset))
    monkeypatch.setenv("LLMREC_DATA_DIR", str(tmp_path / "cache"))
    run_course(str(path), only=["01", "02"])
    m = load_metrics("01_data_prep", "smoke-custom")["metrics"]
    assert m["ratings"] == 600 and m["processed_users"] == 40
    table = pd.read_csv(run_figures_dir("smoke-custom") / "02_baselines.csv")
    reference = pd.read_csv(runs_dir(PRESET).parents[1] / "figures" / "02_baselines.csv")
    assert sorted(table.method) == sorted(reference.method)
    assert table.rmse.notna().all()


def test_report_notebook(smoke_run):
    from llmrec.course.papers import once_table2, paper_findings
    from llmrec.course.report import NOTEBOOKS, VERDICTS

    figures = run_figures_dir(PRESET)
    _figures_exist(("07_report", "07_claims"), 5_000)
    table = pd.read_csv(figures / "07_claims.csv")
    assert sorted(table.claim) == sorted(paper_findings())
    assert set(table.verdict) <= set(VERDICTS)
    # the smoke run ran every notebook, so no claim may read "not run" for want of a record, and
    # every row with bounds names the kind of its interval (the rules are unit-tested in test_report)
    records = {nb: load_metrics(nb, PRESET)["metrics"] for nb in NOTEBOOKS}
    assert all(records.values())
    ran = table.set_index("claim").verdict.drop(["kang2023.bigger_is_better", "once2024.larger_encoder_better"])
    assert "not run in this preset" not in set(ran), ran
    assert table[table.low.notna()].interval.str.contains("95%").all()
    beside = pd.read_csv(figures / "07_report.csv")
    paper = beside[beside.source.str.startswith("paper")]
    assert sorted(paper.auc.round(4)) == sorted(once_table2("MIND").query("column in ['NAML', 'NRMS']").auc.round(4))
    kit = beside[beside.source.str.startswith("kit")]
    assert sorted(kit.method) == sorted(pd.read_csv(figures / "06_results.csv").method)


def test_every_solution_ran_in_the_smoke_run(smoke_run):
    import json

    ran = 0
    for path in smoke_run:
        for cell in json.loads(path.read_text())["cells"]:
            if "solution" in cell.get("metadata", {}).get("tags", []) and cell["cell_type"] == "code":
                text = "".join("".join(o.get("text", "")) for o in cell.get("outputs", [])
                               if o.get("output_type") == "stream")
                assert "set SOLUTIONS = True" not in text, f"{path.name}: a solution was skipped"
                assert not any(o.get("output_type") == "error" for o in cell.get("outputs", []))
                ran += 1
    assert ran >= 18


# What each solution must print: the quantities its exercise asks for (every solution runs in the
# smoke run). A solution that prints validation where the exercise asks about test, or that
# trains nothing where the exercise asks for a trained model's result, fails here.
SOLUTION_ANSWERS = {
    ("01_data_prep", 1): ["words with 10 items vs"],
    ("01_data_prep", 2): ["users with a test example (of"],
    ("01_data_prep", 3): ["test examples per user:", "a test rating older than a training rating"],
    ("02_baselines", 1): ["train_loss", "val_rmse"],
    ("02_baselines", 2): ["Transformer+MLP, 10 items: RMSE", "MF:", "paired 95% interval"],
    ("02_baselines", 3): ["RMSE", "AUC", "->"],
    ("03_flan_t5_classification", 1): ["trained (", "test RMSE with LoRA", "paired 95% interval"],
    ("03_flan_t5_classification", 2): ["3 demonstrations: RMSE", "paired 95% interval"],
    ("03_flan_t5_classification", 3): ["predictions: min", "max"],
    ("04_flan_t5_regression", 1): ["top 4 layers: RMSE", "Training time x", "paired 95% interval"],
    ("04_flan_t5_regression", 2): ["validation RMSE"],
    ("04_flan_t5_regression", 3): ["weight 1.0: RMSE", "weight 0.0: RMSE"],
    ("05_data_efficiency", 1): ["the old subsets are unchanged: True"],
    ("05_data_efficiency", 2): ["seeds where"],
    ("05_data_efficiency", 3): ["same examples:", "same order:"],
    ("06_once_dire", 1): ["k = 2: validation AUC", "test AUC", "validation "],
    ("06_once_dire", 2): ["NAML longer: test AUC", "95% paired interval"],
    ("06_once_dire", 3): ["auc 0.5000", "expected MRR"],
    ("07_report", 1): ["95% interval", "training samples instead of"],
    ("07_report", 2): ["this preset (smoke)", "smoke preset"],
}


def _solution_outputs(path) -> dict[int, str]:
    """Solution number -> everything its cell printed or displayed (text)."""
    import json
    import re

    out = {}
    for cell in json.loads(path.read_text())["cells"]:
        source = "".join(cell["source"])
        found = re.match(r"# Solution (\d+)", source)
        if cell["cell_type"] == "code" and found:
            out[int(found.group(1))] = "".join(
                "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                for o in cell.get("outputs", []))
    return out


def test_every_solution_prints_what_its_exercise_asks_for(smoke_run):
    checked = 0
    for path in smoke_run:
        outputs = _solution_outputs(path)
        for (notebook, n), needed in SOLUTION_ANSWERS.items():
            if notebook == path.stem:
                missing = [w for w in needed if w not in outputs.get(n, "")]
                assert not missing, f"{notebook} solution {n} does not print {missing}"
                checked += 1
        # every solution of the notebook is listed above
        assert {n for (nb, n) in SOLUTION_ANSWERS if nb == path.stem} >= set(outputs), path.stem
    assert checked == len(SOLUTION_ANSWERS)


def metrics_of_04_compare_the_same_targets():
    """04's regression and 03's classification read the same packed targets: 04 found 03's test
    predictions and made its paired interval."""
    rc = load_metrics("04_flan_t5_regression", PRESET)["metrics"]["regression_vs_classification"]
    return rc is not None and rc["low"] <= rc["high"]


def test_classification_notebook_runs_the_papers_prompt_formulation(smoke_run, tmp_path):
    """The paper preset's path: Flan-T5 (seq2seq) fine-tuned on one prompt per example, with the
    tiny T5 of the same family; run under its own preset name so the smoke records stay."""
    import papermill as pm

    from llmrec.course.parameters import resolve_parameters
    from llmrec.paths import notebooks_dir
    from llmrec.presets import load_preset

    nb = notebooks_dir() / "03_flan_t5_classification.ipynb"
    params = resolve_parameters(load_preset("smoke"), [nb])[nb.stem]
    params.update(PRESET="smoke-prompt", MODEL="tiny-t5", FORMULATION="prompt", TOP_LAYERS=None)
    try:
        pm.execute_notebook(str(nb), str(tmp_path / nb.name), parameters=params, cwd=str(notebooks_dir()),
                            progress_bar=False, kernel_name="python3")
        record = load_metrics(nb.stem, "smoke-prompt")
        assert record["metrics"]["formulation"] == "prompt" and record["metrics"]["n_train"] == 64
        assert _finite(record["metrics"]["results"])
    finally:
        for folder in (runs_dir("smoke-prompt"), results_dir("smoke-prompt")):
            shutil.rmtree(folder, ignore_errors=True)
