"""The reproduction check: the laptop preset, from empty state, against the reference figures/.

Run with `make repro` (CI runs it after the tests, `make ci`): the whole laptop course on 2 CPU
cores. Nothing of an earlier run can stand in: runs/laptop and results/laptop (executed notebooks,
figures, 05's stored points, results) are removed first, and processed splits and layer caches
are built again in an empty folder."""

import pandas as pd
import pytest

from llmrec.course.figures import checked_figures, compare_all, tolerance_file_problems
from llmrec.course.record import load_metrics
from llmrec.course.runner import run_course
from llmrec.paths import ENV_DATA, run_figures_dir

pytestmark = pytest.mark.repro


@pytest.fixture(scope="module")
def laptop_run(tmp_path_factory):
    problems = tolerance_file_problems()  # a misspelt tolerance file is said now, not after the course
    if problems:
        pytest.fail("figures/ has damaged tolerance files:\n" + "\n".join(problems))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_DATA, str(tmp_path_factory.mktemp("empty-caches")))  # the kernels inherit it
        yield run_course("laptop", fresh=True)


def test_figures_match_the_reference_within_tolerance(laptop_run):
    assert checked_figures(), "figures/ has no *.tolerance.yaml: nothing would be checked"
    problems = compare_all("laptop")
    assert not problems, "\n".join(problems)


def test_mf_beats_the_global_average(laptop_run):
    table = pd.read_csv(run_figures_dir("laptop") / "02_baselines.csv").set_index("method")
    assert table.loc["MF", "rmse"] < table.loc["global average", "rmse"]
    # and the bootstrap says it is not luck
    assert table.loc["MF", "rmse_high"] < table.loc["global average", "rmse"]


def test_fine_tuned_regression_beats_zero_shot_and_the_global_average(laptop_run):
    # judged by the paired bootstrap interval of the RMSE difference on the same test users,
    # not by two point estimates a noise-sized margin apart
    table = pd.read_csv(run_figures_dir("laptop") / "04_results.csv").set_index("method")
    pairs = pd.DataFrame(load_metrics("04_flan_t5_regression", "laptop")["metrics"]["versus_mf"])
    pairs = pairs.set_index("method")
    regression = "smollm2-135m fine-tuned regression"
    print(pairs.loc[regression].round(4).to_dict())
    # zero-shot is about 1 RMSE worse: a margin far outside any interval of this test set
    assert table.loc[regression, "rmse"] < table.loc["smollm2-135m zero-shot", "rmse"] - 0.3
    assert pairs.loc[regression, "vs_global_high"] < 0, (
        "the interval of RMSE(regression) - RMSE(global average) reaches 0: not better here")
    # Whether it beats MF and Transformer+MLP is reported, not asserted: on a CPU budget it
    # does not (README, notebook 04).
    for other in ("MF", "Transformer+MLP"):
        print(f"regression {table.loc[regression, 'rmse']:.4f} vs {other} "
              f"{table.loc[other, 'rmse']:.4f}")


def test_what_04_says_of_the_language_models_holds(laptop_run):
    # the claims of 04's "What to read", each on its paired bootstrap interval (test users)
    pairs = pd.DataFrame(load_metrics("04_flan_t5_regression", "laptop")["metrics"]["versus_mf"])
    pairs = pairs.set_index("method")
    print(pairs.round(4).to_string())
    averages = pairs.loc["minilm-l6 regression (prompt + averages)"]
    assert averages.vs_global_high < 0 and averages.vs_averages_high < 0, (
        "MiniLM with the averages in its prompt no longer beats the global average and the "
        "better of the user and item averages by more than the interval")
    # the packed SmolLM2 learns: both heads beat the better of the user and item averages
    for name in ("smollm2-135m fine-tuned regression", "smollm2-135m fine-tuned regression on MF (the kit's)"):
        assert pairs.loc[name, "vs_averages_high"] < 0, name
    paired03 = pd.DataFrame(load_metrics("03_flan_t5_classification", "laptop")["metrics"]["versus"])
    classification = paired03.set_index("method").loc["smollm2-135m fine-tuned classification"]
    assert classification.vs_averages_high < 0 and classification.vs_global_high < 0, classification.to_dict()
    fine_tuned = ["smollm2-135m fine-tuned regression", "minilm-l6 regression (prompt)",
                  "minilm-l6 regression (prompt + averages)"]
    assert (pairs.loc[fine_tuned, "vs_mf_low"] > 0).all(), "a fine-tuned LM now beats MF: say so"
    # the kit's recipe, the residual over cross-fitted MF: in the reference run it beats MF by its
    # interval (−0.019 … −0.004; notebook 04 and README say so from their own numbers). Another
    # processor's run may move the interval's end by its drift, so the check is the robust half:
    # its interval reaches below zero (not worse than MF), and the rest is printed
    kit = "smollm2-135m fine-tuned regression on MF (the kit's)"
    print("the kit's residual over MF, RMSE − MF's:", pairs.loc[kit, ["vs_mf_low", "vs_mf_high"]].round(4).to_dict())
    assert pairs.loc[kit, "vs_mf_low"] < 0, pairs.loc[kit].to_dict()
    equal_to_mf = ["MF + minilm-l6 item text (the kit's)", "blend of MF and MF (another seed)"]
    for name in equal_to_mf:
        assert pairs.loc[name, "vs_mf_low"] <= 0 <= pairs.loc[name, "vs_mf_high"], name


def test_language_model_improves_with_data_and_the_match_is_stated(laptop_run):
    points = pd.read_csv(run_figures_dir("laptop") / "05_data_efficiency.csv")
    metrics = load_metrics("05_data_efficiency", "laptop")["metrics"]
    mean = points.groupby(["method", "fraction"]).rmse.mean()
    curves = {m: mean.loc[m] for m in set(points.method) if m.endswith(" regression")}
    curves = {m: c for m, c in curves.items() if len(c) >= 2}  # a single point has no slope
    assert curves, "no language model ran at two fractions or more"
    for method, curve in curves.items():
        # the RMSE at the largest fraction is below the smallest fraction's (the curve falls)
        assert curve.iloc[-1] < curve.iloc[0], (method, curve.to_dict())
        print(method, curve.round(4).to_dict())
    # where (or that never) each method meets full-data MF is stated, not assumed
    stated = "\n".join(metrics["statements"])
    assert all(m in stated for m in set(points.method) - {"MF"})
    print(stated)


def test_dire_with_a_pretrained_encoder_beats_the_original_encoders_on_auc(laptop_run):
    table = pd.read_csv(run_figures_dir("laptop") / "06_results.csv").set_index("method")
    original = table[table.index.str.startswith("Original")]
    dire = table[table.index.str.startswith("DIRE")]
    best_original = original.auc.max()
    for method, row in dire.iterrows():
        print(f"{method}: AUC {row.auc:.4f} ± {row.auc_std:.4f}, margin over the best Original "
              f"{row.auc - best_original:+.4f}")
    assert dire.auc.max() > best_original
