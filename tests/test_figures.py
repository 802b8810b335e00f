"""The reference-figure check on constructed CSVs: it must fail on every kind of drift."""

import re

import pandas as pd
import pytest
import yaml

from llmrec.course import figures


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    ref, run = tmp_path / "figures", tmp_path / "runs" / "figures"
    ref.mkdir(parents=True)
    run.mkdir(parents=True)
    monkeypatch.setattr(figures, "reference_figures_dir", lambda: ref)
    monkeypatch.setattr(figures, "run_figures_dir", lambda preset: run)
    table = pd.DataFrame({"method": ["MF", "LM"], "rmse": [0.95, 1.05],
                          "low": [0.90, float("nan")]})
    table.to_csv(ref / "t.csv", index=False)
    (ref / "t.tolerance.yaml").write_text(yaml.safe_dump(
        {"key": ["method"], "columns": {"rmse": {"abs": 0.01}, "low": {"abs": 0.01}}}))
    return ref, run, table


def test_the_same_numbers_pass_nan_included(dirs):
    _, run, table = dirs
    table.assign(rmse=table.rmse + 0.005).to_csv(run / "t.csv", index=False)
    assert figures.compare_figure("t") == []


@pytest.mark.parametrize("change, message", [
    (lambda t: t.assign(rmse=[0.95, 1.07]), r"LM rmse: run 1.0700 vs reference 1.0500"),
    (lambda t: t.assign(low=[0.90, 0.5]), r"LM low: run 0.5000 vs reference nan"),
    (lambda t: t.iloc[:1], r"missing \['LM'\]"),
    (lambda t: pd.concat([t, t.iloc[:1].assign(method="new")]), r"extra \['new'\]"),
    (lambda t: t.drop(columns="rmse"), r"column rmse is missing"),
])
def test_every_kind_of_drift_fails(dirs, change, message):
    _, run, table = dirs
    change(table).to_csv(run / "t.csv", index=False)
    problems = figures.compare_figure("t")
    assert any(__import__("re").search(message, p) for p in problems), problems


def test_a_missing_run_figure_fails(dirs):
    assert "is missing" in figures.compare_figure("t")[0]


def test_refresh_says_which_numbers_move_before_it_copies(dirs, capsys):
    ref, run, table = dirs
    table.assign(rmse=[0.95, 1.02]).to_csv(run / "t.csv", index=False)
    (run / "t.png").write_bytes(b"png")
    changes = figures.changes("t")
    assert changes == ["t: LM rmse 1.0500 -> 1.0200 (-0.0300)"]
    figures.refresh()
    assert "LM rmse 1.0500 -> 1.0200" in capsys.readouterr().out
    assert pd.read_csv(ref / "t.csv").rmse.tolist() == [0.95, 1.02]


def test_rows_may_differ_only_by_the_number_the_tolerance_file_allows(dirs):
    # learning curves: early stopping may keep one epoch more on another processor (measured);
    # a tolerance file says so with `rows: {differ: N}`, and more than N still fails
    ref, run, table = dirs
    spec = yaml.safe_load((ref / "t.tolerance.yaml").read_text())
    (ref / "t.tolerance.yaml").write_text(yaml.safe_dump({**spec, "rows": {"differ": 1}}))
    extra = pd.concat([table, table.iloc[:1].assign(method="new")])
    extra.to_csv(run / "t.csv", index=False)
    assert figures.compare_figure("t") == []
    pd.concat([extra, table.iloc[:1].assign(method="newer")]).to_csv(run / "t.csv", index=False)
    assert "rows differ" in " ".join(figures.compare_figure("t"))


def test_every_reference_csv_is_checked_and_every_run_figure_has_a_reference(dirs):
    ref, run, table = dirs
    table.to_csv(run / "t.csv", index=False)
    assert figures.compare_all() == []
    table.to_csv(ref / "unchecked.csv", index=False)
    table.to_csv(run / "unchecked.csv", index=False)
    table.to_csv(run / "new_figure.csv", index=False)
    problems = " ".join(figures.compare_all())
    assert "unchecked.csv has no unchecked.tolerance.yaml" in problems
    assert "new_figure" in problems and "not in the reference" in problems


