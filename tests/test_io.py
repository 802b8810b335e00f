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


def test_atomic_files_and_folders_respect_the_umask(tmp_path):
    # a shared data or results folder must stay readable to others: 0644 / 0755 under umask 022
    import os

    from llmrec.io import atomic_dir, write_json
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
