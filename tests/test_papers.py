"""The papers' numbers and settings (data/papers/) and the paper preset's fidelity to them."""

import math

import pytest
import yaml

from llmrec.course.papers import (
    fidelity,
    once_table2,
    paper_findings,
    paper_numbers,
    paper_settings,
)
from llmrec.paths import presets_dir


def _value(numbers, **where):
    rows = numbers
    for k, v in where.items():
        rows = rows[rows[k] == v]
    assert len(rows) == 1, where
    return float(rows.value.iloc[0])


def test_every_number_names_its_source_and_the_tables_agree_with_each_other():
    t = paper_numbers()
    assert not t[["paper", "table", "dataset", "metric"]].eq("").any().any()
    # a value is either a number or left empty with a note saying why (Kang et al.'s Table 2)
    empty = t[t.value.isna()]
    assert set(empty.paper) == {"kang2023"} and empty.note.str.contains("not read").all()
    once2 = t[(t.paper == "once2024") & (t.table == "Table 2")]
    assert len(once2) == 2 * 4 * 4 * 4  # MIND and Goodreads; 4 rows, 4 recommenders, 4 metrics
    assert once2.value.between(0, 100).all()
    # the same experiment reported in two tables must carry the same number (catches a typo)
    same = [({"table": "Table 2", "dataset": "MIND", "row": "DIRE LLaMA-7B", "column": "NAML", "metric": "auc"},
             {"table": "Table 3", "dataset": "MIND", "row": "LLaMA-7B, 31 frozen / 1 tuned", "column": "NAML"}),
            ({"table": "Table 2", "dataset": "MIND", "row": "DIRE LLaMA-7B", "column": "NAML", "metric": "auc"},
             {"table": "Table 4", "dataset": "MIND", "row": "LLaMA-7B with LoRA"}),
            ({"table": "Table 2", "dataset": "MIND", "row": "DIRE BERT-12L", "column": "NAML", "metric": "auc"},
             {"table": "Table 3", "dataset": "MIND", "row": "BERT-12L, 12 frozen / 0 tuned", "column": "NAML"}),
            ({"table": "Table 2", "dataset": "Goodreads", "row": "DIRE LLaMA-7B", "column": "NAML", "metric": "auc"},
             {"table": "Table 4", "dataset": "Goodreads", "row": "LLaMA-7B without LoRA"}),
            ({"table": "Table 2", "dataset": "Goodreads", "row": "DIRE BERT-12L", "column": "NAML", "metric": "auc"},
             {"table": "Table 3", "dataset": "Goodreads", "row": "BERT-12L, 0 frozen / 12 tuned", "column": "NAML"})]
    for a, b in same:
        assert _value(t, paper="once2024", **a) == _value(t, paper="once2024", **b), (a, b)


def test_once_table2_is_wide_and_in_fractions():
    mind = once_table2("MIND")
    row = mind[(mind.row == "Original") & (mind.column == "NAML")].iloc[0]
    assert math.isclose(row.auc, 0.6175) and math.isclose(row["ndcg@10"], 0.3785)
    assert len(mind) == 16


def test_every_setting_and_finding_names_its_source():
    for sid, s in paper_settings().items():
        assert sid.split(".")[0] in ("kang2023", "once2024")
        assert s["source"] and s["paper"] and "kit" in s, sid
    for fid, f in paper_findings().items():
        assert f["source"] and f["statement"], fid


def test_the_paper_preset_follows_the_papers_or_says_why():
    table, problems = fidelity("paper")
    assert problems == []
    assert set(table.status) <= {"as the paper", "deviation", "follows"}
    assert (table[table.status != "as the paper"].why.str.len() > 20).all()
    assert len(table) == len(paper_settings())


def _edited_paper_preset(tmp_path, edit):
    body = yaml.safe_load((presets_dir() / "paper.yaml").read_text())
    edit(body)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def test_an_unexplained_difference_a_stale_deviation_and_an_unknown_id_are_problems(tmp_path):
    def edit(body):
        body["notebooks"]["03_flan_t5_classification"]["LR"] = 3e-4        # differs, unexplained
        body["deviations"]["once2024.lora_r"] = "r = 8 is enough"          # stale: r is 32
        body["deviations"]["kang2023.epochz"] = "typo"                     # no such setting
        del body["follows"]["kang2023.dropout"]                            # no parameter, unlisted
    table, problems = fidelity(_edited_paper_preset(tmp_path, edit))
    text = "\n".join(problems)
    assert "kang2023.learning_rate: the paper has 5e-05" in text and "03_flan_t5_classification.LR=0.0003" in text
    assert "once2024.lora_r: listed in" in text and "stale" in text
    assert "'kang2023.epochz' is not a setting" in text
    assert "kang2023.dropout: the kit has no parameter for it" in text
    assert len(problems) == 4
    assert table.set_index("setting").loc["kang2023.learning_rate", "status"] == "UNEXPLAINED"


def test_deviations_must_be_a_mapping(tmp_path):
    from llmrec.presets import PresetError, load_preset

    path = _edited_paper_preset(tmp_path, lambda body: body.update(deviations=["kang2023.model_xxl"]))
    with pytest.raises(PresetError, match="deviations must be a mapping of setting: reason"):
        load_preset(path)


def test_goodreads_rows_are_consistent_except_the_flagged_one():
    """With one click per impression, nDCG@5 is bounded by MRR and nDCG@1 (the concave hull of
    (1/r, 1/log2(r + 1)) over ranks r); a transcribed number above the bound is a misprint or a
    typo, and must say so in its note."""
    import numpy as np

    from llmrec.course.papers import paper_numbers

    t = paper_numbers()
    g = t[(t.paper == "once2024") & (t.dataset == "Goodreads") & (t.table == "Table 2")]
    wide = g.pivot_table(index=["row", "column"], columns="metric", values="value") / 100
    xs = np.array([0, 1 / 5, 1 / 4, 1 / 3, 1 / 2])
    gains = np.array([0] + [1 / np.log2(r + 1) for r in (5, 4, 3, 2)])
    n1 = wide["ndcg@5"]  # the header's N@5: nDCG@1 on Goodreads
    bound = n1 + (1 - n1) * np.interp((wide.mrr - n1) / (1 - n1), xs, gains)
    excess = (wide["ndcg@10"] - bound).sort_values()
    assert excess.iloc[:-1].max() < 0.005, excess
    flagged = excess.index[-1]
    assert flagged == ("DIRE LLaMA-7B", "NAML") and excess.iloc[-1] > 0.02
    note = g[(g.row == flagged[0]) & (g.column == flagged[1]) & (g.metric == "ndcg@10")].note.iloc[0]
    assert "misprint" in note and "0.023" in note
