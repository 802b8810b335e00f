"""Bad inputs and faults a new user runs into: the error each gets now, and how many seconds it
takes to get it. Prints a Markdown table (and writes benchmarks/out/bad_inputs.md).

    .venv/bin/python benchmarks/bad_inputs.py          # about two minutes on 2 CPU cores

Every case runs in a temporary folder (LLMREC_DATA_DIR) and leaves the checkout as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


def _first_line(text: str, limit: int = 400) -> str:
    """The message on one line (a multi-line message's lines joined), cut at `limit`."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    one = " ".join(lines) or "(no message)"
    return one if len(one) <= limit else one[:limit] + " …"


def attempt(fn) -> tuple[str, float]:
    start = time.perf_counter()
    try:
        result = fn()
        outcome = f"ok: {result}" if result is not None else "ok"
    except Exception as e:  # noqa: BLE001 - any error is what the user sees
        outcome = f"{type(e).__name__}: {_first_line(str(e))}"
    return outcome, time.perf_counter() - start


def papermill(notebook: str, *params: str, cwd: Path) -> str:
    """Run a notebook with papermill as a user would; the error line the user sees."""
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / f"{notebook}.ipynb"),
           str(cwd / "out.ipynb"), "--cwd", str(ROOT / "notebooks"), *params]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), check=False)
    if proc.returncode == 0:
        return "ok"
    lines = proc.stderr.splitlines()
    starts = [i for i, ln in enumerate(lines) if "Error:" in ln]
    raise RuntimeError(" ".join(ln.strip() for ln in lines[starts[-1]:starts[-1] + 3])
                       if starts else proc.stderr[-300:])


def main() -> None:
    from llmrec import data, presets
    from llmrec.clicks import download_mind, load_mind
    from llmrec.course import runner
    from llmrec.lm import load_lm

    tmp = Path(tempfile.mkdtemp(prefix="llmrec-bad-"))
    os.environ["LLMREC_DATA_DIR"] = str(tmp / "cache")
    fixtures = ROOT / "tests" / "fixtures"
    items = tmp / "items.csv"
    pd.DataFrame({"item": ["a", "b"], "title": ["A", "B"]}).to_csv(items, index=False)

    def ratings_file(name: str, content: bytes) -> Path:
        path = tmp / name
        path.write_bytes(content)
        return path

    def preset(name: str, text: str) -> str:
        path = tmp / f"{name}.yaml"
        path.write_text(text)
        return str(path)

    smoke = yaml.safe_load((ROOT / "presets" / "smoke.yaml").read_text())
    cases = []

    def case(what, fn, family=None):
        family = family or family_of(what)
        outcome, seconds = attempt(fn)
        cases.append({"family": family, "bad input": what, "what it gets now": outcome, "seconds": seconds})
        print(f"{seconds:6.1f} s  [{family}] {what}: {outcome[:160]}", flush=True)

    case("papermill 02 `-p DATASET custom` without paths",
         lambda: papermill("02_baselines", "-p", "DATASET", "custom", "-p", "PRESET", "bad",
                           cwd=tmp))
    case("papermill 02 `-p EPOCHS abc`",
         lambda: papermill("02_baselines", "-p", "EPOCHS", "abc", "-p", "PRESET", "bad", cwd=tmp))
    case("papermill 03 `-p MODEL flan-t5-small` offline",
         lambda: papermill("03_flan_t5_classification", "-p", "MODEL", "flan-t5-small",
                           "-p", "PRESET", "bad", cwd=tmp))
    for label, values in [("EPOCHS: ten", {"EPOCHS": "ten"}), ("EPOCHS: 0", {"EPOCHS": 0})]:
        body = dict(smoke, notebooks={"02_baselines": values})
        path = preset("typed", yaml.safe_dump(body))
        case(f"preset with `{label}`", lambda p=path: runner.run_course(p, only=["02"]))
    case("preset with a YAML syntax error",
         lambda: presets.load_preset(preset("syntax", "common:\n  SEED: [1, 2\n")))
    case("preset that is a list", lambda: presets.load_preset(preset("list", "- SEED: 1\n")))
    case("laptop preset, SmolLM2 not installed (simulated)", lambda: _missing_model())
    case("results/ not writable (a file in its place)", lambda: _blocked_results(tmp))
    case("load_lm('flan-t5-small') offline", lambda: load_lm("flan-t5-small"))
    case("load_custom: empty ratings file",
         lambda: data.load_custom(ratings_file("empty.csv", b""), items))
    case("load_custom: non-UTF-8 bytes",
         lambda: data.load_custom(ratings_file("latin.csv", "user,item,rating,timestamp\n"
                                               "1,\xe9,4,1\n".encode("latin-1")), items))
    case("load_custom: a rating 'four'",
         lambda: data.load_custom(ratings_file("four.csv", b"user,item,rating,timestamp\n"
                                               b"1,a,4,1\n2,a,four,2\n"), items))
    case("load_custom: date-string timestamps (was a crash under pandas 3)",
         lambda: data.load_custom(ratings_file("dates.csv", b"user,item,rating,timestamp\n"
                                               b"1,a,4,2020-01-02 03:04:05\n"),
                                  items).ratings.timestamp.tolist())
    when = pd.Series(pd.to_datetime(["2020-01-02 03:04:05"])).astype("datetime64[us]")
    pd.DataFrame({"user": [1], "item": ["a"], "rating": [4], "timestamp": when}).to_parquet(
        tmp / "dt.parquet")
    case("load_custom: a datetime64[us] Parquet column (was divided by 1,000 silently)",
         lambda: data.load_custom(tmp / "dt.parquet", items).ratings.timestamp.tolist())
    case("load_custom: a TSV file", lambda: repr(data.load_custom(
        fixtures / "custom" / "ratings.tsv", fixtures / "custom" / "items.csv", genre_sep=" ")))
    case("DATASET custom, misspelt option `colums`",
         lambda: data.load_ratings("custom", ratings_path="r.csv", items_path="i.csv", colums={}))
    case("an edited custom CSV (was: the old split reloaded)", lambda: _edited(tmp))
    case("MIND folder without news.tsv", lambda: load_mind({"train": tmp}))
    case("MIND download offline", lambda: download_mind("small-train", folder=tmp / "mind"))
    case("MIND: an unzip killed half-way (was trusted forever)", lambda: _half_unzipped(tmp))
    case("ClickData repr of an empty behaviors file (was a crash)", lambda: _empty_mind(tmp))
    case("a corrupt layer cache hidden.pt (was a crash on every rerun)",
         lambda: _corrupt_cache(tmp))
    # ---- the rows of "your data and your files, safe"
    case("`student --out DIR`, DIR holding notes.txt (was deleted)", lambda: _out_folder(tmp, "student"))
    case("`site --out data` (was: the embedded data deleted)", lambda: _site_out_data())
    case("site from a run killed mid-notebook (was published without its figures)",
         lambda: _unfinished_site(tmp))
    case("6 processes build one split on an empty cache (was: Directory not empty)",
         lambda: _race(tmp))
    case("ratings edited in place, same rows (was: 02's old table reused)", lambda: _edited_in_place(tmp))
    case("a repeated (user, item) rating (was: the test item in its own history)",
         lambda: _repeated(tmp))
    case("items without a title, outside MovieLens (was: 'Movie i0')", lambda: _untitled(tmp))
    case("prompts longer than 512 positions, MiniLM (was: a 175-line crash)", lambda: _long_prompts())
    case("models/smollm2-135m holding another model (was: loaded under SmolLM2's name)",
         lambda: _converted(tmp, "other"))
    case("models/smollm2-135m with model.safetensors cut short (was: fails every run)",
         lambda: _converted(tmp, "cut"))
    case("a layer cache of the right shape holding NaN (was: used)", lambda: _nan_cache(tmp))
    case("README's `-p DATA_PATHS '{\"ratings_path\": …}'` as papermill passes it (was refused)",
         lambda: _papermill_dict())
    case("a valid preset file outside presets/ (was: 00 'unknown preset')",
         lambda: _outside_preset(tmp, smoke))
    case("a split manifest.json that is `null` (was: AttributeError every rerun)",
         lambda: _null_manifest(tmp))
    for label, content, kw in [
        ("an empty user cell (was: TypeError '<' float and str)", b"user,item,rating,timestamp\n1,a,4,1\n,b,3,2\n", {}),
        ("an empty timestamp cell (was: a valid row blamed)", b"user,item,rating,timestamp\n1,a,4,1\n2,b,3,\n", {}),
        ("a ';'-separated file named .csv (was: 'Rename the columns')", b"user;item;rating;timestamp\n1;a;4;1\n", {}),
        ("a rating 7 on a 1-5 scale (was: refused without the row)", b"user,item,rating,timestamp\n1,a,4,1\n2,b,7,2\n", {}),
    ]:
        case(f"load_custom: {label}", lambda c=content, n=label[:6]: data.load_custom(
            ratings_file(f"bad-{abs(hash(n))}.csv", c), items))
    case("MODEL = an empty folder (was: 'Should have a model_type key')", lambda: _empty_model(tmp))
    case("MODEL = a folder named from the kit's root, from notebooks/ (was: 'nor a local folder')",
         lambda: _relative_model(tmp))
    case("a full disk while writing a layer cache (was: 'unexpected pos')", lambda: _full_disk(tmp))
    case("`python -m llmrec course --preset nope` (was: a traceback, then the error)",
         lambda: _cli_lines(["course", "--preset", "nope"]))
    case("Ctrl-C during `python -m llmrec course` (was: 25 lines of KeyboardInterrupt)", lambda: _ctrl_c())
    case("papermill 02 directly, results/ not writable (was: fails in its last cell)",
         lambda: _papermill_blocked(tmp))
    case("MIND news.tsv cut at a line end (was: 'give a MIND train folder as train')",
         lambda: _cut_news(tmp))
    case("what a smoke run of 00 leaves in the temp folder (was: torchinductor_<user>, tmp*.json)",
         lambda: _tmp_leftovers(tmp))
    new_cases(case, tmp, smoke)
    more_cases(case, tmp, smoke)
    write_table(cases, tmp)


