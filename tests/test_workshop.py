"""The workshop: its schedule is what the plan and the measured run times give, the course map in
README states the same times, and the page covers what a teacher needs."""

import math
import re

import pytest
import yaml

from llmrec.course import workshop
from llmrec.paths import list_notebooks, repo_root

DOC = repo_root() / "docs" / "WORKSHOP.md"


def test_workshop_schedule_is_what_the_plan_and_the_times_generate():
    assert workshop.update(check=True), "run `make report` (python -m llmrec report)"


def test_the_schedule_moves_with_the_measured_times():
    times = workshop.course_times()
    slower = times.copy()
    slower.loc["03_flan_t5_classification", "laptop_s"] = 700
    text = workshop.schedule(times=slower)
    assert "| 11.7 min | 48 min |" in text and text != workshop.schedule(times=times)


def _plan(tmp_path, edit):
    plan = yaml.safe_load((repo_root() / "docs" / "workshop.yaml").read_text())
    edit(plan)
    path = tmp_path / "workshop.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def test_a_block_too_short_for_its_notebook_is_refused(tmp_path):
    # one minute short of what the measured run and the plan's teaching time need
    run = math.ceil(workshop.course_times().loc["03_flan_t5_classification", "laptop_s"] / 60)
    least = yaml.safe_load((repo_root() / "docs" / "workshop.yaml").read_text())["min_teaching"]

    def shorten(plan):
        next(b for b in plan["blocks"] if b.get("notebook") == "03_flan_t5_classification")["minutes"] = run + least - 1
    with pytest.raises(ValueError, match=rf"block of 03_flan_t5_classification \({run + least - 1} min\) "
                                         rf"leaves {least - 1} min"):
        workshop.schedule(_plan(tmp_path, shorten))


def test_a_plan_without_every_notebook_is_refused(tmp_path):
    def drop(plan):
        plan["blocks"] = [b for b in plan["blocks"] if b.get("notebook") != "05_data_efficiency"]
    with pytest.raises(ValueError, match="are not the course's"):
        workshop.schedule(_plan(tmp_path, drop))


def test_every_notebook_fits_the_ten_minutes_a_class_can_wait():
    times = workshop.course_times()
    assert set(times.index) == {p.stem for p in list_notebooks()}
    assert times["laptop_s"].max() <= workshop.LIMIT_S


def test_readme_course_map_states_the_measured_times():
    times = workshop.course_times()
    rows = [line for line in (repo_root() / "README.md").read_text().splitlines()
            if re.match(r"\| \[\d\d_", line)]
    assert len(rows) == len(times)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        name = re.match(r"\[(\w+)\]", cells[0]).group(1)
        assert cells[3] == workshop.duration(times.loc[name, "smoke_s"]), (name, cells[3])
        assert cells[4].startswith(workshop.duration(times.loc[name, "laptop_s"])), (name, cells[4])
    total = f"**{times['laptop_s'].sum() / 60:.1f} min** for the whole laptop course"
    assert total in (repo_root() / "README.md").read_text(), total


def test_the_page_has_what_a_teacher_needs():
    text = DOC.read_text()
    for section in ("## Schedule", "## Before the day", "## Prerequisites", "## Glossary", "## Instructor notes"):
        assert section in text, section
    glossary = text.split("## Glossary", 1)[1].split("## Instructor notes", 1)[0]
    defined = re.findall(r"^- \*\*([^*]+)\*\*", glossary, re.MULTILINE)
    for term in ("RMSE", "AUC", "MRR", "nDCG", "LoRA", "Frozen layers", "Cached layers", "concator",
                 "History (user) encoder"):
        assert any(term in d for d in defined), term
    prereq = text.split("## Prerequisites", 1)[1].split("## Glossary", 1)[0]
    assert [int(n) for n in re.findall(r"^\| (\d\d) ", prereq, re.MULTILINE)] == list(range(1, 8))
    assert "00_setup_check" in text.split("## Before the day", 1)[1].split("## Prerequisites", 1)[0]


def test_course_times_are_written_from_what_the_runs_measured(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(workshop, "results_dir", lambda preset: tmp_path / "results" / preset)
    course = [p.stem for p in list_notebooks()]
    for k, preset in enumerate(("smoke", "laptop")):
        folder = tmp_path / "results" / preset
        folder.mkdir(parents=True)
        for i, name in enumerate(course):
            (folder / f"{name}.json").write_text(json.dumps({"metrics": {}, "wall_s": 10.4 * (i + 1) + 100 * k}))
    out = tmp_path / "course_times.csv"
    workshop.record_course_times(path=out)
    times = workshop.course_times(out)
    assert list(times.index) == course
    assert times.loc[course[1], "smoke_s"] == 21 and times.loc[course[1], "laptop_s"] == 121
    (tmp_path / "results" / "laptop" / f"{course[3]}.json").write_text(json.dumps({"metrics": {}}))
    out.unlink()
    with pytest.raises(FileNotFoundError, match=f"laptop/{course[3]}.json"):
        workshop.record_course_times(path=out)
    assert not out.exists()  # nothing half-written
