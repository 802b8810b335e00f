import pytest

from llmrec.io import atomic_dir, atomic_path


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_dir_replaces_only_on_success(tmp_path):
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "x").write_text("1")
    assert (tmp_path / "d" / "x").read_text() == "1"
    with pytest.raises(ValueError), atomic_dir(tmp_path / "d") as tmp:
        (tmp / "x").write_text("2")
        raise ValueError
    assert (tmp_path / "d" / "x").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