def write_table(cases: list[dict], tmp: Path) -> None:
    """benchmarks/out/bad_inputs.md: every row with its outcome, then the counts per family and outcome."""
    cases.sort(key=lambda r: FAMILIES.index(r["family"]))  # stable: each family's rows in run order
    for r in cases:
        r["outcome"] = outcome_of(r["what it gets now"])
    md = "\n".join(["| family | bad input | outcome | what it gets now | seconds |", "|---|---|---|---|---|"] + [
        f"| {r['family']} | {r['bad input']} | {r['outcome']} | {r['what it gets now'].replace('|', '/')} | "
        f"{r['seconds']:.1f} |" for r in cases])
    table = pd.crosstab(pd.Categorical([r["family"] for r in cases], FAMILIES),
                        pd.Categorical([r["outcome"] for r in cases], OUTCOMES), dropna=False)
    md += "\n\n| family | " + " | ".join(OUTCOMES) + " | rows |\n|---|" + "---|" * (len(OUTCOMES) + 1) + "\n"
    md += "\n".join(f"| {family} | " + " | ".join(str(n) for n in row) + f" | {row.sum()} |"
                    for family, row in table.iterrows())
    md += "\n| all | " + " | ".join(str(n) for n in table.sum()) + f" | {len(cases)} |"
    label = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", str(tmp)).strip("._")  # tmp in a cache's name
    md = md.replace(str(tmp), "<tmp>").replace(label, "<tmp>").replace(str(ROOT), "<kit>")  # the same on every machine
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bad_inputs.md").write_text(md + "\n")
    print(md)

FAMILIES = ("interruption", "concurrency", "corruption", "preset and papermill values", "environment",
            "your own data", "stale inputs")
# The family of each earlier row, by the start of its label (new rows name theirs).
FAMILY_OF = [
    ("papermill 02 directly, results/", "environment"), ("papermill ", "preset and papermill values"),
    ("preset ", "preset and papermill values"), ("laptop preset, SmolLM2", "environment"),
    ("results/ not writable", "environment"), ("load_lm(", "environment"),
    ("load_custom", "your own data"), ("DATASET custom", "your own data"), ("an edited custom", "stale inputs"),
    ("MIND folder", "your own data"), ("MIND download", "environment"), ("MIND: an unzip", "interruption"),
    ("ClickData", "your own data"), ("a corrupt layer cache", "corruption"), ("`student", "environment"),
    ("`site", "environment"), ("site from a run killed", "interruption"), ("6 processes", "concurrency"),
    ("ratings edited", "stale inputs"), ("a repeated", "your own data"), ("items without", "your own data"),
    ("prompts longer", "your own data"), ("models/smollm2-135m", "corruption"), ("a layer cache", "corruption"),
    ("README's `-p DATA_PATHS", "preset and papermill values"), ("a valid preset file", "preset and papermill values"),
    ("a split manifest", "corruption"), ("MODEL = ", "preset and papermill values"), ("a full disk", "environment"),
    ("`python -m llmrec course --preset nope", "preset and papermill values"), ("Ctrl-C", "interruption"),
    ("MIND news.tsv cut", "corruption"), ("what a smoke run", "environment"),
]


OUTCOMES = ("handled", "refused, fix named", "refused, no fix named", "wrong", "skipped")
# Words by which a refusal names its fix (a command, a value to give, what to change), and the
# markers by which a row's own check reports a wrong result (each row checks what it must).
FIX_PHRASES = (
    r"run (it |the same command )?again", r"rerun", r"python -m llmrec", r"make \w+", r"install", r"choose",
    r"give", r"rename", r"set \w+", r"free space", r"repair", r"restore", r"use", r"delete", r"pass",
    r"copy", r"wait", r"point", r"move", r"make it", r"take it back", r"write it again", r"drop",
    r"fill", r"download it", r"correct", r"convert", r"write every", r"e\.g\.", r"must", r"needs",
    r"did you mean", r"allowed:", r"accepts:", r"presets:", r"notebooks:", r"git checkout", r"unpack",
    r"add it", r"fix the", r"expected an?")
FIX_WORDS = re.compile(r"(?<!\w)(?:" + "|".join(FIX_PHRASES) + r")(?!\w)", re.IGNORECASE)  # whole words
WRONG_MARKS = ("NOT NOTICED", "NOT REFUSED", "CHANGED", "THE SAME KEY", "(nowhere)")


def outcome_of(text: str) -> str:
    """A row's outcome from what it got: a wrong result (its own check says so), handled (it went
    on as it should), a refusal that names a fix, one that does not, or skipped on this machine."""
    if any(mark in text for mark in WRONG_MARKS):
        return "wrong"
    if text.startswith("ok: skipped"):
        return "skipped"
    if text.startswith("ok") and not text.startswith("ok: exit 1,"):  # exit 1: the command refused
        return "handled"
    return "refused, fix named" if FIX_WORDS.search(text) else "refused, no fix named"


