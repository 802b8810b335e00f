"""Paper vs kit: one row per claim of the papers, with the kit's number, its interval and a
verdict (notebook 07), and README's results section, generated from figures/.

Verdicts, one rule for every claim (`verdict`): the kit's number is a difference whose sign the
paper predicts, with a 95% interval whose kind the table prints.
- reproduced: the interval lies wholly on the paper's side;
- not reproduced: the interval lies wholly on the other side;
- inconclusive: the interval holds zero (the note says what width would decide it);
- direction only / opposite direction only: no interval, so the number gives a direction only;
- no result: the notebook ran and gave no number (NaN);
- not run in this preset: the preset does not run what the claim needs.
"Matches or beats" claims are non-inferiority: the paper's side extends to a stated margin.

    python -m llmrec.course.report --readme          # rewrite README's results section from figures/
    python -m llmrec.course.report --readme --check  # fail if README differs from what figures/ gives
    python -m llmrec.course.report --times --readme  # first benchmarks/course_times.csv from the runs' times
"""

from __future__ import annotations

import argparse
import csv
import io
import sys

import numpy as np
import pandas as pd

from ..efficiency import percent, seeds_by_fraction
from ..io import replace_section
from ..metrics import seeds_interval
from ..paths import reference_figures_dir, repo_root
from ..readings import paired, signed_number
from . import workshop
from .papers import paper_findings, paper_numbers

NOTEBOOKS = ("02_baselines", "03_flan_t5_classification", "04_flan_t5_regression",
             "05_data_efficiency", "06_once_dire")
VERDICTS = ("reproduced", "inconclusive", "direction only", "opposite direction only", "not reproduced",
            "no result", "not run in this preset")
MATCH_MARGIN = 0.01  # RMSE: "matches" means no worse than this (the kit's margin, fixed before any run)
CACHE_MARGIN = 0.2   # the cache delivers at least 80% of the speed-up the layer count predicts
BOOTSTRAP_IMPRESSIONS = "95% bootstrap over the {n} test impressions (paired) and each side's seeds"


def verdict(value: float | None, low: float | None = None, high: float | None = None,
            direction: int = -1, margin: float = 0.0) -> str:
    """`value` (with its interval, if any) against 0: the paper says the sign is `direction`
    (-1: below zero, e.g. "RMSE difference < 0"; +1: above). `margin` > 0 makes it "matches or
    beats" (non-inferiority): within `margin` of the wrong side still counts for the paper.

    None: the claim was not run; NaN: it ran and gave no number ("no result"). An interval decides
    (reproduced / not reproduced / inconclusive); without one the point gives at most a direction."""
    if value is None:
        return "not run in this preset"
    if pd.isna(value):
        return "no result"
    v = direction * value
    bounds = [None if x is None or pd.isna(x) else direction * x for x in (low, high)]
    if None not in bounds:
        lo, hi = sorted(bounds)
        if lo > -margin:
            return "reproduced"
        if hi < -margin:
            return "not reproduced"
        return "inconclusive"
    return "direction only" if v > -margin else "opposite direction only"


def deciding_width(value, low, high, direction: int = -1, margin: float = 0.0, units: str = "test units") -> str:
    """For an inconclusive verdict: the interval that would decide it, in words. The boundary is 0
    (or the margin, for "matches or beats"); an interval's width falls as 1/sqrt(its units)."""
    half = (high - low) / 2
    distance = abs(direction * value + margin)
    if pd.isna(half) or pd.isna(value) or distance < 1e-12:
        return "no interval width decides a difference that sits on the boundary"
    times = (half / distance) ** 2
    factor = f"{times:.0f}" if times >= 10 else f"{times:.1f}"
    return (f"deciding it needs an interval of about ±{distance:.4f} around this difference (this one "
            f"is ±{half:.4f}): roughly {factor}× as many {units}, if the difference stayed where it is")


