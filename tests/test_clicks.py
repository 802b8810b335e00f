"""Click data for notebook 06: MIND and Goodreads loaders, the MovieLens click task, the concator,
and the ranking metrics."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import FIXTURES
from llmrec.clicks import (
    MalformedLine,
    click_task,
    item_texts,
    load_goodreads,
    load_mind,
    natural_concator,
    read_mind_behaviors,
    restrict_items,
    training_samples,
    with_fields,
    with_splits,
)
from llmrec.metrics import impression_metrics, mrr, ndcg

MIND = FIXTURES / "mind"


# --------------------------------------------------------------------------- MIND


def test_mind_loader_on_the_fixture():
    data = load_mind({"train": MIND / "train", "test": MIND / "test"})
    assert data.label == "news article"
    items = data.items.set_index("item_id")
    assert len(items) == 6  # N1-N5 and N6 of the test folder, N1-N3 not repeated
    assert items.loc["N2", "abstract"] == ""  # missing abstract
    assert items.loc["N1", "title_entities"][0]["WikidataId"] == "Q221626"  # parsed JSON
    assert items.loc["N3", "title_entities"] == [] and items.loc["N2", "abstract_entities"] == []
    imp = data.impressions.set_index("impression_id")
    assert imp.loc["train-2", "history"] == []  # empty history
    assert imp.loc["train-2", "labels"] == [0, 1, 1, 0]
    assert imp.loc["train-1", "time"] == pd.Timestamp("2019-11-11 09:05:58")
    # unknown ids are skipped and counted; impression 4 lost its only click and was dropped
    assert imp.loc["train-3", "history"] == ["N1"] and imp.loc["train-3", "candidates"] == ["N2", "N4"]
    assert "train-4" not in imp.index
    assert data.skipped == {"unknown_history_ids": 1, "unknown_candidate_ids": 2,
                            "impressions_dropped": 1}
    # impression ids restart in every MIND file: they are prefixed with the folder's split
    assert data.impressions.impression_id.is_unique
    # the official test split is unlabeled
    assert imp.loc["test-5", "labels"] is None and imp.loc["test-5", "split"] == "test"
    assert "skipped" in repr(data)


def test_with_fields_writes_items_as_the_paper_does_and_names_a_missing_field():
    data = load_mind({"train": MIND / "train", "test": MIND / "test"})
    assert with_fields(data, None) is data
    paper = with_fields(data, ["title", "category"])  # ONCE's MIND items
    text = item_texts(paper)[data.items.item_id[0]]
    assert text.startswith("news article: title: ") and "; category: " in text and "abstract" not in text
    with pytest.raises(ValueError, match=r"ITEM_FIELDS=\['title', 'body'\]: mind's items have no field\(s\) \['body'\]"):
        with_fields(data, ["title", "body"])
    with pytest.raises(ValueError, match="ITEM_FIELDS is empty"):
        with_fields(data, [])


def test_mind_training_samples_one_per_click_with_four_negatives():
    data = load_mind({"train": MIND / "train"})
    samples = training_samples(data.split("train"), negatives=4, seed=0)
    assert len(samples) == 1 + 2 + 1  # impression 2 has two clicks
    for row in samples.itertuples():
        assert row.labels == [1, 0, 0, 0, 0] and len(row.candidates) == 5
    two = samples[samples.impression_id.str.startswith("train-2-")]
    assert sorted(c[0] for c in two.candidates) == ["N3", "N4"]
    assert all(set(c[1:]) <= {"N1", "N5"} for c in two.candidates)  # negatives of its impression
    with pytest.raises(ValueError, match="no labels"):
        training_samples(load_mind({"test": MIND / "test"}).impressions)


def _disjoint(data):
    ids = {s: set(data.split(s).impression_id) for s in ("train", "val", "test")}
    assert ids["test"] and ids["val"] and ids["train"]
    assert not ids["test"] & ids["val"] and not ids["test"] & ids["train"]
    assert not ids["val"] & ids["train"]


def test_with_splits_never_selects_on_the_test_impressions():
    # MIND train only: the latest impressions are held out as test, the next latest are the
    # validation set; no test impression is used to choose an epoch.
    data = with_splits(load_mind({"train": MIND / "train"}), n_val=1, n_test=1, min_test=1)
    assert data.impressions.split.value_counts().to_dict() == {"train": 1, "val": 1, "test": 1}
    _disjoint(data)
    times = data.impressions.groupby("split").time.max()
    assert times["train"] <= data.split("val").time.min() <= data.split("test").time.min()
    # MIND train + dev: dev is the test set, validation is carved out of train
    data = with_splits(load_mind({"train": MIND / "train", "val": MIND / "train"}), n_val=1,
                       min_test=1)
    assert set(data.split("test").impression_id) == {"val-1", "val-2", "val-3"}  # ids are per folder
    _disjoint(data)
    # the official test set has no labels: it can be neither test nor validation
    data = with_splits(load_mind({"train": MIND / "train", "test": MIND / "test"}), n_val=1,
                       n_test=1, min_test=1)
    assert data.split("test").labels.notna().all()
    assert data.skipped["unlabeled_impressions"] == 1


def test_with_splits_refuses_data_too_small_to_mean_anything():
    with pytest.raises(ValueError, match="test impressions"):
        with_splits(load_mind({"train": MIND / "train"}), n_val=1, n_test=1, min_test=30)
    with pytest.raises(ValueError, match="no training impressions"):
        with_splits(load_mind({"test": MIND / "test"}), min_test=1)
    with pytest.raises(ValueError, match="no training impressions are left"):
        with_splits(load_mind({"train": MIND / "train"}), n_val=2, n_test=1, min_test=1)


@pytest.mark.parametrize("line, message", [
    ("1\tU1\t11/11/2019 9:05:58 AM\tN1", "expected 5 tab-separated columns"),
    ("1\tU1\t11/11/2019 9:05:58 AM\tN1\tN2-1 N3", "some candidates have a label"),
    ("1\tU1\t11/11/2019 9:05:58 AM\tN1\tN2-2", "must end in -0 or -1"),
    ("1\tU1\tyesterday\tN1\tN2-1", "is not like"),
    ("1\tU1\t11/11/2019 9:05:58 AM\tN1\t ", "shows no news"),
])
def test_a_malformed_behaviors_line_is_refused_with_its_line_number(tmp_path, line, message):
    path = tmp_path / "behaviors.tsv"
    path.write_text("1\tU1\t11/11/2019 9:05:58 AM\t\tN1-1 N2-0\n" + line + "\n")
    with pytest.raises(MalformedLine, match=f"line 2: .*{message}"):
        read_mind_behaviors(path)


def test_missing_mind_files_and_bad_news_lines(tmp_path):
    with pytest.raises(FileNotFoundError, match="news.tsv"):
        load_mind({"train": tmp_path})
    (tmp_path / "news.tsv").write_text("N1\tsports\tnfl\tTitle\n")
    (tmp_path / "behaviors.tsv").write_text("")
    with pytest.raises(MalformedLine, match="line 1: expected 8"):
        load_mind({"train": tmp_path})


# --------------------------------------------------------------------------- ratings -> clicks


def _ratings():
    # user a likes 1, 2, 3, 4 in time order; user b rates every film first, so they are in the
    # catalogue early
    rows = [("b", i, 2.0, t) for t, i in enumerate(range(1, 20))]
    rows += [("a", 1, 5.0, 100), ("a", 2, 4.0, 101), ("a", 9, 1.0, 101), ("a", 3, 5.0, 102),
             ("a", 4, 4.0, 103), ("a", 5, 4.0, 104), ("a", 6, 5.0, 104)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def _items():
    return pd.DataFrame({"item_id": range(1, 20), "title": [f"Film {i}" for i in range(1, 20)]})


def test_click_task_histories_never_see_the_future():
    data = click_task(_ratings(), _items(), name="t", label="movie", fields=["title"],
                      history_len=10, min_history=2, negatives=2, eval_negatives=3, seed=0)
    imp = data.impressions.set_index("impression_id")
    ratings = _ratings()
    when = ratings.groupby(["user_id", "item_id"]).timestamp.min()
    first_seen = ratings.groupby("item_id").timestamp.min()
    for row in data.impressions.itertuples():
        t = row.time
        assert all(when[(row.user_id, int(i))] < t for i in row.history)  # strictly earlier
        mine = ratings[ratings.user_id == row.user_id]
        rated_by_then = set(mine.loc[mine.timestamp <= t, "item_id"].astype(str))
        negs = [c for c, y in zip(row.candidates, row.labels) if y == 0]
        for neg in negs:
            assert neg not in rated_by_then and first_seen[int(neg)] < t  # existed, not rated
    # a's likes: 1@100, 2@101, 3@102, 4@103, 5@104, 6@104; 5 and 6 share a second, so 6's
    # history leaves 5 out
    assert imp.loc["a-5", "history"] == ["1", "2", "3", "4"]
    assert imp.loc["a-5", "split"] == "test" and imp.loc["a-4", "split"] == "val"
    assert imp.loc["a-2", "split"] == imp.loc["a-3", "split"] == "train"
    assert len(imp.loc["a-2", "candidates"]) == 3 and len(imp.loc["a-5", "candidates"]) == 4
    assert "b" not in set(data.impressions.user_id)  # b liked nothing


def test_click_task_negatives_are_distinct_and_known_at_the_time():
    # 80 users, movies with >= 30 ratings: a small catalogue, where sampling used to repeat
    # candidates inside one impression
    from llmrec.clicks import rating_clicks
    from llmrec.data import load_ratings
    data = rating_clicks(min_item_ratings=30, max_users=80, history_len=5, seed=0)
    assert all(len(set(c)) == len(c) for c in data.impressions.candidates)
    # every candidate and history item was in the catalogue at the impression's time: it had
    # 30 ratings strictly before it (popularity is counted from the past only)
    ratings = load_ratings().ratings.sort_values(["item_id", "timestamp"])
    entry = ratings.groupby("item_id").timestamp.apply(
        lambda t: t.iloc[29] if len(t) >= 30 else np.inf)
    for row in data.impressions.sample(300, random_state=0).itertuples():
        assert all(entry[int(i)] < row.time for i in [*row.candidates, *row.history])


def test_click_task_shows_the_click_in_a_random_position():
    data = click_task(_ratings(), _items(), name="t", label="movie", fields=["title"],
                      history_len=10, min_history=1, negatives=2, eval_negatives=3, seed=0)
    positions = [row.labels.index(1) for row in data.impressions.itertuples()]
    assert len(set(positions)) > 1
    for row in data.impressions.itertuples():
        assert sum(row.labels) == 1 and len(row.labels) == len(row.candidates)


def test_click_task_negatives_may_be_items_the_user_rates_later():
    # At time t the kit cannot know what the user will rate later: such an item is a fair
    # negative. Here the only items that exist are ones user a rates afterwards.
    rows = [("b", i, 2.0, 1) for i in (1, 2, 3, 10, 11, 12)]
    rows += [("a", 1, 5.0, 100), ("a", 2, 5.0, 101), ("a", 3, 5.0, 102),
             ("a", 10, 5.0, 200), ("a", 11, 1.0, 201), ("a", 12, 1.0, 202)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    data = click_task(ratings, _items(), name="t", label="movie", fields=["title"],
                      history_len=5, min_history=1, negatives=2, eval_negatives=2, seed=0)
    row = data.impressions.set_index("impression_id").loc["a-1"]  # the click on 2 at 101
    negs = {c for c, y in zip(row.candidates, row.labels) if y == 0}
    assert negs <= {"3", "10", "11", "12"}  # all rated by a later; 1 and 2 (rated by 101) never


def test_click_task_is_deterministic_and_refuses_empty_results():
    a = click_task(_ratings(), _items(), name="t", label="movie", fields=["title"], min_history=2,
                   negatives=2, eval_negatives=3, seed=1)
    b = click_task(_ratings(), _items(), name="t", label="movie", fields=["title"], min_history=2,
                   negatives=2, eval_negatives=3, seed=1)
    pd.testing.assert_frame_equal(a.impressions, b.impressions)
    with pytest.raises(ValueError, match="no impressions"):
        click_task(_ratings(), _items(), name="t", label="movie", fields=["title"],
                   min_history=50)
    with pytest.raises(ValueError, match="timestamp"):
        click_task(_ratings().drop(columns="timestamp"), _items(), name="t", label="movie",
                   fields=["title"])


def test_restrict_items_keeps_what_impressions_mention():
    data = click_task(_ratings(), _items(), name="t", label="movie", fields=["title"],
                      min_history=2, negatives=2, eval_negatives=3, seed=0)
    small = restrict_items(data, data.split("test"))
    row = data.split("test").iloc[0]
    assert set(small.items.item_id) == set(row.history) | set(row.candidates)


def test_goodreads_loader(tmp_path):
    books = tmp_path / "books.json"
    books.write_text("\n".join(json.dumps({"book_id": i, "title": f"Book {i}",
                                           "description": None if i == 3 else f"About {i}"})
                               for i in range(1, 20)) + "\n")
    inter = tmp_path / "interactions.csv"
    r = _ratings().rename(columns={"item_id": "book_id"})
    r["date_added"] = pd.to_datetime(r.pop("timestamp"), unit="D").dt.strftime(
        "%a %b %d %H:%M:%S +0000 %Y")  # Goodreads' own date format
    r.to_csv(inter, index=False)
    data = load_goodreads(books, inter, min_history=2, negatives=2, eval_negatives=3)
    assert data.label == "book" and data.fields == ["title", "description"]
    assert set(data.impressions.split) == {"train", "val", "test"}
    assert data.items.set_index("item_id").loc["3", "description"] == ""
    # Goodreads dates become seconds exactly (day d of 1970 is d * 86400 s)
    days = {(u, str(i)): t for u, i, _, t in _ratings().itertuples(index=False)}
    for row in data.impressions.itertuples():
        clicked = row.candidates[row.labels.index(1)]
        assert row.time == days[(row.user_id, clicked)] * 86400
    with pytest.raises(ValueError, match="time column"):
        pd.DataFrame({"user_id": [1], "book_id": [1], "rating": [5]}).to_csv(inter, index=False)
        load_goodreads(books, inter)


# --------------------------------------------------------------------------- concator


def test_natural_concator():
    item = {"title": "Bills win\tin overtime", "abstract": "", "category": "sports",
            "subcategory": float("nan")}
    text = natural_concator(item, "news article", ["title", "abstract", "category", "subcategory"])
    assert text == "news article: title: Bills win in overtime; category: sports"
    assert natural_concator({"title": "x" * 500}, "book", ["title"], max_chars=10) == \
        "book: title: xxxxxxxxxx"


# --------------------------------------------------------------------------- ranking metrics


def test_ranking_metrics_by_hand():
    labels, scores = [0, 1, 0, 1], [0.9, 0.8, 0.1, 0.3]
    # ranks: 0.9 (neg), 0.8 (pos) -> 2, 0.3 (pos) -> 3, 0.1 (neg)
    assert mrr(labels, scores) == pytest.approx((1 / 2 + 1 / 3) / 2)
    dcg = 1 / np.log2(3) + 1 / np.log2(4)
    idcg = 1 + 1 / np.log2(3)
    assert ndcg(labels, scores, 5) == pytest.approx(dcg / idcg)
    assert ndcg(labels, scores, 1) == 0.0
    m = impression_metrics([labels, [1, 0, 0]], [scores, [3.0, 2.0, 1.0]])
    # AUC of the first: each positive beats 1 of the 2 negatives -> 2/4; the second: 1
    assert m["auc"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["mrr"] == pytest.approx(((1 / 2 + 1 / 3) / 2 + 1) / 2)
    assert m["ndcg@10"] == pytest.approx((dcg / idcg + 1) / 2)
    assert set(m) == {"auc", "mrr", "ndcg@5", "ndcg@10"}


def test_ranking_metrics_refuse_bad_impressions():
    with pytest.raises(ValueError, match="clicked and an unclicked"):
        impression_metrics([[1, 1]], [[0.1, 0.2]])
    with pytest.raises(ValueError, match="NaN"):
        impression_metrics([[1, 0]], [[np.nan, 0.2]])
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        impression_metrics([[1, 0]], [[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="unlabeled"):
        impression_metrics([None], [[0.1, 0.2]])


def _tie_broken_average(metric, labels, scores):
    """The metric averaged over every way of breaking the ties in `scores` (brute force)."""
    import itertools
    values = []
    for perm in itertools.permutations(range(len(scores))):
        # a tiny, distinct offset per candidate orders each tie group as `perm` says
        broken = np.asarray(scores, dtype=float) + 1e-6 * np.argsort(perm)
        values.append(metric(labels, broken))
    return float(np.mean(values))


@pytest.mark.parametrize("labels, scores", [
    ([1, 0, 0, 0, 0], [0.0] * 5),                    # a constant scorer
    ([0, 0, 1, 0], [2.0, 2.0, 2.0, 2.0]),            # the click last, all tied
    ([1, 0, 0, 1, 0], [0.5, 0.5, 0.1, 0.5, 0.9]),    # partly tied, two clicks
    ([0, 1, 0, 0], [0.3, 0.3, 0.7, 0.1]),
])
def test_ranking_metrics_give_ties_their_expected_value(labels, scores):
    # Ties must not favour the click, wherever it stands among the candidates: each metric is
    # its expectation over random tie-breaking (a constant scorer gets the chance value).
    assert mrr(labels, scores) == pytest.approx(_tie_broken_average(mrr, labels, scores))
    for k in (1, 3, 10):
        assert ndcg(labels, scores, k) == pytest.approx(
            _tie_broken_average(lambda y, s, k=k: ndcg(y, s, k), labels, scores))
    m = impression_metrics([labels], [scores])
    from sklearn.metrics import roc_auc_score
    assert m["auc"] == pytest.approx(_tie_broken_average(roc_auc_score, labels, scores))


def test_a_constant_scorer_gets_the_chance_value():
    n = 10
    m = impression_metrics([[1] + [0] * (n - 1)], [[0.0] * n])
    assert m["auc"] == 0.5
    assert m["mrr"] == pytest.approx(sum(1 / r for r in range(1, n + 1)) / n)  # H_n / n


def test_mind_download_unpacks_atomically_and_checks_the_archive(tmp_path, monkeypatch):
    import hashlib
    import io
    import zipfile

    import llmrec.clicks as clicks_mod
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in ("news.tsv", "behaviors.tsv"):
            zf.write(MIND / "train" / name, name)
    good = buf.getvalue()
    monkeypatch.setattr(clicks_mod, "_download_url", lambda url, dest, **k: dest.write_bytes(good))
    # an unzip killed half-way left a folder with part of the files: it is not trusted
    target = tmp_path / "small-train"
    target.mkdir()
    (target / "behaviors.tsv").write_text("1\tU1\t11/11/2019 9:05:58 AM\t\tN1-1\n")
    folder = clicks_mod.download_mind("small-train", folder=target)
    assert (folder / "news.tsv").read_bytes() == (MIND / "train" / "news.tsv").read_bytes()
    assert (folder / ".complete").is_file()
    # a known checksum that does not match refuses the archive, and deletes it
    other = tmp_path / "other"
    with pytest.raises(ValueError, match="sha256"):
        clicks_mod.download_mind(url="https://example.invalid/x.zip", folder=other,
                                 sha256="0" * 64)
    assert not other.exists() and not other.with_suffix(".zip").exists()
    fine = clicks_mod.download_mind(url="https://example.invalid/x.zip", folder=other,
                                    sha256=hashlib.sha256(good).hexdigest())
    assert (fine / "behaviors.tsv").is_file()


def test_mind_offline_says_to_pass_local_folders(tmp_path, monkeypatch):
    import llmrec.clicks as clicks_mod

    def offline(url, dest, **k):
        raise ConnectionError("could not download: no network")
    monkeypatch.setattr(clicks_mod, "_download_url", offline)
    with pytest.raises(ConnectionError, match=r"DATA_PATHS.*train.*val"):
        clicks_mod.download_mind("small-train", folder=tmp_path / "m")


def test_click_data_repr_of_an_empty_behaviors_file(tmp_path):
    (tmp_path / "news.tsv").write_text((MIND / "train" / "news.tsv").read_text())
    (tmp_path / "behaviors.tsv").write_text("")
    assert "impressions none" in repr(load_mind({"train": tmp_path}))


def test_training_samples_refuse_impressions_with_nothing_to_learn():
    imp = pd.DataFrame({"impression_id": ["1"], "user_id": ["u"], "split": ["train"],
                        "history": [[]], "candidates": [["a", "b"]], "labels": [[0, 0]]})
    with pytest.raises(ValueError, match="no training samples.*clicked and an unclicked"):
        training_samples(imp)


def test_a_news_file_cut_at_a_line_end_is_said_to_look_truncated(tmp_path):
    """A news.tsv cut at a line end loaded 0 users, and 06 then asked for the train folder that
    it had been given."""
    folder = tmp_path / "train"
    folder.mkdir()
    source = FIXTURES / "mind" / "train"
    (folder / "behaviors.tsv").write_text((source / "behaviors.tsv").read_text())
    lines = (source / "news.tsv").read_text().splitlines(keepends=True)
    (folder / "news.tsv").write_text("".join(lines[:2]))
    with pytest.raises(ValueError, match=r"news.tsv looks truncated.*none of the 4 impressions"):
        load_mind({"train": folder})


def test_impressions_without_a_click_and_a_non_click_are_not_called_a_truncated_news_file(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "news.tsv").write_text((FIXTURES / "mind" / "train" / "news.tsv").read_text())
    (folder / "behaviors.tsv").write_text("1\tU1\t11/11/2019 9:05:58 AM\tN1\tN3-1 N4-1\n")
    with pytest.raises(ValueError, match="none of its 1 impressions shows both a click and a non-click"):
        load_mind({"train": folder})