def family_of(what: str) -> str:
    for start, family in FAMILY_OF:
        if what.startswith(start):
            return family
    raise KeyError(f"no family for the row {what!r}: add it to FAMILY_OF or pass family=")


def new_cases(case, tmp, smoke):
    """The rows of the faults a new user met (issue: trust under faults), replayed as written."""
    # ---- interruption
    case("`kill PID` (SIGTERM) of `python -m llmrec course --preset smoke --only 02`, once its kernel "
         "runs (was: runner and kernel went on and wrote results)", lambda: _stop_course("SIGTERM"), "interruption")
    case("`kill -9` of `python -m llmrec`, a step running (was: the step went on)",
         lambda: _stop_step("SIGKILL"), "interruption")
    case("SIGHUP (the terminal closed) to `python -m llmrec`, a step running",
         lambda: _stop_step("SIGHUP"), "interruption")
    case("a killed build's .NAME.*.part folder (was: kept forever, 640 MB after four kills)",
         lambda: _leftover(tmp), "interruption")
    # ---- concurrency
    case("a second `course --preset smoke --fresh` beside a running one (was: deleted its folders)",
         lambda: _second_run(tmp), "concurrency")
    # ---- corruption
    for label, text in [("cut short", '{"notebook": "02_bas'), ("holding `null`", "null"),
                        ("with `metrics: null`", '{"metrics": null}')]:
        case(f"results/…/02_baselines.json {label}, read by 07 (was: JSONDecodeError/TypeError)",
             lambda t=text: _damaged_record(tmp, t), "corruption")
    case("a 05 point holding `null` (was: a crash on every rerun)", lambda: _null_point(tmp), "corruption")
    case("a tolerance file with a misspelt key `colums` (was: KeyError after the 30-minute course)",
         lambda: _misspelt_tolerance(tmp), "corruption")
    case("`report` over a reference CSV cut short (was: README rewritten, the rows dropped)",
         lambda: _cut_reference(tmp), "corruption")
    # ---- preset and papermill values
    case("a misspelt DIRE_MODELS entry `minilm-l7` (was: refused at 06, after 00-05)",
         lambda: _misspelt_model(tmp, smoke), "preset and papermill values")
    for label, stem, values in [
        ("a negative learning rate inside 05's LM_LR (was: a torch crash after the baselines)",
         "05_data_efficiency", {"LM_LR": {"smollm2-135m": -3e-4}}),
        ("SEED: -1 (was: a numpy traceback)", "02_baselines", {"SEED": -1}),
        ("MAX_USERS: forty (was: a numpy traceback)", "02_baselines", {"MAX_USERS": "forty"}),
        ("FRACTIONS without 1.0 (was: refused only at 05)", "05_data_efficiency", {"FRACTIONS": [0.1, 0.5]}),
    ]:
        case(f"preset value: {label}", lambda st=stem, v=values: _preset_value(tmp, smoke, st, v),
             "preset and papermill values")
    case("papermill 02 `-p MAX_USERS 40.5` (was: a numpy traceback)",
         lambda: papermill("02_baselines", "-p", "MAX_USERS", "40.5", "-p", "PRESET", "bad", cwd=tmp),
         "preset and papermill values")
    # ---- environment
    case("runs/<preset>/figures not writable (was: refused after training)",
         lambda: _blocked_figures(tmp), "environment")
    # ---- your own data
    for label, content, item_text in [
        ("ids with stray spaces (was: the users doubled)", b"user,item,rating,timestamp\nu1,a,4,1\n u1 ,b,3,2\n",
         b"item,title\na,A\nb,B\n"),
        ("numeric item ids, one text id in the items (was: 'ratings refer to items missing')",
         b"user,item,rating,timestamp\n1,10,4,1\n1,20,3,2\n", b"item,title\n10,A\n20,B\nx7,C\n"),
        ("timestamps in seconds for some users, milliseconds for others (was: accepted)",
         b"user,item,rating,timestamp\n1,a,4,1500000000\n2,b,3,1500000000000\n", b"item,title\na,A\nb,B\n"),
        ("seconds and dates in one column (was: a false 'neither a number' message)",
         b"user,item,rating,timestamp\n1,a,4,1500000000\n2,b,3,2017-07-14 02:40:00\n", b"item,title\na,A\nb,B\n"),
    ]:
        case(f"load_custom: {label}", lambda c=content, i=item_text, n=label[:8]: _own_data(tmp, n, c, i),
             "your own data")
    # ---- stale inputs
    case("README's own-data command: papermill 02 `-p DATASET custom -p DATA_PATHS …`, no -p PRESET "
         "(was: results/laptop/02_baselines.json replaced)", lambda: _readme_own_data(tmp), "stale inputs")
    case("new weights behind a model folder's name (was: 05 reused every old point)",
         lambda: _new_weights(tmp), "stale inputs")