def _row(fid: str, kit: str, value, low, high, interval: str, paper_number: str, why: str,
         direction: int = -1, margin: float = 0.0, units: str = "test units") -> dict:
    finding = paper_findings()[fid]
    said = verdict(value, low, high, direction, margin)
    if said == "inconclusive":
        why = f"{why}; {deciding_width(value, low, high, direction, margin, units)}"
    return {"claim": fid, "paper says": finding["statement"], "paper's number": paper_number,
            "kit measures": kit, "value": value, "low": low, "high": high,
            "interval": interval, "verdict": said, "why": why}


def _not_run(fid: str, paper_number: str, why: str) -> dict:
    return _row(fid, "", None, None, None, "", paper_number, why)


def _auc(row: str, column: str = "NAML", table: str = "Table 2", dataset: str = "MIND") -> str:
    """An AUC of ONCE as printed, from data/papers/numbers.csv."""
    t = paper_numbers()
    hit = t[(t.paper == "once2024") & (t.table == table) & (t.dataset == dataset) & (t.row == row)
            & (t.column == column) & (t.metric == "auc")]
    return f"{hit.value.iloc[0]:.2f}"


def _method(table: list[dict], name: str) -> dict | None:
    return next((r for r in table if r["method"] == name), None)


KANG = "Table 2 (not read here)"


def _f(x) -> float:
    """A recorded number: the records store NaN as null (JSON), which must read as NaN ("no
    result"), not fail or read as "not run"."""
    return float("nan") if x is None else float(x)


# --------------------------------------------------------------------------- Kang et al.

def zero_shot_worse_than_mf(m: dict) -> dict:
    """04 pairs 03's zero-shot predictions with MF's on the zero-shot sample's test users, for each
    way 03 scored zero-shot. The claim reads the way whose answers are ratings: the one where the
    five rating tokens hold the most next-token probability (no rating is looked at to choose);
    the other way is named in `why`."""
    fid = "kang2023.zero_shot_worse_than_mf"
    ways = (m.get("04_flan_t5_regression") or {}).get("zero_shot_vs_mf")
    if ways and "zero_shot" in ways:  # a record of one way only (before the answer could be opened)
        ways = {"zero-shot": ways}
    if not ways:
        return _not_run(fid, KANG, "03 scored no zero-shot row, or 04 could not pair it with MF")
    share = lambda name: _f(ways[name].get("rating_token_share"))
    name = max(ways, key=lambda k: (0.0 if share(k) != share(k) else share(k), k == "zero-shot"))
    z = ways[name]
    zs, mf = _f(z["zero_shot"]), _f(z["mf"])
    said = lambda k: f" (the rating tokens hold {share(k):.0%} of its next-token probability)" if share(k) == share(k) else ""
    others = "; ".join(f"{k}{said(k)}: {_f(v['zero_shot']):.3f}" for k, v in ways.items() if k != name)
    return _row(fid, "zero-shot RMSE − MF RMSE, on the zero-shot sample's test users", zs - mf,
                _f(z["low"]), _f(z["high"]), f"95% paired bootstrap over those {z['n_users']} test users", KANG,
                f"{name}{said(name)} {zs:.3f} against MF {mf:.3f} on the same {z['n_users']} test users"
                + (f"; {others}" if others else ""), direction=+1, units="test users")


def regression_beats_classification(m: dict) -> dict:
    fid = "kang2023.regression_beats_classification"
    m04 = m.get("04_flan_t5_regression") or {}
    rc = m04.get("regression_vs_classification")
    reg = next((r for r in m04.get("table", []) if r["method"].endswith("fine-tuned regression")), None)
    cls = next((r for r in m04.get("table", []) if r["method"].endswith("fine-tuned classification")), None)
    if not (rc and reg and cls):
        return _not_run(fid, KANG, "04 did not compare them (03 must run with 04's model and examples)")
    r_, c_ = _f(reg["rmse"]), _f(cls["rmse"])
    return _row(fid, "RMSE of regression − classification (same model, same examples)", r_ - c_,
                _f(rc["low"]), _f(rc["high"]), "95% paired bootstrap over test users, 1 training seed each", KANG,
                f"regression {r_:.3f}, classification {c_:.3f}", units="test users")