def test_the_shipped_reference_figures_are_all_checked():
    # every CSV in figures/ has a tolerance file and a PNG beside it
    ref = figures.reference_figures_dir()
    for csv in ref.glob("*.csv"):
        assert (ref / f"{csv.stem}.tolerance.yaml").is_file(), csv.name
        assert (ref / f"{csv.stem}.png").is_file(), csv.name
        spec = yaml.safe_load((ref / f"{csv.stem}.tolerance.yaml").read_text())
        header = pd.read_csv(csv, nrows=0).columns
        assert set(spec["key"]) | set(spec["columns"]) <= set(header), csv.name


def test_refresh_survives_a_figure_whose_rows_get_a_new_key(dirs):
    # 06_ablation gained a `model` column: the old reference cannot be indexed by the new key
    ref, run, table = dirs
    (ref / "t.tolerance.yaml").write_text(yaml.safe_dump(
        {"key": ["model", "method"], "columns": {"rmse": {"abs": 0.01}}}))
    table.assign(model="m").to_csv(run / "t.csv", index=False)
    (run / "t.png").write_bytes(b"png")
    assert figures.changes("t") == [("t: rows are now keyed by ['model', 'method'], which the old "
                                     "reference lacks: every row is new (2 rows)")]
    figures.refresh()
    assert "model" in pd.read_csv(ref / "t.csv").columns


def test_a_text_column_must_be_equal(dirs):
    ref, run, table = dirs
    table = table.assign(verdict=["reproduced", "not reproduced"])
    table.to_csv(ref / "t.csv", index=False)
    (ref / "t.tolerance.yaml").write_text(yaml.safe_dump(
        {"key": ["method"], "columns": {"rmse": {"abs": 0.01}, "verdict": {"equal": True}},
         "ignored": {"low": "not this test's subject"}}))
    table.to_csv(run / "t.csv", index=False)
    assert figures.compare_figure("t") == []
    table.assign(verdict=["reproduced", "direction only"]).to_csv(run / "t.csv", index=False)
    assert figures.compare_figure("t") == ["t: LM verdict: run 'direction only' vs reference 'not reproduced'"]
    assert figures.changes("t") == ["t: LM verdict 'not reproduced' -> 'direction only'"]


def test_a_timing_column_is_checked_against_a_floor_not_the_reference(dirs):
    # a speed-up measured on another processor may be far from the reference (2.44x here, 3.57x on
    # the CI machine for the same code); what must hold anywhere is that it is at least the floor
    ref, run, table = dirs
    table = table.assign(of_theory=[1.0, 0.9])
    table.to_csv(ref / "t.csv", index=False)
    (ref / "t.tolerance.yaml").write_text(yaml.safe_dump(
        {"key": ["method"], "columns": {"rmse": {"abs": 0.01}, "of_theory": {"at_least": 0.5}},
         "ignored": {"low": "not this test's subject"}}))
    table.assign(of_theory=[1.0, 1.34]).to_csv(run / "t.csv", index=False)
    assert figures.compare_figure("t") == []
    table.assign(of_theory=[1.0, 0.3]).to_csv(run / "t.csv", index=False)
    assert figures.compare_figure("t") == ["t: LM of_theory: run 0.3000, below its floor 0.5000"]
    table.assign(of_theory=[1.0, float("nan")]).to_csv(run / "t.csv", index=False)
    assert figures.compare_figure("t") == ["t: LM of_theory: run nan, below its floor 0.5000"]


def test_a_duplicate_key_is_named_not_a_numpy_error(dirs):
    ref, run, table = dirs
    pd.concat([table, table.iloc[:1]]).to_csv(run / "t.csv", index=False)
    assert figures.compare_figure("t") == ["t: the run's t.csv has the key ['method'] twice or more for "
                                           "['MF']: each row must have its own key"]
    pd.concat([table, table.iloc[1:]]).to_csv(ref / "t.csv", index=False)
    table.to_csv(run / "t.csv", index=False)
    assert "the reference's t.csv has the key ['method'] twice or more for ['LM']" in figures.compare_figure("t")[0]


def _spec(ref, **extra):
    spec = {"key": ["method"], "columns": {"rmse": {"abs": 0.01}, "low": {"abs": 0.01}}, **extra}
    (ref / "t.tolerance.yaml").write_text(yaml.safe_dump(spec))