def more_cases(case, tmp, smoke):
    """The rest of the faults a new user met (issue: trust under faults), and their neighbours."""
    from llmrec import data

    # ---- interruption
    case("a course run killed (SIGKILL) holding runs/.smoke.lock: the next run",
         lambda: _stale_lock(tmp, "killed"), "interruption")
    # ---- concurrency
    case("papermill 02 with the laptop preset's values (as Jupyter opens it) while a course run holds "
         "laptop (was: both wrote results/laptop)", lambda: _by_hand_beside_a_run(tmp), "concurrency")
    case("a damaged runs/.smoke.lock (`{\"pid\": 12`), no run alive", lambda: _stale_lock(tmp, "damaged"),
         "concurrency")
    case("two kernels' layer caches for one model named by its path, in one cache folder",
         lambda: _path_named_cache(tmp), "concurrency")
    # ---- corruption
    case("models/smollm2-135m/model.safetensors damaged in place, the same size (was: used, checked by size)",
         lambda: _converted(tmp, "same-size"), "corruption")
    case("the installed SmolLM2 GGUF cut short (was: a reshape error naming neither file nor fix)",
         lambda: _damaged_package(tmp, "cut"), "corruption")
    case("the installed MiniLM weights with other bytes, the same size", lambda: _damaged_package(tmp, "flip"),
         "corruption")
    case("an executed notebook in runs/smoke cut short, read by `site` (was: a JSONDecodeError)",
         lambda: _cut_notebook_site(tmp), "corruption")
    case("a .csv.gz ratings file cut short", lambda: _gz_cut(tmp), "corruption")
    case("PRECISION auto's remembered choice edited to hold no numbers (was: a KeyError)",
         lambda: _precision_damaged(tmp), "corruption")
    # ---- preset and papermill values
    for label, stem, values in [
        ("SEED: 2**40 (past numpy's seeds)", "02_baselines", {"SEED": 2 ** 40}),
        ("MAX_USERS: 0", "02_baselines", {"MAX_USERS": 0}),
        ("FRACTIONS holding 5", "05_data_efficiency", {"FRACTIONS": [0.1, 5, 1.0]}),
        ("LM_FRACTIONS holding 2.0", "05_data_efficiency", {"LM_FRACTIONS": [0.1, 2.0]}),
        ("06's LR_LM: -1e-3", "06_once_dire", {"LR_LM": -1e-3}),
        ("PRECISION: fp16 (a GPU-only precision)", "03_flan_t5_classification", {"PRECISION": "fp16"}),
    ]:
        case(f"preset value: {label}", lambda st=stem, v=values: _preset_value(tmp, smoke, st, v),
             "preset and papermill values")
    case("`--only 99` (no such notebook)", lambda: _cli_lines(["course", "--preset", "smoke", "--only", "99"]),
         "preset and papermill values")
    case("a preset with a top-level `name:` key", lambda: _cli_lines(
        ["course", "--preset", _write(tmp / "named.yaml", "name: mine\ncommon: {SEED: 1}\n")]),
         "preset and papermill values")
    case("a preset file named laptop.yaml outside presets/", lambda: _cli_lines(
        ["course", "--preset", _write(tmp / "elsewhere" / "laptop.yaml", "common: {SEED: 1}\n")]),
         "preset and papermill values")
    # ---- environment
    case("a read-only shared LLMREC_DATA_DIR holding the prebuilt caches: course smoke --only 01, which "
         "reads its split there (was: a 57-line traceback)", lambda: _read_only_cache(tmp, built=True), "environment")
    case("a read-only shared LLMREC_DATA_DIR without the split a notebook needs",
         lambda: _read_only_cache(tmp, built=False), "environment")
    case("a full disk while papermill saves the executed notebook (was: 68 lines, a cut notebook left)",
         lambda: _full_disk_save(tmp), "environment")
    case("`student --out` in a folder that cannot be written (was: a traceback)",
         lambda: _cli_lines(["student", "--out", str(_write(tmp / "a-file", "x")) + "/student"]), "environment")
    case("`site --out` in a folder that cannot be written",
         lambda: _cli_lines(["site", "--preset", "smoke", "--out", str(tmp / "a-file") + "/site"]), "environment")
    case("MODEL given as a path: where 03's layer cache goes (was: beside the model)",
         lambda: _path_named_cache(tmp, where=True), "environment")
    # ---- your own data
    case("a relative DATA_PATHS in a preset, `course` run from the data's folder (was: not found)",
         lambda: _relative_preset_paths(tmp), "your own data")
    case("a relative ratings path that exists nowhere", lambda: data.load_custom("d/nope.csv", "d/i.csv"),
         "your own data")
    case("a folder given as ratings_path", lambda: data.load_custom(tmp, tmp / "items.csv"), "your own data")
    case("`columns` given as a list", lambda: data.load_ratings(
        "custom", ratings_path="tests/fixtures/custom/ratings.tsv", items_path="tests/fixtures/custom/items.csv",
        columns=["user", "item"]), "your own data")
    case("`encoding: utf-9`", lambda: data.load_ratings(
        "custom", ratings_path="tests/fixtures/custom/ratings.tsv", items_path="tests/fixtures/custom/items.csv",
        encoding="utf-9"), "your own data")
    case("a ratings file without a rating column", lambda: data.load_custom(
        _write(tmp / "norating.csv", "user,item,timestamp\nu,a,1\n"), tmp / "items.csv"), "your own data")
    case("`scale: tens`", lambda: data.load_ratings(
        "custom", ratings_path="tests/fixtures/custom/ratings.tsv", items_path="tests/fixtures/custom/items.csv",
        scale="tens"), "your own data")
    case("an items file with ';' and latin-1 beside a tab-separated UTF-8 ratings file (items_sep, items_encoding)",
         lambda: _per_file_options(tmp), "your own data")
    case("ids with leading zeros (`010`)", lambda: _own_data(
        tmp, "zeros", b"user,item,rating,timestamp\n010,007,4,1\n10,7,3,2\n", b"item,title\n007,A\n7,B\n"),
         "your own data")
    # ---- stale inputs
    case("the embedded movies.csv edited after its split was cached (was: the old split served)",
         lambda: _edited_embedded(tmp), "stale inputs")


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def _stale_lock(tmp, how):
    from llmrec.course import runner

    with _own_folders(runner, tmp / f"lock-{how}"):  # the checkout's runs/ and results/ untouched
        lock = runner.runs_dir("smoke").parent / ".smoke.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        if how == "killed":
            dead = subprocess.Popen([sys.executable, "-c", "pass"])
            dead.wait()
            lock.write_text(json.dumps({"pid": dead.pid, "started": time.time() - 5}))
        else:
            lock.write_text('{"pid": 12')
        real = runner._execute
        ran = []
        runner._execute = lambda nb, *a, **k: ran.append(nb.stem)
        try:
            runner.run_course("smoke", only=["00"])
            released = not lock.exists()
        finally:
            runner._execute = real
    return f"taken over: the run went on ({', '.join(ran)}), the lock {'released' if released else 'KEPT'} after it"


@contextlib.contextmanager
def _own_folders(runner, root):
    """Within it, runs/ and results/ of this process's runs are under `root`, not in the checkout."""
    from llmrec.course import parameters

    real = runner.runs_dir, runner.results_dir, parameters.runs_dir, parameters.results_dir
    runner.runs_dir = parameters.runs_dir = lambda preset: root / "runs" / preset
    runner.results_dir = parameters.results_dir = lambda preset: root / "results" / preset
    try:
        yield
    finally:
        runner.runs_dir, runner.results_dir, parameters.runs_dir, parameters.results_dir = real


def _by_hand_beside_a_run(tmp):
    import psutil

    from llmrec.course import runner
    from llmrec.io import sha256_file
    from llmrec.paths import results_dir

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    lock = runner.runs_dir("laptop").parent / ".laptop.lock"
    had = lock.read_text() if lock.exists() else None
    lock.write_text(json.dumps({"pid": other.pid, "started": psutil.Process(other.pid).create_time()}))
    record = results_dir("laptop") / "02_baselines.json"
    before = sha256_file(record) if record.is_file() else None
    try:
        papermill("02_baselines", cwd=tmp)
        return "ran (NOT REFUSED)"
    except RuntimeError as e:
        after = sha256_file(record) if record.is_file() else None
        raise RuntimeError(f"{e} [results/laptop/02_baselines.json {'untouched' if before == after else 'CHANGED'}]") from None
    finally:
        other.kill()
        other.wait()
        lock.unlink(missing_ok=True)
        if had is not None:
            lock.write_text(had)


def _path_named_cache(tmp, where=False):
    from llmrec.cache import cached_hidden
    from llmrec.lm import load_lm

    lm = load_lm("tiny-llama")
    model = tmp / "my-models" / "mine"
    folder = tmp / "layer-cache"
    script = ("from pathlib import Path; from llmrec.cache import cached_hidden; from llmrec.lm import load_lm; "
              f"cached_hidden(load_lm('tiny-llama'), 1, [[1, 2, 3]] * 50, name={str(model) + '-packed'!r}, "
              f"folder=Path({str(folder)!r}), verbose=False)")
    if where:
        cached_hidden(lm, 1, [[1, 2, 3]], name=f"{model}-packed", folder=folder, verbose=False)
    else:
        procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
        codes = [p.wait() for p in procs]
        assert codes == [0, 0], codes
    made = sorted(str(p.parent.relative_to(tmp)) for p in tmp.rglob("manifest.json") if "layer-cache" in str(p)
                  or "my-models" in str(p))
    return f"{len(made)} cache(s): {', '.join(made)}; beside the model: {(tmp / 'my-models').exists()}"