def fine_tuned_matches_transformer(m: dict) -> dict:
    """The fine-tuned LM row with the lowest validation RMSE (04's own rows) against
    Transformer+MLP, paired on the test users; "matches" within MATCH_MARGIN."""
    fid = "kang2023.fine_tuned_matches_transformer"
    m04 = m.get("04_flan_t5_regression") or {}
    val = m04.get("validation_rmse") or {}
    rows = {r["method"]: r for r in m04.get("versus_mf", [])}
    family = {r["method"]: r.get("family") for r in m04.get("table", [])}
    tuned = [n for n in val if family.get(n) == "language model" and n in rows  # fine-tuned LMs, not hybrids with MF
             and not pd.isna(rows[n].get("vs_transformer_low", float("nan")))]
    tm = _method(m04.get("table", []), "Transformer+MLP")
    if not (tuned and tm):
        return _not_run(fid, KANG, "04 did not run, or 02's Transformer+MLP predictions were not there to pair with")
    best = min(tuned, key=val.get)
    r = rows[best]
    lm_, tm_ = _f(r["rmse"]), _f(tm["rmse"])
    return _row(fid, "RMSE of the fine-tuned LM chosen on validation − Transformer+MLP", lm_ - tm_,
                _f(r["vs_transformer_low"]), _f(r["vs_transformer_high"]), "95% paired bootstrap over test users", KANG,
                f"{best} {lm_:.3f} (validation {_f(val[best]):.3f}, the lowest of Kang et al.'s {len(tuned)} fine-tuned rows; the kit's own rows are read in 04) "
                f"against Transformer+MLP {tm_:.3f}; 'matches' = no worse by {MATCH_MARGIN}",
                margin=MATCH_MARGIN, units="test users")


def bigger_is_better(m: dict) -> dict:
    fid = "kang2023.bigger_is_better"
    m05 = m.get("05_data_efficiency")
    size_rows = (m05 or {}).get("sizes", [])
    if len(size_rows) < 2:
        return _not_run(fid, KANG, ("05 fine-tunes one language model in this preset: offline, one model per family "
                                    "installs (SmolLM2-135M, and MiniLM, which differs in architecture and formulation "
                                    "too, so their gap would not be one of size); the paper preset compares three "
                                    "Flan-T5 sizes") if m05 else "05 did not run")
    small, large = sorted(size_rows, key=lambda r: r["parameters"])[:: len(size_rows) - 1]
    big, little = _f(large["rmse there"]), _f(small["rmse there"])
    return _row(fid, "RMSE of the larger LM − the smaller, each at its largest fraction",
                big - little, None, None, "none (mean of the seeds)", KANG,
                f"{large['model']} {big:.3f} vs {small['model']} {little:.3f}")


def data_efficient(m: dict) -> dict:
    fid = "kang2023.data_efficient"
    m05 = m.get("05_data_efficiency") or {}
    lm = [r for r in m05.get("matches", []) if r["method"].endswith("regression")]
    if not (lm and m05.get("full_data_mf")):
        return _not_run(fid, "data-efficiency figure (not read here)", "05 trained no language model")
    r, mf = lm[0], _f(m05["full_data_mf"]["rmse"])
    reached, at_largest = r["matches_mf_rmse_from"], _f(r["rmse_at_largest"])
    return _row(fid, f"{r['method']} RMSE at its largest fraction − full-data MF RMSE", at_largest - mf,
                None, None, "none (mean of the seeds at each fraction)", "data-efficiency figure (not read here)",
                (f"reaches full-data MF from {reached:.1%} of the data" if reached is not None else
                 f"not reached up to {r['largest_fraction']:.1%} of the data, the largest this preset trains on "
                 f"({at_largest:.3f} vs {mf:.3f})"))


# --------------------------------------------------------------------------- ONCE

BODY = ("every row shares one recommender body (NAML's user encoder: additive attention over the history; "
        "a dot product), so only the content encoder differs: compare with the paper's NAML column")


