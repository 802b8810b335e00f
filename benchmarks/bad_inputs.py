"""Bad inputs and faults a new user runs into: the error each gets now, and how many seconds it
takes to get it. Prints a Markdown table (and writes benchmarks/out/bad_inputs.md).

    .venv/bin/python benchmarks/bad_inputs.py          # about two minutes on 2 CPU cores

Every case runs in a temporary folder (LLMREC_DATA_DIR) and leaves the checkout as it was.
"""

from __future__ import annotations

import os
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
    from llmrec import course, data
    from llmrec.clicks import download_mind, load_mind
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

    def case(what, fn):
        outcome, seconds = attempt(fn)
        cases.append({"bad input": what, "what it gets now": outcome, "seconds": seconds})
        print(f"{seconds:6.1f} s  {what}: {outcome[:160]}", flush=True)

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
        case(f"preset with `{label}`", lambda p=path: course.run_course(p, only=["02"]))
    case("preset with a YAML syntax error",
         lambda: course.load_preset(preset("syntax", "common:\n  SEED: [1, 2\n")))
    case("preset that is a list", lambda: course.load_preset(preset("list", "- SEED: 1\n")))
    case("laptop preset, SmolLM2 not installed (simulated)", lambda: _missing_model(course))
    case("results/ not writable (a file in its place)", lambda: _blocked_results(course, tmp))
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
    OUT.mkdir(parents=True, exist_ok=True)
    md = "\n".join(["| bad input | what it gets now | seconds |", "|---|---|---|"] + [
        f"| {r['bad input']} | {r['what it gets now'].replace('|', '/')} | {r['seconds']:.1f} |"
        for r in cases])
    (OUT / "bad_inputs.md").write_text(md + "\n")
    print(md)


def _missing_model(course):
    from llmrec import system

    real = system.locate_packaged_model

    def missing(alias):
        raise FileNotFoundError(f"the packaged model {alias!r} is not installed. Install it "
                                f"with: {system.install_command(alias)}")
    system.locate_packaged_model = missing
    try:
        course.run_course("laptop", only=["00"])
    finally:
        system.locate_packaged_model = real


def _blocked_results(course, tmp):
    blocked = tmp / "a-file"
    blocked.write_text("")
    real = course.results_dir
    course.results_dir = lambda preset: blocked / "results"
    try:
        course.run_course("smoke", only=["00"])
    finally:
        course.results_dir = real


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
    import llmrec.data as data_mod
    from llmrec.clicks import download_mind

    mind = ROOT / "tests" / "fixtures" / "mind" / "train"
    archive = tmp / "half.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("news.tsv", "behaviors.tsv"):
            zf.write(mind / name, name)
    real = data_mod._download_url
    data_mod._download_url = lambda url, dest, **k: dest.write_bytes(archive.read_bytes())
    target = tmp / "half"
    target.mkdir()
    (target / "behaviors.tsv").write_text("")  # what a killed unzip left
    try:
        folder = download_mind("small-train", folder=target)
    finally:
        data_mod._download_url = real
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


if __name__ == "__main__":
    main()