def _damaged_package(tmp, how):
    """A copy of the installed package (its files and RECORD), damaged, found first on sys.path."""
    import importlib
    import shutil

    from llmrec import packaged_models

    alias = "smollm2-135m" if how == "cut" else "minilm-l6"
    info = packaged_models.PACKAGED_MODELS[alias]
    dist = importlib.metadata.distribution(info["package"])
    site = tmp / f"site-{alias}"
    for f in dist.files:
        src, dst = Path(f.locate()), site / f
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    weights = next(site.rglob(info["file"]))
    body = weights.read_bytes()
    weights.write_bytes(body[: len(body) // 2] if how == "cut" else body[:1000] + bytes(255 - b for b in body[1000:1100])
                        + body[1100:])
    code = (f"import sys; sys.path.insert(0, {str(site)!r}); from llmrec.lm import load_lm; "
            f"load_lm({alias!r})")
    env = dict(os.environ, LLMREC_MODEL_DIR=str(tmp / f"models-{alias}"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if proc.returncode == 0:
        return "loaded (NOT NOTICED)"
    raise RuntimeError(proc.stderr.strip().splitlines()[-1].replace(str(site), "<site>"))


def _cut_notebook_site(tmp):
    from llmrec.course import site
    from llmrec.paths import list_notebooks

    runs = tmp / "cut-runs"
    (runs / "smoke").mkdir(parents=True)
    for nb in list_notebooks():
        (runs / "smoke" / nb.name).write_text('{"cells": [{"cell_type": "co')
    real = site.runs_dir
    site.runs_dir = lambda preset: runs / preset
    try:
        site.finished_run("smoke")
    finally:
        site.runs_dir = real


def _gz_cut(tmp):
    import gzip

    from llmrec import data

    raw = gzip.compress(b"user,item,rating,timestamp\n" + b"".join(f"u{i},a,4,{i}\n".encode() for i in range(2000)))
    path = tmp / "cut.csv.gz"
    path.write_bytes(raw[: len(raw) // 2])
    data.load_custom(path, tmp / "items.csv")


def _precision_damaged(tmp):
    """PRECISION auto's remembered choice (precision/<key>.json) edited to hold no numbers."""
    from llmrec.lm import load_lm
    from llmrec.precision import choose_precision

    lm, folder = load_lm("tiny-llama"), tmp / "precision"
    choose_precision("auto", lm, 1, [[1, 2, 3, 4]] * 16, folder=folder, verbose=False)
    (remembered,) = folder.glob("*.json")
    remembered.write_text('{"measured": {"fp32_s": "fast"}}')
    choice = choose_precision("auto", lm, 1, [[1, 2, 3, 4]] * 16, folder=folder, verbose=False)
    whole = isinstance(json.loads(remembered.read_text())["measured"]["fp32_s"], float)
    return f"measured again: {choice.precision}; the file " + ("rewritten whole" if whole else "damage NOT NOTICED: left as it was")


def _can_unshare() -> bool:
    return os.geteuid() == 0 and subprocess.run(["unshare", "-m", "true"], capture_output=True,
                                                check=False).returncode == 0


def _unshared(script: str, mount: str) -> subprocess.CompletedProcess:
    """`script` (bash) in a mount namespace of its own, after `mount` (root only)."""
    return subprocess.run(["unshare", "-m", "bash", "-c", f"{mount} && {script}"], capture_output=True,
                          text=True, cwd=ROOT, check=False)


def _read_only_cache(tmp, built):
    if not _can_unshare():
        return "skipped: needs a read-only bind mount (unshare as root)"
    cache = tmp / ("ro-built" if built else "ro-empty")
    cache.mkdir()
    env = f"LLMREC_DATA_DIR={cache}"
    if built:  # the classroom's caches, built once where they could be written
        subprocess.run(f"{env} {sys.executable} -m llmrec course --preset smoke --only 01", shell=True,
                       cwd=ROOT, capture_output=True, check=True)
        step = f"{env} {sys.executable} -m llmrec course --preset smoke --only 01"
    else:
        step = (f"{env} {sys.executable} -c \"from llmrec.splits import ensure_processed; "
                "ensure_processed('movielens-small', max_users=41, seed=0)\"")
    proc = _unshared(step, f"mount --bind {cache} {cache} && mount -o remount,bind,ro {cache}")
    if proc.returncode == 0:
        return f"ran from the read-only caches ({proc.stdout.count('done in')} notebook)"
    raise RuntimeError([ln for ln in proc.stderr.splitlines() if ln.strip()][-1])


def _full_disk_save(tmp):
    if not _can_unshare():
        return "skipped: needs a 16 kB tmpfs (unshare as root)"
    runs = tmp / "full-runs"
    runs.mkdir()
    script = (f"from pathlib import Path; import sys; from llmrec.course import runner, parameters; "
              f"runner.runs_dir = parameters.runs_dir = lambda preset: Path({str(runs)!r}) / preset; "
              "sys.exit(runner.main(['--preset', 'smoke', '--only', '00']))")
    proc = _unshared(f"{sys.executable} -c \"{script}\"; ls {runs}/smoke",
                     f"mount -t tmpfs -o size=16k tmpfs {runs}")
    left = proc.stdout.split()
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")]
    raise RuntimeError(f"{' '.join(err)} Left in runs/smoke: {', '.join(left) or 'nothing'}")


def _relative_preset_paths(tmp):
    import shutil

    from llmrec.paths import results_dir, runs_dir

    mine = tmp / "me"
    (mine / "d").mkdir(parents=True)
    for f in ("ratings.tsv", "items.csv"):
        shutil.copy(ROOT / "tests" / "fixtures" / "custom" / f, mine / "d" / f)
    (mine / "mine-bad-inputs.yaml").write_text(
        "requires_models: []\ncommon:\n  DATASET: custom\n  MAX_USERS: null\n"
        "  DATA_PATHS: {ratings_path: d/ratings.tsv, items_path: d/items.csv, genre_sep: ' '}\n")
    proc = subprocess.run([sys.executable, "-m", "llmrec", "course", "--preset", "mine-bad-inputs.yaml",
                           "--only", "01"], cwd=mine, capture_output=True, text=True, check=False)
    shutil.rmtree(runs_dir("mine-bad-inputs"), ignore_errors=True)
    shutil.rmtree(results_dir("mine-bad-inputs"), ignore_errors=True)
    if proc.returncode:
        raise RuntimeError([ln for ln in proc.stderr.splitlines() if ln.strip()][-1])
    return "01 read d/ratings.tsv from the folder the command was run in"


def _per_file_options(tmp):
    from llmrec import data

    r = _write(tmp / "tab.tsv", "user\titem\trating\ttimestamp\nu\tcafé\t4\t1\n")
    i = tmp / "semi.csv"
    i.write_bytes("item;title\ncafé;Café\n".encode("latin-1"))
    loaded = data.load_custom(r, i, items_sep=";", items_encoding="latin-1")
    return f"items {sorted(loaded.items.title)}"


def _edited_embedded(tmp):
    import shutil

    import llmrec.data as data_mod
    from llmrec.splits import ensure_processed

    copy = tmp / "embedded-copy"
    shutil.copytree(data_mod.embedded_dir(), copy)
    real = data_mod.embedded_dir
    data_mod.embedded_dir = lambda: copy
    try:
        ensure_processed("movielens-small", max_users=30, seed=0)
        with open(copy / "movies.csv", "a") as f:
            f.write('999999,"An added film (2020)",Drama\n')
        ensure_processed("movielens-small", max_users=30, seed=0)
    finally:
        data_mod.embedded_dir = real


def _stop_course(how):
    import signal

    import psutil

    proc = subprocess.Popen([sys.executable, "-m", "llmrec", "course", "--preset", "smoke", "--only", "02"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        tree = psutil.Process(proc.pid).children(recursive=True)
        if any("ipykernel" in " ".join(p.cmdline()) for p in tree if p.is_running()):
            break
        time.sleep(0.2)
    time.sleep(2)
    tree = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(getattr(signal, how))
    start = time.perf_counter()
    _, alive = psutil.wait_procs(tree, timeout=20)
    took = time.perf_counter() - start
    for p in alive:
        p.kill()
    _, err = proc.communicate(timeout=20)
    last = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and "course [" not in ln][-1:]
    return (f"exit {proc.returncode}; {len(tree)} processes (runner, kernel) ended within {took:.1f} s, "
            f"{len(alive)} left; {' '.join(last)}")


def _stop_step(how):
    import signal

    import psutil

    script = ("import sys; from llmrec.course.cli import _run; "
              "sys.exit(_run('-c', 'import time; time.sleep(120)'))")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.time() + 30
    while time.time() < deadline and not psutil.Process(proc.pid).children():
        time.sleep(0.1)
    step = psutil.Process(proc.pid).children()
    proc.send_signal(getattr(signal, how))
    start = time.perf_counter()
    _, alive = psutil.wait_procs(step, timeout=10)
    for p in alive:
        p.kill()
    proc.wait(timeout=10)
    return f"the step ended within {time.perf_counter() - start:.1f} s; {len(alive)} left running"


def _leftover(tmp):
    from llmrec.io import _host, atomic_dir

    folder = tmp / "leftovers"
    folder.mkdir()
    dead = folder / f".split.{_host()}-999999999-abc.part"
    dead.mkdir()
    (dead / "hidden.pt").write_bytes(b"x" * 1000)
    with atomic_dir(folder / "split") as out:
        (out / "done").write_text("1")
    return f"swept by the next build: left {sorted(p.name for p in folder.iterdir())}"


def _second_run(tmp):
    import psutil

    from llmrec.course import runner

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock = runner.runs_dir("smoke").parent / ".smoke.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    had = lock.read_text() if lock.exists() else None
    lock.write_text(json.dumps({"pid": other.pid, "started": psutil.Process(other.pid).create_time()}))
    before = runner.runs_dir("smoke").exists()
    try:
        runner.run_course("smoke", only=["00"], fresh=True)
    finally:
        other.kill()
        other.wait()
        lock.unlink() if had is None else lock.write_text(had)
        assert runner.runs_dir("smoke").exists() == before, "runs/smoke was touched"


def _damaged_record(tmp, text):
    from llmrec.course import record

    real = record.results_dir
    record.results_dir = lambda preset: tmp / "damaged-results" / preset
    try:
        path = record.results_dir("laptop") / "02_baselines.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        record.load_metrics("02_baselines", "laptop")
    finally:
        record.results_dir = real


def _null_point(tmp):
    from llmrec.efficiency import PointStore

    store = PointStore(tmp / "points", verbose=False)
    store.path("MF", 0.1, 0).write_text("null")
    point = store.run("MF", 0.1, 0, {}, lambda: {"metrics": {"rmse": 1.0}, "n_train": 1})
    return f"recomputed: {store.recomputed} point, rmse {point['metrics']['rmse']}"


def _misspelt_tolerance(tmp):
    import shutil

    from llmrec.course import figures

    ref = tmp / "ref-figures"
    shutil.copytree(ROOT / "figures", ref)
    spec = yaml.safe_load((ref / "02_baselines.tolerance.yaml").read_text())
    spec["colums"] = spec.pop("columns")
    (ref / "02_baselines.tolerance.yaml").write_text(yaml.safe_dump(spec))
    real = figures.reference_figures_dir
    figures.reference_figures_dir = lambda: ref
    try:
        problems = figures.tolerance_file_problems()
    finally:
        figures.reference_figures_dir = real
    raise ValueError(problems[0])


def _cut_reference(tmp):
    import shutil

    from llmrec.course import report

    root = tmp / "cut-kit"
    shutil.copytree(ROOT / "figures", root / "figures")
    shutil.copy(ROOT / "README.md", root / "README.md")
    text = (root / "figures" / "04_results.csv").read_text()
    (root / "figures" / "04_results.csv").write_text(text[: len(text) // 2])
    before = (root / "README.md").read_text()
    real = report.reference_figures_dir, report.repo_root
    report.reference_figures_dir, report.repo_root = (lambda: root / "figures"), (lambda: root)
    try:
        report.update_readme()
    finally:
        report.reference_figures_dir, report.repo_root = real
        assert (root / "README.md").read_text() == before, "README was written"


def _misspelt_model(tmp, smoke):
    from llmrec.course import runner

    body = {k: v for k, v in smoke.items() if k in ("description", "common", "notebooks")}
    body["notebooks"] = dict(body.get("notebooks") or {})
    body["notebooks"]["06_once_dire"] = dict(body["notebooks"].get("06_once_dire") or {},
                                             DIRE_MODELS=["tiny-bert", "minilm-l7"])
    path = tmp / "misspelt.yaml"
    path.write_text(yaml.safe_dump(body))
    ran = []
    real = runner._execute
    runner._execute = lambda nb, *a, **k: ran.append(nb.stem)
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        runner.run_course(str(path))
    finally:
        runner._execute = real
        os.environ.pop("HF_HUB_OFFLINE")
        assert ran == [], f"notebooks ran first: {ran}"


def _preset_value(tmp, smoke, stem, values):
    from llmrec.course import runner

    body = {k: v for k, v in smoke.items() if k in ("description", "common", "notebooks")}
    body["notebooks"] = dict(body.get("notebooks") or {})
    body["notebooks"][stem] = dict(body["notebooks"].get(stem) or {}, **values)
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(body))
    runner.run_course(str(path), only=[stem[:2]])


def _blocked_figures(tmp):
    from llmrec.course import parameters

    real = parameters.runs_dir
    parameters.runs_dir = lambda preset: tmp / "blocked-runs" / preset
    try:
        folder = parameters.runs_dir("laptop")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "figures").write_text("a file where the folder goes")
        problems = parameters.unwritable_folders("laptop")
    finally:
        parameters.runs_dir = real
    raise PermissionError(problems[0])


def _own_data(tmp, name, content, items):
    from llmrec import data

    r, i = tmp / f"own-{abs(hash(name))}.csv", tmp / f"own-items-{abs(hash(name))}.csv"
    r.write_bytes(content)
    i.write_bytes(items)
    loaded = data.load_custom(r, i)
    return f"{loaded.ratings.user_id.nunique()} users, items {sorted(loaded.ratings.item_id)}"


def _readme_own_data(tmp):
    from llmrec.io import sha256_file
    from llmrec.paths import results_dir

    laptop = results_dir("laptop") / "02_baselines.json"
    before = sha256_file(laptop) if laptop.is_file() else None
    there = set(results_dir("x").parent.glob("laptop-own-*"))
    fixtures = "tests/fixtures/custom"
    paths = json.dumps({"ratings_path": f"{fixtures}/ratings.tsv", "items_path": f"{fixtures}/items.csv",
                        "genre_sep": " "})
    outcome = papermill("02_baselines", "-p", "DATASET", "custom", "-p", "DATA_PATHS", paths,
                        "-p", "EPOCHS", "2", cwd=tmp)
    after = sha256_file(laptop) if laptop.is_file() else None
    own = sorted(p.name for p in set(results_dir("x").parent.glob("laptop-own-*")) - there)
    for name in own:  # the checkout as it was
        import shutil

        shutil.rmtree(results_dir(name), ignore_errors=True)
        shutil.rmtree(ROOT / "runs" / name, ignore_errors=True)
    return (f"papermill: {outcome}; results/laptop/02_baselines.json {'untouched' if before == after else 'CHANGED'}; "
            f"recorded under results/{', '.join(own) or '(nowhere)'}/")


def _new_weights(tmp):
    from llmrec.lm import model_identity

    folder = tmp / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights of the first training")
    first = model_identity(str(folder))
    (folder / "model.safetensors").write_bytes(b"weights of the second training")
    second = model_identity(str(folder))
    return ("05's points are keyed on the weights: " + ("a new key, recomputed" if first != second else "THE SAME KEY"))


def _missing_model():
    from llmrec import packaged_models
    from llmrec.course import runner

    real = runner.locate_packaged_model

    def missing(alias):
        raise FileNotFoundError(f"the packaged model {alias!r} is not installed. Install it "
                                f"with: {packaged_models.install_command(alias)}")
    runner.locate_packaged_model = missing
    try:
        runner.run_course("laptop", only=["00"])
    finally:
        runner.locate_packaged_model = real


def _blocked_results(tmp):
    from llmrec.course import parameters, runner

    blocked = tmp / "a-file"
    blocked.write_text("")
    real = parameters.results_dir
    parameters.results_dir = lambda preset: blocked / "results"
    try:
        runner.run_course("smoke", only=["00"])
    finally:
        parameters.results_dir = real


def _edited(tmp):
    from llmrec.splits import ensure_processed

    rows = [(u, i, 1 + (u + i) % 5, 100 * k) for u in range(6) for k, i in enumerate(range(5))]
    r = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    pd.DataFrame({"item": range(5), "title": [f"T{i}" for i in range(5)]}).to_csv(
        tmp / "ei.csv", index=False)
    paths = {"ratings_path": str(tmp / "er.csv"), "items_path": str(tmp / "ei.csv")}
    r.iloc[:-4].to_csv(tmp / "er.csv", index=False)
    first = len(ensure_processed("custom", load_kwargs=paths, verbose=False).ratings)
    r.to_csv(tmp / "er.csv", index=False)
    second = len(ensure_processed("custom", load_kwargs=paths, verbose=False).ratings)
    return f"{first} ratings, then {second} after the edit"


def _half_unzipped(tmp):
    import llmrec.clicks as clicks_mod
    from llmrec.clicks import download_mind

    mind = ROOT / "tests" / "fixtures" / "mind" / "train"
    archive = tmp / "half.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("news.tsv", "behaviors.tsv"):
            zf.write(mind / name, name)
    real = clicks_mod._download_url
    clicks_mod._download_url = lambda url, dest, **k: dest.write_bytes(archive.read_bytes())
    target = tmp / "half"
    target.mkdir()
    (target / "behaviors.tsv").write_text("")  # what a killed unzip left
    try:
        folder = download_mind("small-train", folder=target)
    finally:
        clicks_mod._download_url = real
    return f"unpacked again: {sorted(p.name for p in folder.iterdir())}"


def _empty_mind(tmp):
    from llmrec.clicks import load_mind

    folder = tmp / "empty-mind"
    folder.mkdir()
    (folder / "news.tsv").write_text(
        (ROOT / "tests" / "fixtures" / "mind" / "train" / "news.tsv").read_text())
    (folder / "behaviors.tsv").write_text("")
    return repr(load_mind({"train": folder}))


def _corrupt_cache(tmp):
    from llmrec.cache import cached_hidden
    from llmrec.lm import load_lm

    lm = load_lm("tiny-llama")
    enc = [[1, 2, 3, 4], [5, 6, 7]]
    cached_hidden(lm, 2, enc, name="c", folder=tmp / "lc", verbose=False)
    (folder,) = (tmp / "lc").iterdir()
    (folder / "hidden.pt").write_bytes(b"garbage")
    return f"rebuilt: {len(cached_hidden(lm, 2, enc, name='c', folder=tmp / 'lc', verbose=False))} states"


def _out_folder(tmp, tool):
    from llmrec.course import student

    out = tmp / "mine"
    out.mkdir(exist_ok=True)
    (out / "notes.txt").write_text("my notes")
    try:
        student.build(out)
    finally:
        assert (out / "notes.txt").read_text() == "my notes"


def _site_out_data():
    from llmrec.course import site

    before = sorted(p.name for p in (ROOT / "data").iterdir())
    try:
        site.build("smoke", ROOT / "data")
    finally:
        assert sorted(p.name for p in (ROOT / "data").iterdir()) == before


def _unfinished_site(tmp):
    import shutil

    import nbformat

    from llmrec.course import site
    from llmrec.paths import runs_dir

    done = sorted(runs_dir("smoke").glob("0*.ipynb"))
    if not done:
        return "skipped: needs a smoke run (python -m llmrec.course --preset smoke)"
    victim = done[-1]
    saved = tmp / "saved.ipynb"
    shutil.copyfile(victim, saved)
    nb = nbformat.read(saved, as_version=4)
    for cell in nb.cells[len(nb.cells) // 2:]:  # what a SIGKILL leaves: later cells never ran
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.setdefault("papermill", {})["status"] = "pending"
    nbformat.write(nb, victim)
    try:
        site.build("smoke", tmp / "site")
    finally:
        shutil.copyfile(saved, victim)


def _race(tmp):
    code = ("from llmrec.splits import ensure_processed; "
            "print(len(ensure_processed('movielens-small', verbose=False).ratings))")
    env = dict(os.environ, LLMREC_DATA_DIR=str(tmp / "race"))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [p.communicate() for p in procs]
    failed = [e.strip().splitlines()[-1] for (o, e), p in zip(outs, procs) if p.returncode]
    if failed:
        raise RuntimeError(f"{len(failed)} of 6 failed: {failed[0]}")
    return f"all 6 got the split ({outs[0][0].strip().splitlines()[-1]} ratings)"


def _custom_files(tmp, name, rows):
    pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]).to_csv(tmp / f"{name}.csv", index=False)
    items = sorted({r[1] for r in rows})
    pd.DataFrame({"item": items, "title": [f"T{i}" for i in items]}).to_csv(tmp / f"{name}-i.csv", index=False)
    return {"ratings_path": str(tmp / f"{name}.csv"), "items_path": str(tmp / f"{name}-i.csv")}


def _edited_in_place(tmp):
    from llmrec.splits import ensure_processed

    rows = [(u, i, 1 + (u + i) % 5, 100 * i) for u in range(6) for i in range(5)]
    paths = _custom_files(tmp, "inplace", rows)
    first = ensure_processed("custom", load_kwargs=paths, verbose=False).content_id
    rows[0] = (0, 0, 5 if rows[0][2] != 5 else 1, 0)
    _custom_files(tmp, "inplace", rows)
    second = ensure_processed("custom", load_kwargs=paths, verbose=False).content_id
    return f"DATA_ID {first[:8]} -> {second[:8]}: 02's table and 05's points are not reused"


def _repeated(tmp):
    from llmrec import data

    rows = [(0, 1, 4, 10), (0, 2, 3, 20), (0, 1, 2, 30), (1, 1, 5, 5), (1, 2, 4, 6)]
    paths = _custom_files(tmp, "dup", rows)
    loaded = data.load_custom(paths["ratings_path"], paths["items_path"])
    return f"{len(loaded.ratings)} of 5 rows kept; info: {loaded.info.get('duplicate_ratings_dropped')} dropped"


def _untitled(tmp):
    from llmrec import data

    (tmp / "u.csv").write_text("user,item,rating,timestamp\n1,a,4,1\n1,b,3,2\n")
    (tmp / "u-i.csv").write_text("item,title\na,\nb,Bee\n")
    return str(sorted(data.load_custom(tmp / "u.csv", tmp / "u-i.csv").items["title"]))


def _long_prompts():
    import dataclasses
    import io
    from contextlib import redirect_stdout

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_rating_data
    from llmrec.lm import load_lm, prompt_encodings
    from llmrec.splits import build_processed

    d = make_rating_data()
    items = d.items.assign(title=[f"Film {i} " + "very " * 200 for i in range(len(d.items))])
    p = build_processed(dataclasses.replace(d, items=items, source_sha256="long"), history_len=6)
    said = io.StringIO()
    with redirect_stdout(said):
        enc = prompt_encodings(load_lm("tiny-bert"), p, p.split("test"))
    return f"longest {max(map(len, enc))} tokens; said: {said.getvalue().strip()}"


def _converted(tmp, how):
    import shutil

    import llmrec.lm as lm_mod
    from llmrec import packaged_models

    try:
        packaged_models.locate_packaged_model("smollm2-135m")
    except FileNotFoundError:
        return "skipped: SmolLM2 not installed (make models)"
    os.environ["LLMREC_MODEL_DIR"] = str(tmp / f"models-{how}")
    try:
        folder = lm_mod.packaged_model_folder("smollm2-135m")
        if how == "other":
            shutil.rmtree(folder)
            lm_mod.load_lm("tiny-bert").model.save_pretrained(folder)
        elif how == "same-size":
            weights = folder / "model.safetensors"
            with open(weights, "r+b") as f:  # bytes damaged in place, the file's size kept
                f.seek(weights.stat().st_size // 2)
                f.write(b"\xff" * 4096)
        else:
            weights = folder / "model.safetensors"
            with open(weights, "r+b") as f:
                f.truncate(weights.stat().st_size // 2)
        start = time.perf_counter()
        lm = lm_mod.load_lm("smollm2-135m")
        return f"converted again in {time.perf_counter() - start:.0f} s; loads {lm.model.config.model_type}"
    finally:
        os.environ.pop("LLMREC_MODEL_DIR")


def _nan_cache(tmp):
    import torch

    from llmrec.cache import cached_hidden
    from llmrec.lm import load_lm

    lm = load_lm("tiny-llama")
    enc = [[1, 2, 3, 4], [5, 6, 7]]
    cached_hidden(lm, 2, enc, name="n", folder=tmp / "nan", verbose=False)
    (folder,) = (tmp / "nan").iterdir()
    hidden = torch.load(folder / "hidden.pt")
    hidden[0][0, 0] = float("nan")
    torch.save(hidden, folder / "hidden.pt")
    again = cached_hidden(lm, 2, enc, name="n", folder=tmp / "nan", verbose=False)
    return f"rebuilt: NaN left {sum(int(torch.isnan(h).sum()) for h in again)}"


def _papermill_dict():
    from llmrec.course import parameters

    declared = parameters.notebook_parameters(ROOT / "notebooks" / "02_baselines.ipynb")
    ns = {"DATA_PATHS": '{"ratings_path": "my/ratings.csv", "items_path": "my/items.csv"}'}
    parameters.parse_text_parameters(declared, ns)
    return f"DATA_PATHS = {ns['DATA_PATHS']!r}"


def _outside_preset(tmp, smoke):
    from llmrec.course import runner

    body = dict(smoke)
    path = tmp / "mine.yaml"
    path.write_text(yaml.safe_dump(body))
    import shutil

    from llmrec.paths import results_dir, runs_dir

    try:
        runner.run_course(str(path), only=["00"])
    finally:  # the checkout as it was
        for folder in (runs_dir("mine"), results_dir("mine")):
            shutil.rmtree(folder, ignore_errors=True)
    return "00 ran"


def _null_manifest(tmp):
    from llmrec.splits import ensure_processed

    rows = [(u, i, 1 + (u + i) % 5, 100 * i) for u in range(6) for i in range(5)]
    paths = _custom_files(tmp, "nullm", rows)
    from llmrec.paths import processed_dir

    ensure_processed("custom", load_kwargs=paths, verbose=False)
    (manifest,) = [p for p in processed_dir().glob("custom-*/manifest.json")
                   if paths["ratings_path"] in p.read_text()]
    manifest.write_text("null")
    return f"rebuilt: {len(ensure_processed('custom', load_kwargs=paths, verbose=False).ratings)} ratings"


def _empty_model(tmp):
    (tmp / "empty-model").mkdir(exist_ok=True)
    load_lm_ = __import__("llmrec.lm", fromlist=["load_lm"]).load_lm
    load_lm_(str(tmp / "empty-model"))


def _relative_model(tmp):
    from llmrec.lm import load_lm

    folder = ROOT / "benchmarks" / "out" / "saved-tiny"
    tiny = load_lm("tiny-bert")
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    here = os.getcwd()
    os.chdir(ROOT / "notebooks")
    try:
        return f"loads: {load_lm('benchmarks/out/saved-tiny').family}"
    finally:
        os.chdir(here)


def _full_disk(tmp):
    full = tmp / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(full)],
                             capture_output=True, check=False).returncode == 0
    if not mounted:
        return "skipped: needs a 1 MB tmpfs (mount as root)"
    try:
        code = ("from pathlib import Path; from llmrec.cache import cached_hidden; from llmrec.lm import load_lm; "
                "lm = load_lm('tiny-llama'); "
                f"cached_hidden(lm, 2, [[1] * 400] * 200, name='f', folder=Path({str(full)!r}), verbose=False)")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    finally:
        subprocess.run(["umount", str(full)], check=False)


def _cli_lines(args):
    proc = subprocess.run([sys.executable, "-m", "llmrec", *args], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    lines = proc.stderr.strip().splitlines()
    return f"exit {proc.returncode}, {len(lines)} line(s): {lines[-1] if lines else ''}"


def _ctrl_c():
    import signal

    # as from a terminal: Python's own SIGINT handler (a background job inherits SIGINT ignored),
    # in a process group of its own that the Ctrl-C reaches whole, kernel included
    run = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
           "sys.argv = ['llmrec', 'course', '--preset', 'smoke', '--only', '02']; "
           "runpy.run_module('llmrec', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", run], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(8)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    lines = [ln for ln in err.replace("\r", "\n").splitlines()
             if ln.strip() and "course [smoke]" not in ln]
    return f"exit {proc.returncode}, {len(lines)} line(s): {' / '.join(lines[-2:])}"


def _papermill_blocked(tmp):
    from llmrec.paths import results_dir

    blocked = results_dir("blocked")
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the folder should be")
    try:
        return papermill("02_baselines", "-p", "PRESET", "blocked", cwd=tmp)
    finally:
        import shutil

        from llmrec.paths import runs_dir

        blocked.unlink()
        shutil.rmtree(runs_dir("blocked"), ignore_errors=True)


def _cut_news(tmp):
    from llmrec.clicks import load_mind

    folder = tmp / "cut-mind"
    folder.mkdir()
    source = ROOT / "tests" / "fixtures" / "mind" / "train"
    (folder / "behaviors.tsv").write_text((source / "behaviors.tsv").read_text())
    (folder / "news.tsv").write_text("".join((source / "news.tsv").read_text().splitlines(True)[:2]))
    load_mind({"train": folder})


def _tmp_leftovers(tmp):
    scratch = tmp / "scratch"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    subprocess.run([sys.executable, "-m", "llmrec.course", "--preset", "smoke", "--only", "00"],
                   cwd=ROOT, env=env, capture_output=True, check=True)
    return f"{sorted(p.name for p in scratch.iterdir()) or 'nothing'}"


if __name__ == "__main__":
    main()