def once_rows(m06: dict) -> pd.DataFrame:
    """06's main rows, with `val_auc` (mean over seeds) for choosing and the per-impression AUCs."""
    summary = pd.DataFrame(m06.get("summary", []))
    per = m06.get("per_impression_auc") or {}
    if summary.empty or "val_auc" not in summary or not per:
        return pd.DataFrame()
    return summary[summary.method.isin(per)].reset_index(drop=True)


def once_versus(m06: dict, a: str, b: str, n_boot: int = 1000) -> tuple[float, float, float]:
    """AUC(a) − AUC(b) over 06's test impressions (each method: the mean of its seeds) and its
    95% bootstrap interval, paired on the impressions, the seeds of each side resampled too
    (`metrics.seeds_interval`; 06's bootstrap seed)."""
    per = m06["per_impression_auc"]
    x, y = np.atleast_2d(np.asarray(per[a], dtype=float)), np.atleast_2d(np.asarray(per[b], dtype=float))
    low, high = seeds_interval(x, y, n_boot=n_boot, seed=int(m06.get("bootstrap_seed", 0)))
    return float(x.mean() - y.mean()), low, high


def _n_units(m06: dict, method: str) -> int:
    return int(np.shape(m06["per_impression_auc"][method])[-1])


def _budget(m06: dict) -> str:
    epochs, n = m06.get("epochs", 1), m06.get("train_samples")
    samples = f"{n:,} training samples" if isinstance(n, int) else "its training samples"
    return (f"each run {samples} for at most {epochs} epoch{'s' if epochs != 1 else ''}, the best on "
            "validation kept: the Originals learn their word embeddings in that budget, DIRE starts pretrained")


def _best(rows: pd.DataFrame) -> pd.Series | None:
    """The row with the highest validation AUC (never the test AUC; the first of a tie, as 06
    reads it); None when no row has one."""
    val = pd.to_numeric(rows.val_auc, errors="coerce")
    return None if val.isna().all() else rows.loc[val.idxmax()]


ONCE_NOT_RUN = "06 did not run (or recorded no per-impression AUCs)"


def dire_beats_original(m: dict) -> dict:
    fid = "once2024.dire_beats_original"
    paper = f"MIND, NAML AUC: {_auc('DIRE LLaMA-7B')} (LLaMA-7B) vs {_auc('Original')}"
    m06 = m.get("06_once_dire") or {}
    rows = once_rows(m06)
    if rows.empty or not (rows.family == "Original").any() or (rows.family == "Original").all():
        return _not_run(fid, paper, ONCE_NOT_RUN)
    orig, dire = _best(rows[rows.family == "Original"]), _best(rows[rows.family != "Original"])
    if orig is None or dire is None:
        return _row(fid, "", float("nan"), None, None, "", paper, "06 recorded no validation AUC to choose by")
    value, low, high = once_versus(m06, dire.method, orig.method)
    return _row(fid, "test AUC of the DIRE row − the Original row, each the best on validation", value, low, high,
                BOOTSTRAP_IMPRESSIONS.format(n=_n_units(m06, orig.method)), paper,
                f"{dire.method} {dire.auc:.3f} vs {orig.method} {orig.auc:.3f}; {BODY}; {_budget(m06)}",
                direction=+1, units="test impressions")


