"""Paper vs kit: one row per claim of the papers, with the kit's number, its interval and a
verdict (notebook 07), and README's results section, generated from figures/.

Verdicts, judged the same way for every claim:
- reproduced: the kit's interval lies wholly on the paper's side;
- direction only: the kit's number is on the paper's side, but its interval (or the absence of
  one) does not rule out the opposite;
- not reproduced: the kit's number is on the other side (or, for "matches or beats", the paper's
  side is ruled out by the interval);
- not run in this preset: the preset does not run what the claim needs.

    python -m llmrec.report --readme          # rewrite README's results section from figures/
    python -m llmrec.report --readme --check  # fail if README differs from what figures/ gives
    python -m llmrec.report --times --readme  # first benchmarks/course_times.csv from the runs' times
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from .io import replace_section
from .papers import paper_findings, paper_numbers
from .paths import reference_figures_dir, repo_root

NOTEBOOKS = ("02_baselines", "03_flan_t5_classification", "04_flan_t5_regression",
             "05_data_efficiency", "06_once_dire")
VERDICTS = ("reproduced", "direction only", "not reproduced", "not run in this preset")


def verdict(value: float | None, low: float | None = None, high: float | None = None,
            direction: int = -1) -> str:
    """`value` (with its interval, if any) against 0: the paper says the sign is `direction`
    (-1: below zero, e.g. "RMSE difference < 0"; +1: above)."""
    if value is None or pd.isna(value):
        return "not run in this preset"
    v, lo, hi = direction * value, *(None if x is None or pd.isna(x) else direction * x
                                     for x in (low, high))
    if lo is not None and hi is not None:
        lo, hi = min(lo, hi), max(lo, hi)
        if lo > 0:
            return "reproduced"
        if hi < 0:
            return "not reproduced"
    return "direction only" if v > 0 else "not reproduced"


def _row(fid: str, kit: str, value, low, high, interval: str, paper_number: str, why: str,
         direction: int = -1, verdict_: str | None = None) -> dict:
    finding = paper_findings()[fid]
    return {"claim": fid, "paper says": finding["statement"], "paper's number": paper_number,
            "kit measures": kit, "value": value, "low": low, "high": high,
            "interval": interval, "verdict": verdict_ or verdict(value, low, high, direction),
            "why": why}


def _auc(row: str, column: str = "NAML", table: str = "Table 2", dataset: str = "MIND") -> str:
    """An AUC of ONCE as printed, from data/papers/numbers.csv."""
    t = paper_numbers()
    hit = t[(t.paper == "once2024") & (t.table == table) & (t.dataset == dataset) & (t.row == row)
            & (t.column == column) & (t.metric == "auc")]
    return f"{hit.value.iloc[0]:.2f}"


def _method(table: list[dict], name: str) -> dict | None:
    return next((r for r in table if r["method"] == name), None)


def claims(metrics: dict[str, dict], sizes: dict[str, int] | None = None) -> pd.DataFrame:
    """The claims table from the notebooks' recorded metrics (`metrics[notebook]` is the
    "metrics" of results/<preset>/<notebook>.json; a missing notebook makes its claims "not run").
    `sizes`: parameter counts of 06's content encoders, for "larger is better"."""
    m02, m03, m04, m05, m06 = (metrics.get(nb) for nb in NOTEBOOKS)
    rows = []

    # Kang et al.: zero-shot worse than MF
    if m02 and m03 and "zero-shot" in m03.get("results", {}):
        zs, mf = m03["results"]["zero-shot"]["rmse"], m02["MF"]["rmse"]
        rows.append(_row("kang2023.zero_shot_worse_than_mf", "zero-shot RMSE − MF RMSE", zs - mf, None, None,
                         "none recorded", "Table 2 (not read here)",
                         f"zero-shot {zs:.3f} (on {len(m03.get('zero_shot_index', [])) or 'every'} test users) "
                         f"against MF {mf:.3f} (every test user); no paired interval is computed here", direction=+1))
    else:
        rows.append(_row("kang2023.zero_shot_worse_than_mf", "zero-shot RMSE − MF RMSE", None, None, None,
                         "", "Table 2 (not read here)", "03 or 02 did not run"))

    # Kang et al.: regression beats classification
    rc = (m04 or {}).get("regression_vs_classification")
    if rc:
        reg = next((r for r in m04["table"] if r["method"].endswith("fine-tuned regression")), None)
        cls = next((r for r in m04["table"] if r["method"].endswith("fine-tuned classification")), None)
        value = reg["rmse"] - cls["rmse"] if reg and cls else None
        rows.append(_row("kang2023.regression_beats_classification",
                         "RMSE of regression − classification (same model, same examples)", value,
                         rc["low"], rc["high"], "95% paired bootstrap, 1 seed each", "Table 2 (not read here)",
                         f"regression {reg['rmse']:.3f}, classification {cls['rmse']:.3f}: {rc['verdict']}"
                         if reg and cls else rc["verdict"]))
    else:
        rows.append(_row("kang2023.regression_beats_classification", "RMSE of regression − classification",
                         None, None, None, "", "Table 2 (not read here)", "04 did not compare them"))

    # Kang et al.: fine-tuned LLM matches or beats Transformer+MLP
    tuned = [r for r in (m04 or {}).get("table", [])
             if r.get("family") == "language model" and ("fine-tuned" in r["method"] or "regression" in r["method"])]
    tm = _method((m04 or {}).get("table", []), "Transformer+MLP")
    if tuned and tm:
        best = min(tuned, key=lambda r: r["rmse"])
        diff = best["rmse"] - tm["rmse"]
        rows.append(_row("kang2023.fine_tuned_matches_transformer",
                         "best fine-tuned LM RMSE − Transformer+MLP RMSE", diff, None, None, "none recorded",
                         "Table 2 (not read here)",
                         f"{best['method']} {best['rmse']:.3f} against Transformer+MLP {tm['rmse']:.3f}; "
                         "no paired interval is recorded for this pair, so a tie is not ruled out"))
    else:
        rows.append(_row("kang2023.fine_tuned_matches_transformer", "best fine-tuned LM − Transformer+MLP",
                         None, None, None, "", "Table 2 (not read here)", "04 did not run"))

    # Kang et al.: bigger is better (05's model sizes at their largest common fraction)
    lm_points = pd.DataFrame((m05 or {}).get("summary", []))
    size_rows = (m05 or {}).get("sizes", [])
    if len(size_rows) >= 2 and not lm_points.empty:
        small, large = sorted(size_rows, key=lambda r: r["parameters"])[:: len(size_rows) - 1]
        value = large["rmse there"] - small["rmse there"]
        rows.append(_row("kang2023.bigger_is_better", "RMSE of the larger LM − the smaller, each at its largest fraction",
                         value, None, None, "none (2 seeds per point)", "Table 2 (not read here)",
                         f"{large['model']} {large['rmse there']:.3f} vs {small['model']} {small['rmse there']:.3f}"))
    else:
        rows.append(_row("kang2023.bigger_is_better", "RMSE of a larger LM − a smaller one", None, None, None, "",
                         "Table 2 (not read here)",
                         ("05 fine-tunes one language model in this preset: offline, one model per family "
                          "installs (SmolLM2-135M, and MiniLM, which differs in architecture and formulation too, "
                          "so their gap would not be one of size); the paper preset compares three Flan-T5 sizes")
                         if m05 else "05 did not run"))

    # Kang et al.: data efficiency: the LM reaches full-data MF with a fraction of the data
    lm_matches = [r for r in (m05 or {}).get("matches", []) if r["method"].endswith("regression")]
    if lm_matches and m05.get("full_data_mf"):
        r = lm_matches[0]
        gap = r["rmse_at_largest"] - m05["full_data_mf"]["rmse"]
        reached = r["matches_mf_rmse_from"]
        rows.append(_row("kang2023.data_efficient",
                         f"{r['method']} RMSE at its largest fraction − full-data MF RMSE", gap, None, None,
                         "none (mean of the seeds)", "data-efficiency figure (not read here)",
                         (f"reaches full-data MF from {reached:.1%} of the data" if reached is not None else
                          f"not reached up to {r['largest_fraction']:.1%} of the data, the largest this preset "
                          f"trains on ({r['rmse_at_largest']:.3f} vs {m05['full_data_mf']['rmse']:.3f})"),
                         verdict_=None if reached is None else "direction only"))
    else:
        rows.append(_row("kang2023.data_efficient", "LM at a fraction vs full-data MF", None, None, None, "",
                         "data-efficiency figure (not read here)", "05 trained no language model"))

    # ONCE: DIRE beats the original encoder; larger encoder better; frozen is strong; cache share
    summary = pd.DataFrame((m06 or {}).get("summary", []))
    if not summary.empty:
        orig = summary[summary.family == "Original"].sort_values("auc").iloc[-1]
        dire = summary[summary.family != "Original"].sort_values("auc")
        best = dire.iloc[-1]
        rows.append(_row("once2024.dire_beats_original", "AUC of the best DIRE − the best Original",
                         best.auc - orig.auc, best.auc_low - orig.auc_high, best.auc_high - orig.auc_low,
                         "mean ± sd over seeds, both rows", f"MIND, NAML AUC: {_auc('DIRE LLaMA-7B')} (LLaMA-7B) vs {_auc('Original')}",
                         f"{best.method} {best.auc:.3f} vs {orig.method} {orig.auc:.3f}", direction=+1))
        models = {r["model"]: r for r in (m06.get("ablation") or []) if r.get("chosen")}
        if sizes and len(models) >= 2:
            by_size = sorted(models, key=lambda m: sizes[m])
            small, large = by_size[0], by_size[-1]
            s_row = summary[summary.method.str.contains(small, regex=False)].iloc[0]
            l_row = summary[summary.method.str.contains(large, regex=False)].iloc[0]
            rows.append(_row("once2024.larger_encoder_better", "AUC of the larger DIRE encoder − the smaller",
                             l_row.auc - s_row.auc, l_row.auc_low - s_row.auc_high, l_row.auc_high - s_row.auc_low,
                             "mean ± sd over seeds, both rows", f"MIND, NAML AUC: {_auc('DIRE LLaMA-7B')} (LLaMA-7B) vs {_auc('DIRE BERT-12L')} (BERT-12L)",
                             f"{large} ({sizes[large] / 1e6:.0f}M) {l_row.auc:.3f} vs {small} "
                             f"({sizes[small] / 1e6:.0f}M) {s_row.auc:.3f}", direction=+1))
        else:
            rows.append(_row("once2024.larger_encoder_better", "larger vs smaller DIRE encoder", None, None, None,
                             "", f"MIND, NAML AUC: {_auc('DIRE LLaMA-7B')} (LLaMA-7B) vs {_auc('DIRE BERT-12L')} (BERT-12L)", "06 ran one encoder"))
        frozen = [r for r in m06.get("ablation") or [] if r["k"] == 0 and not r["lora"]]
        if frozen:
            worst = min(frozen, key=lambda r: r["auc"])
            rows.append(_row("once2024.frozen_is_strong", "test AUC of the weakest fully frozen DIRE − the best Original",
                             worst["auc"] - orig.auc, worst["auc"] - orig.auc_high, worst["auc"] - orig.auc_low,
                             "one seed against the Original's mean ± sd", f"MIND, NAML AUC: {_auc('LLaMA-7B, 32 frozen / 0 tuned', table='Table 3')} (k = 0) vs {_auc('Original')}",
                             f"{worst['model']} at k = 0: {worst['auc']:.3f} vs {orig.method} {orig.auc:.3f}",
                             direction=+1))
        else:
            rows.append(_row("once2024.frozen_is_strong", "frozen DIRE vs Original", None, None, None, "",
                             f"MIND, NAML AUC: {_auc('LLaMA-7B, 32 frozen / 0 tuned', table='Table 3')} (k = 0) vs {_auc('Original')}", "06 tried no k = 0"))
    else:
        for fid in ("once2024.dire_beats_original", "once2024.larger_encoder_better", "once2024.frozen_is_strong"):
            rows.append(_row(fid, "", None, None, None, "", "Table 2", "06 did not run"))
    speed = {r["way"]: r for r in (m06 or {}).get("cache_speed", [])}
    nocache = speed.get("frozen, no cache")
    if nocache:
        ratio = nocache["of theory"]
        rows.append(_row("once2024.cache_compute_share",
                         "measured speed-up of the cache ÷ the compute share's prediction (in the text only: "
                         "a timing, not compared across runs)", None, None, None,
                         "none (median of the timed steps)", "2 of 32 layers, about 6% of the compute",
                         f"{nocache['speed-up of the cache']:.2f}× measured against {nocache['theory']:.2f}× "
                         f"predicted ({ratio:.0%} of it; counted as reproduced from 50%)", direction=+1,
                         verdict_="reproduced" if ratio >= 0.5 else "not reproduced"))
    else:
        rows.append(_row("once2024.cache_compute_share", "", None, None, None, "",
                         "2 of 32 layers, about 6% of the compute", "06 did not time the cache"))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- README