def test_a_numeric_column_neither_compared_nor_ignored_fails(dirs):
    ref, run, table = dirs
    table.assign(high=[1.0, 1.1]).to_csv(ref / "t.csv", index=False)
    table.assign(high=[-0.5, float("nan")]).to_csv(run / "t.csv", index=False)  # would pass unchecked
    assert any("column high is neither compared nor listed" in p for p in figures.compare_figure("t"))
    _spec(ref, ignored={"high": "a reason"})
    assert figures.compare_figure("t") == []


def test_a_nan_interval_where_the_reference_has_one_fails(dirs):
    _, run, table = dirs
    table.assign(low=[float("nan"), float("nan")]).to_csv(run / "t.csv", index=False)
    assert any("MF low: run nan vs reference 0.9000" in p for p in figures.compare_figure("t"))


def test_an_lm_row_worse_than_the_global_average_fails_its_ordering_check(dirs):
    ref, run, _ = dirs
    table = pd.DataFrame({"method": ["global average", "zero-shot", "LM"], "rmse": [1.11, 1.98, 0.999],
                          "vs_global_high": [float("nan"), 1.0, -0.07]})
    table.to_csv(ref / "t.csv", index=False)
    spec = {"key": ["method"], "columns": {"rmse": {"abs": 0.2}, "vs_global_high": {"abs": 0.2}},
            "checks": [{"row": "LM", "column": "vs_global_high", "below": 0, "why": "beats the global average"},
                       {"row": "LM", "column": "rmse", "below_row": "zero-shot", "why": "beats zero-shot"}]}
    (ref / "t.tolerance.yaml").write_text(yaml.safe_dump(spec))
    table.to_csv(run / "t.csv", index=False)
    assert figures.compare_figure("t") == []
    # within the (deliberately loose) tolerance, yet no longer learning: the ordering check catches it
    table.assign(rmse=[1.11, 1.98, 1.13], vs_global_high=[float("nan"), 1.0, 0.05]).to_csv(run / "t.csv", index=False)
    problems = figures.compare_figure("t")
    assert problems == ["t: LM vs_global_high is 0.0500, not below 0: beats the global average"]
    table.assign(rmse=[1.11, 1.98, 2.1], vs_global_high=[float("nan"), 1.0, float("nan")]).to_csv(run / "t.csv", index=False)
    problems = figures.compare_figure("t")
    assert any("not below zero-shot rmse (1.9800): beats zero-shot" in p for p in problems)
    assert any("vs_global_high is nan, not below 0" in p for p in problems)


def test_rows_may_differ_by_one_per_method_not_three_of_one(dirs):
    ref, run, _ = dirs
    curve = pd.DataFrame({"method": ["A"] * 5 + ["B"] * 5, "epoch": list(range(5)) * 2, "v": [1.0] * 10})
    curve.to_csv(ref / "c.csv", index=False)
    (ref / "c.tolerance.yaml").write_text(yaml.safe_dump(
        {"key": ["method", "epoch"], "columns": {"v": {"abs": 0.01}}, "rows": {"differ": 1, "per": ["method"]}}))
    curve.drop(index=[4, 9]).to_csv(run / "c.csv", index=False)  # one epoch less for each: allowed
    assert figures.compare_figure("c") == []
    curve.drop(index=[2, 3, 4]).to_csv(run / "c.csv", index=False)  # A's last three epochs vanish
    problems = figures.compare_figure("c")
    assert len(problems) == 1 and "rows differ in ['method']=['A']" in problems[0]


def test_rows_not_compared_are_skipped_the_others_are_not(dirs):
    ref, run, table = dirs
    table = table.assign(verdict=["reproduced", "reproduced"])
    table.to_csv(ref / "t.csv", index=False)
    _spec(ref, rows_not_compared={"LM": "a timing"})
    spec = yaml.safe_load((ref / "t.tolerance.yaml").read_text())
    spec["columns"]["verdict"] = {"equal": True}
    (ref / "t.tolerance.yaml").write_text(yaml.safe_dump(spec))
    table.assign(rmse=[0.95, 9.0]).to_csv(run / "t.csv", index=False)
    assert figures.compare_figure("t") == []
    table.assign(rmse=[0.5, 9.0]).to_csv(run / "t.csv", index=False)
    assert figures.compare_figure("t") == ["t: MF rmse: run 0.5000 vs reference 0.9500 (allowed ±0.0100)"]
    table.assign(verdict=["reproduced", "inconclusive"]).to_csv(run / "t.csv", index=False)  # LM: a timing's verdict
    assert figures.compare_figure("t") == []
    table.assign(verdict=["inconclusive", "reproduced"]).to_csv(run / "t.csv", index=False)
    assert figures.compare_figure("t") == ["t: MF verdict: run 'inconclusive' vs reference 'reproduced'"]