def larger_encoder_better(m: dict, sizes: dict | None = None) -> dict:
    fid = "once2024.larger_encoder_better"
    paper = f"MIND, NAML AUC: {_auc('DIRE LLaMA-7B')} (LLaMA-7B) vs {_auc('DIRE BERT-12L')} (BERT-12L)"
    m06 = m.get("06_once_dire") or {}
    rows = once_rows(m06)
    chosen = {model: rows[(rows.model == model) & (rows.k == c["k"]) & (rows.lora == c["lora"])]
              for model, c in (m06.get("chosen") or {}).items()} if not rows.empty else {}
    chosen = {k: v.iloc[0] for k, v in chosen.items() if len(v)}
    if not sizes or len(chosen) < 2 or not set(chosen) <= set(sizes):
        return _not_run(fid, paper, "06 ran one encoder (or their sizes are unknown)")
    small, large = sorted(chosen, key=lambda name: sizes[name])[:: len(chosen) - 1]
    value, low, high = once_versus(m06, chosen[large].method, chosen[small].method)
    return _row(fid, "test AUC of the larger DIRE encoder − the smaller (each at its k chosen on validation)",
                value, low, high, BOOTSTRAP_IMPRESSIONS.format(n=_n_units(m06, chosen[large].method)),
                paper, f"{large} ({sizes[large] / 1e6:.1f}M) {chosen[large].auc:.3f} vs {small} "
                f"({sizes[small] / 1e6:.1f}M) {chosen[small].auc:.3f}: small-model analogues of LLaMA-7B and BERT-12L",
                direction=+1, units="test impressions")


def frozen_is_strong(m: dict, sizes: dict | None = None) -> dict:
    """The paper's claim is about its largest encoder (LLaMA-7B) frozen: the kit grades the frozen
    (k = 0) row of its largest encoder, fixed by size before any result, against the Original
    chosen on validation."""
    fid = "once2024.frozen_is_strong"
    paper = f"MIND, NAML AUC: {_auc('LLaMA-7B, 32 frozen / 0 tuned', table='Table 3')} (k = 0) vs {_auc('Original')}"
    m06 = m.get("06_once_dire") or {}
    rows = once_rows(m06)
    if rows.empty or "k" not in rows or not (rows.family == "Original").any():
        return _not_run(fid, paper, ONCE_NOT_RUN)
    frozen = rows[(rows.family != "Original") & (rows.k == 0) & ~rows.lora.astype(bool)]
    frozen = frozen[frozen.model.isin(list(sizes or {}))]
    if frozen.empty:
        return _not_run(fid, paper, "06 ran no fully frozen encoder (k = 0) over its seeds, or its size is unknown")
    row = frozen.loc[frozen.model.map(sizes).idxmax()]
    orig = _best(rows[rows.family == "Original"])
    if orig is None:
        return _row(fid, "", float("nan"), None, None, "", paper, "06 recorded no validation AUC to choose by")
    value, low, high = once_versus(m06, row.method, orig.method)
    return _row(fid, "test AUC of the largest encoder fully frozen (k = 0) − the Original chosen on validation",
                value, low, high, BOOTSTRAP_IMPRESSIONS.format(n=_n_units(m06, row.method)), paper,
                f"{row.method} ({sizes[row.model] / 1e6:.1f}M, the largest encoder 06 ran) {row.auc:.3f} vs "
                f"{orig.method} {orig.auc:.3f}; {_budget(m06)}", direction=+1, units="test impressions")


def cache_compute_share(m: dict) -> dict:
    """Graded against full fine-tuning, as the paper's 2-of-32 share is: the measured speed-up of
    the cache ÷ the layer count's prediction (L/k), at least 1 - CACHE_MARGIN."""
    fid = "once2024.cache_compute_share"
    paper = "2 of 32 layers, about 6% of the compute"
    speed = {r["way"]: r for r in (m.get("06_once_dire") or {}).get("cache_speed", [])}
    full = speed.get("full fine-tuning")
    if not full:
        return _not_run(fid, paper, "06 did not time the cache")
    return _row(fid, "speed-up of the cache over full fine-tuning ÷ the layer count's L/k, − 1 (a timing: "
                "numbers not compared across runs)", _f(full["of theory"]) - 1,
                _f(full.get("of theory low")) - 1, _f(full.get("of theory high")) - 1,
                "95% t-interval over the timed steps (log scale)", paper,
                f"{_f(full['speed-up of the cache']):.2f}× measured against {_f(full['theory']):.2f}× predicted "
                f"({_f(full['of theory']):.0%} of it); counts for the paper from {1 - CACHE_MARGIN:.0%}",
                direction=+1, margin=CACHE_MARGIN, units="timed steps")