START, END = "<!-- results: generated by `make report` from figures/; do not edit -->", "<!-- results: end -->"


def _fmt(x, digits=3) -> str:
    return "" if pd.isna(x) else f"{x:.{digits}f}"


def _signed(x) -> str:
    return "" if pd.isna(x) else f"{x:+.3f}".replace("-", "−")


def readme_results(figures=None) -> str:
    """README's results section, from the reference figures' CSVs."""
    fig = figures or reference_figures_dir()
    read = lambda name: pd.read_csv(fig / f"{name}.csv")
    out = [START, ""]
    claims_t = read("07_claims")
    out += [("**Paper vs kit** ([figures/07_claims.csv](figures/07_claims.csv), notebook 07; verdicts as "
            "defined there):"), "",
            "| the paper | the kit (laptop preset) | interval | verdict |", "|---|---|---|---|"]
    for r in claims_t.to_dict("records"):
        interval = f"{_signed(r['low'])} … {_signed(r['high'])}" if not pd.isna(r["low"]) else ""
        number = r["paper's number"]
        paper = r["paper says"] + (f" ({number})" if "not read" not in number else "")
        out.append(f"| {paper} | {r['why']} | {interval} | **{r['verdict']}** |")
    out += ["", ("**Rating prediction** ([figures/04_results.csv](figures/04_results.csv); the last column is "
            "the 95% paired-bootstrap interval of the RMSE difference to MF on the same test users):"), "",
            "| method | RMSE | MAE | ROC-AUC | RMSE − MF, 95% interval |", "|---|---|---|---|---|"]
    for r in read("04_results").itertuples():
        interval = "" if pd.isna(r.vs_mf_low) or r.method == "MF" else f"{_signed(r.vs_mf_low)} … {_signed(r.vs_mf_high)}"
        out.append(f"| {r.method} | {_fmt(r.rmse)} | {_fmt(r.mae)} | {_fmt(r.auc)} | {interval} |")
    eff = read("05_data_efficiency")
    table = eff.groupby(["method", "fraction"]).rmse.mean().unstack("fraction")
    fractions = list(table.columns)
    out += ["", ("**Data efficiency** ([figures/05_data_efficiency.csv](figures/05_data_efficiency.csv); "
            f"RMSE, mean of {eff.seed.nunique()} seeds, at each fraction of the training examples):"), "",
            "| method | " + " | ".join(f"{f:.1%}".replace(".0%", "%") for f in fractions) + " |",
            "|---|" + "---|" * len(fractions)]
    for method, r in table.iterrows():
        out.append(f"| {method} | " + " | ".join(_fmt(r[f]) if not pd.isna(r[f]) else "—" for f in fractions) + " |")
    out += ["", "**ONCE/DIRE** ([figures/06_results.csv](figures/06_results.csv); mean ± sd over seeds):", "",
            "| content encoder | AUC | MRR | nDCG@5 | nDCG@10 |", "|---|---|---|---|---|"]
    for r in read("06_results").to_dict("records"):
        out.append(f"| {r['method']} | {r['auc']:.3f} ± {r['auc_std']:.3f} | {_fmt(r['mrr'])} | "
                   f"{_fmt(r['ndcg@5'])} | {_fmt(r['ndcg@10'])} |")
    speed = read("06_cache_speed").set_index("way")
    out += ["", ("Caching the frozen layers (06, [figures/06_cache_speed.csv](figures/06_cache_speed.csv)): a "
            f"training step {speed.loc['full fine-tuning', 'speed-up of the cache']:.1f}× faster than full "
            f"fine-tuning (the layer count predicts {speed.loc['full fine-tuning', 'theory']:.1f}×) and "
            f"{speed.loc['frozen, no cache', 'speed-up of the cache']:.1f}× faster than running the frozen "
            f"layers every step ({speed.loc['frozen, no cache', 'theory']:.1f}× predicted)."), "", END]
    return "\n".join(out)


def update_readme(check: bool = False) -> bool:
    """Write README's generated section (between the markers); with check, only compare.
    Returns whether README was already up to date."""
    return replace_section(repo_root() / "README.md", START, END, readme_results(), check)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmrec.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", action="store_true",
                        help="README's results section from figures/, and docs/WORKSHOP.md's schedule")
    parser.add_argument("--check", action="store_true", help="only say whether README is up to date")
    parser.add_argument("--times", action="store_true",
                        help="first write benchmarks/course_times.csv from the smoke and laptop runs' "
                             "measured times (results/<preset>/*.json, wall_s)")
    args = parser.parse_args(argv)
    if args.times:
        from .workshop import record_course_times

        print(f"{record_course_times()} written from the runs' measured times")
        if not args.readme:
            return 0
    if not args.readme:
        parser.print_help()
        return 2
    from . import workshop

    same = update_readme(check=args.check)
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
