"""The reproduction check (out of CI): the laptop preset against the reference figures/.

Run with `make repro` (about 5 minutes for notebooks 00-02 on 2 CPU cores)."""

import pandas as pd
import pytest

from llmrec.course import run_course
from llmrec.figures import checked_figures, compare_figure
from llmrec.paths import run_figures_dir

pytestmark = pytest.mark.repro


@pytest.fixture(scope="module")
def laptop_run():
    return run_course("laptop")


def test_figures_match_the_reference_within_tolerance(laptop_run):
    names = checked_figures()
    assert names, "figures/ has no *.tolerance.yaml: nothing would be checked"
    problems = [p for name in names for p in compare_figure(name, "laptop")]
    assert not problems, "\n".join(problems)


def test_mf_beats_the_global_average(laptop_run):
    table = pd.read_csv(run_figures_dir("laptop") / "02_baselines.csv").set_index("method")
    assert table.loc["MF", "rmse"] < table.loc["global average", "rmse"]
    # and the bootstrap says it is not luck
    assert table.loc["MF", "rmse_high"] < table.loc["global average", "rmse"]


def test_fine_tuned_regression_beats_zero_shot_and_the_global_average(laptop_run):
    table = pd.read_csv(run_figures_dir("laptop") / "04_results.csv").set_index("method")
    regression = table.loc["smollm2-135m fine-tuned regression", "rmse"]
    assert regression < table.loc["smollm2-135m zero-shot", "rmse"]
    assert regression < table.loc["global average", "rmse"]
    # Whether it beats MF and Transformer+MLP is reported, not asserted: on a CPU budget it
    # does not (README, notebook 04).
    for other in ("MF", "Transformer+MLP"):
        print(f"regression {regression:.4f} vs {other} {table.loc[other, 'rmse']:.4f}")