def claims(metrics: dict[str, dict], sizes: dict[str, int] | None = None) -> pd.DataFrame:
    """The claims table from the notebooks' recorded metrics (`metrics[notebook]` is the
    "metrics" of results/<preset>/<notebook>.json; a missing notebook makes its claims "not run").
    `sizes`: parameter counts of 06's content encoders, for "larger is better"."""
    return pd.DataFrame([
        zero_shot_worse_than_mf(metrics), regression_beats_classification(metrics),
        fine_tuned_matches_transformer(metrics), bigger_is_better(metrics), data_efficient(metrics),
        dire_beats_original(metrics), larger_encoder_better(metrics, sizes), frozen_is_strong(metrics, sizes),
        cache_compute_share(metrics),
    ])


# --------------------------------------------------------------------------- README

START, END = "<!-- results: generated by `make report` from figures/; do not edit -->", "<!-- results: end -->"


def _fmt(x, digits=3) -> str:
    return "" if pd.isna(x) else f"{x:.{digits}f}"


def _signed(x) -> str:
    return "" if pd.isna(x) else signed_number(x)


class ReportError(ValueError):
    """A reference figure the report cannot use: names the file and how to get it back."""


def read_figure(fig, name: str) -> pd.DataFrame:
    """figures/<name>.csv, read only when whole: a file cut short (it ends mid-line) or with a
    line of another width than its header is refused, naming it, before anything is written
    (a cut file had been published in README with its rows dropped)."""
    path = fig / f"{name}.csv"
    fix = "take it back from git (git checkout figures/) or refresh figures/ on purpose (make figures)"
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path} cannot be read ({type(e).__name__}: {e}); {fix}") from None
    if not text.endswith("\n"):
        raise ReportError(f"{path} ends in the middle of a line: it was cut short; {fix}")
    widths = [len(row) for row in csv.reader(io.StringIO(text))]
    for line, width in enumerate(widths[1:], start=2):
        if width != widths[0]:
            raise ReportError(f"{path}: line {line} has {width} fields, its header {widths[0]}; {fix}")
    return pd.read_csv(io.StringIO(text))  # the text just checked, not a second read


def _claims_table(fig) -> list[str]:
    out = [("**Paper vs kit** ([figures/07_claims.csv](figures/07_claims.csv), notebook 07; verdicts as "
            "defined there):"), "",
           "| the paper | the kit (laptop preset) | 95% interval (its kind) | verdict |", "|---|---|---|---|"]
    for r in read_figure(fig, "07_claims").to_dict("records"):
        interval = (f"{_signed(r['low'])} … {_signed(r['high'])} ({r['interval']})" if not pd.isna(r["low"])
                    else r["interval"] if isinstance(r["interval"], str) else "")
        number = r["paper's number"]
        paper = r["paper says"] + (f" ({number})" if "not read" not in number else "")
        out.append(f"| {paper} | {r['why']} | {interval} | **{r['verdict']}** |")
    return out


def _rating_table(fig) -> list[str]:
    t3 = read_figure(fig, "03_results")
    users = dict(zip(t3.method, t3.users)) if "users" in t3 else {}
    n_test = max(users.values()) if users else None
    out = [("**Rating prediction** ([figures/04_results.csv](figures/04_results.csv); users: how many test users "
            "the row was scored on, from [figures/03_results.csv](figures/03_results.csv) — compare rows on "
            "the same users only; the last column is the 95% paired-bootstrap interval of the RMSE difference "
            "to MF on the same test users):"), "",
           "| method | users | RMSE | MAE | ROC-AUC | RMSE − MF, 95% interval |", "|---|---|---|---|---|---|"]
    for r in read_figure(fig, "04_results").itertuples():
        interval = "" if pd.isna(r.vs_mf_low) or r.method == "MF" else f"{_signed(r.vs_mf_low)} … {_signed(r.vs_mf_high)}"
        n = users.get(r.method, n_test)
        out.append(f"| {r.method} | {'' if n is None else int(n)} | {_fmt(r.rmse)} | {_fmt(r.mae)} | {_fmt(r.auc)} | {interval} |")
    return out