def test_some_rows_may_have_their_own_tolerance(dirs):
    ref, run, table = dirs
    _spec(ref)
    spec = yaml.safe_load((ref / "t.tolerance.yaml").read_text())
    spec["columns"]["rmse"]["abs_by"] = {"method": {"MF": 0.05}}
    (ref / "t.tolerance.yaml").write_text(yaml.safe_dump(spec))
    table.assign(rmse=[0.99, 1.05]).to_csv(run / "t.csv", index=False)  # MF +0.04: within its own 0.05
    assert figures.compare_figure("t") == []
    table.assign(rmse=[0.95, 1.07]).to_csv(run / "t.csv", index=False)  # LM keeps the default 0.01
    assert figures.compare_figure("t") == ["t: LM rmse: run 1.0700 vs reference 1.0500 (allowed ±0.0100)"]


def test_a_tolerance_file_that_names_what_its_key_cannot_address_is_said(dirs):
    ref, run, table = dirs
    table.to_csv(run / "t.csv", index=False)
    _spec(ref, rows={"differ": 1, "per": ["epoch"]},
          checks=[{"row": ["LM", 0.3], "column": "rmse", "below": 1}])
    problems = figures.compare_figure("t")
    assert any("rows.per names 'epoch'" in p for p in problems)
    assert any("must give one value per key column" in p for p in problems)


def test_a_compared_column_the_reference_lacks_is_said_not_a_keyerror(dirs):
    ref, run, table = dirs
    table.assign(extra=[1.0, 2.0]).to_csv(run / "t.csv", index=False)
    spec = yaml.safe_load((ref / "t.tolerance.yaml").read_text())
    spec["columns"]["extra"] = {"abs": 0.01}
    (ref / "t.tolerance.yaml").write_text(yaml.safe_dump(spec))
    assert any("column extra is missing from the reference" in p for p in figures.compare_figure("t"))


def test_the_shipped_checks_hold_on_the_reference_figures():
    # every ordering check and every column a tolerance file names exists in figures/ and holds there
    from llmrec.paths import reference_figures_dir

    for name in figures.checked_figures():
        spec = yaml.safe_load((reference_figures_dir() / f"{name}.tolerance.yaml").read_text())
        ref = pd.read_csv(reference_figures_dir() / f"{name}.csv")
        assert set(spec["columns"]) <= set(ref.columns), name
        ref = ref.set_index(spec["key"])
        assert figures._spec_problems(name, spec) == [] and figures._checks(name, ref, spec) == [], name
        assert figures._unlisted_columns(name, ref, spec) == [], name


@pytest.mark.parametrize("spec, message", [
    ({"key": ["method"], "colums": {"rmse": {"abs": 0.01}}},
     r"t\.tolerance\.yaml: unknown key 'colums'.*did you mean 'columns'"),
    ({"key": ["method"], "columns": {"rmse": {"abss": 0.01}}},
     r"t\.tolerance\.yaml: columns\.rmse: unknown key 'abss'.*did you mean 'abs'"),
    ({"columns": {"rmse": {"abs": 0.01}}}, r"t\.tolerance\.yaml: no `key`"),
    ({"key": ["method"], "columns": {"rmse": {"abs": 0.01}}, "checks": [{"row": ["MF"], "columm": "rmse", "below": 1}]},
     r"checks\[0\]: unknown key 'columm'"),
    ("key: [method\n", r"t\.tolerance\.yaml is not valid YAML"),
])
def test_a_damaged_tolerance_file_is_named_before_the_course_runs(dirs, spec, message):
    """A misspelt key was a KeyError in `make repro`, after the 30-minute course."""
    ref, run, table = dirs
    (ref / "t.tolerance.yaml").write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    problems = figures.tolerance_file_problems()
    assert problems and re.search(message, problems[0]), problems
    table.to_csv(run / "t.csv", index=False)
    assert figures.compare_figure("t") == problems  # said again, not a KeyError


def test_the_shipped_tolerance_files_are_well_formed():
    assert figures.tolerance_file_problems() == []