def _efficiency_table(fig) -> list[str]:
    eff = read_figure(fig, "05_data_efficiency")
    table = eff.groupby(["method", "fraction"]).rmse.mean().unstack("fraction")
    fractions = list(table.columns)
    out = [("**Data efficiency** ([figures/05_data_efficiency.csv](figures/05_data_efficiency.csv); "
            f"RMSE, mean of {eff.seed.nunique()} seeds, at each fraction of the training examples):"), "",
           "| method | " + " | ".join(f"{f:.1%}".replace(".0%", "%") for f in fractions) + " |",
           "|---|" + "---|" * len(fractions)]
    for method, r in table.iterrows():
        out.append(f"| {method} | " + " | ".join(_fmt(r[f]) if not pd.isna(r[f]) else "—" for f in fractions) + " |")
    return out


def _once_table(fig) -> list[str]:
    once = read_figure(fig, "06_results")
    out = [("**ONCE/DIRE** ([figures/06_results.csv](figures/06_results.csv); the mean of "
            f"{int(once.seeds.max())} seeds; the AUC's 95% bootstrap interval over the test impressions; every row "
            "shares NAML's user encoder and a dot product, only the content encoder differs):"), "",
           "| content encoder | AUC (95% interval) | MRR | nDCG@5 | nDCG@10 |", "|---|---|---|---|---|"]
    for r in once.to_dict("records"):
        out.append(f"| {r['method']} | {r['auc']:.3f} ({r['auc_low']:.3f} … {r['auc_high']:.3f}) | {_fmt(r['mrr'])} | "
                   f"{_fmt(r['ndcg@5'])} | {_fmt(r['ndcg@10'])} |")
    return out


def _cache_sentence(fig) -> str:
    speed = read_figure(fig, "06_cache_speed").set_index("way")
    return ("Caching the frozen layers (06, [figures/06_cache_speed.csv](figures/06_cache_speed.csv)): a "
            f"training step {speed.loc['full fine-tuning', 'speed-up of the cache']:.1f}× faster than full "
            f"fine-tuning (the layer count predicts {speed.loc['full fine-tuning', 'theory']:.1f}×) and "
            f"{speed.loc['frozen, no cache', 'speed-up of the cache']:.1f}× faster than running the frozen "
            f"layers every step ({speed.loc['frozen, no cache', 'theory']:.1f}× predicted).")


def readme_results(figures=None) -> str:
    """README's results section, from the reference figures' CSVs: the claims, the rating table,
    the data-efficiency table, ONCE's rows and the cache's speed-up, then their reading."""
    fig = figures or reference_figures_dir()
    return "\n".join([START, "", *_claims_table(fig), "", *_rating_table(fig), "", *_efficiency_table(fig), "",
                      *_once_table(fig), "", _cache_sentence(fig), "", *readme_reading(fig), "", END])


SUMMARY_START = "<!-- summary: generated by `make report` from figures/07_claims.csv; do not edit -->"
SUMMARY_END = "<!-- summary: end -->"
PAPER_NAMES = {"kang2023": "Kang et al.", "once2024": "ONCE"}
BASELINE_METHODS = ("MF", "MLP", "Text-aware MF", "Transformer+MLP")


def readme_summary(figures=None) -> str:
    """README's first screen: the papers' claims grouped by the verdict 07 gives them."""
    claims_t = read_figure(figures or reference_figures_dir(), "07_claims")
    out = [SUMMARY_START, "", ("**What it reproduces** on a laptop (the laptop preset; notebook 07 sets each "
                               "claim of the papers beside the kit's number, its 95% interval and a verdict, "
                               "[below](#what-the-kit-reproduces-so-far)):"), ""]
    for v in VERDICTS:
        rows = claims_t[claims_t.verdict == v]
        if len(rows):
            out.append(f"- **{v}** ({len(rows)} of {len(claims_t)}): " + "; ".join(
                f"{PAPER_NAMES.get(c.split('.')[0], c.split('.')[0])}, {says}"
                for c, says in zip(rows.claim, rows["paper says"])) + ".")
    return "\n".join([*out, "", SUMMARY_END])


def readme_reading(figures=None) -> list[str]:
    """README's reading of the results tables: every comparative word chosen by an interval or
    by every seed (llmrec.readings), as the notebooks' own readings are."""
    fig = figures or reference_figures_dir()
    t3 = read_figure(fig, "03_results").set_index("method")
    t4 = read_figure(fig, "04_results").set_index("method")
    for column in ("users", "rating_token_share"):
        if column not in t3:
            raise ValueError(f"{fig / '03_results.csv'} has no {column!r} column: refresh figures/ from a run "
                             "of this version (make figures)")
    n_test = int(t3.users.max())
    zero = [m for m in t3.index if "zero-shot" in m and "reading" not in m]
    share = lambda m: ("" if pd.isna(t3.rating_token_share[m]) else
                       f"; the rating tokens hold {t3.rating_token_share[m]:.0%} of its next-token probability (median)")
    out = [("**How to read them** — each comparison below is worded by its 95% paired interval (or, for the "
            "data-efficiency curves, by every seed), as the notebooks' own readings are:"), ""]
    if zero:
        out.append("- **Zero-shot** (notebook 03, scored on a sample of the test users): " + "; ".join(
            f"{m} ({int(t3.users[m])} users) is {paired(t3.vs_global_low[m], t3.vs_global_high[m], 'the global average')}"
            + share(m) for m in zero) + ".")
    tuned = [m for m in t4.index if m not in BASELINE_METHODS and not pd.isna(t4.vs_mf_low[m])]
    if tuned:
        out.append(f"- **Against MF** (notebook 04, all {n_test} test users): " + "; ".join(
            f"{m} is {paired(t4.vs_mf_low[m], t4.vs_mf_high[m], 'MF')}" for m in tuned) + ".")
    eff = read_figure(fig, "05_data_efficiency")
    lms = [m for m in eff.method.unique() if m not in BASELINE_METHODS]
    for lm in lms:
        for base in [b for b in ("MF", "Transformer+MLP") if b in set(eff.method)]:
            words = [f"{percent(f)}: {w}" for f, w in seeds_by_fraction(eff, lm, base).items()]
            out.append(f"- **Data efficiency against {base}** (notebook 05, RMSE on the same training subset offered, "
                       f"{eff.seed.nunique()} seeds): " + "; ".join(words) + ".")
    return out


def update_readme(check: bool = False) -> bool:
    """Write README's generated sections (between the markers); with check, only compare.
    Returns whether README was already up to date."""
    path = repo_root() / "README.md"
    summary, results = readme_summary(), readme_results()  # both whole before either is written
    same_summary = replace_section(path, SUMMARY_START, SUMMARY_END, summary, check)
    return replace_section(path, START, END, results, check) and same_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmrec.course.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", action="store_true",
                        help="README's results section from figures/, and docs/WORKSHOP.md's schedule")
    parser.add_argument("--check", action="store_true", help="only say whether README is up to date")
    parser.add_argument("--times", action="store_true",
                        help="first write benchmarks/course_times.csv from the smoke and laptop runs' "
                             "measured times (results/<preset>/*.json, wall_s)")
    args = parser.parse_args(argv)
    if args.times:
        print(f"{workshop.record_course_times()} written from the runs' measured times")
        if not args.readme:
            return 0
    if not args.readme:
        parser.print_help()
        return 2
    try:
        same = update_readme(check=args.check)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    same_workshop = workshop.update(check=args.check)
    if args.check and not (same and same_workshop):
        print("README.md's results section or docs/WORKSHOP.md's schedule differs from what figures/, "
              "docs/workshop.yaml and benchmarks/course_times.csv give: run `make report`", file=sys.stderr)
        return 1
    print("README.md is up to date" if same else "README.md's results section rewritten from figures/")
    print("docs/WORKSHOP.md is up to date" if same_workshop else
          "docs/WORKSHOP.md's schedule rewritten from docs/workshop.yaml and benchmarks/course_times.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
