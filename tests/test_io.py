import errno
import json
import shutil

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


def test_output_folder_replaces_only_what_it_wrote_and_a_failed_build_changes_nothing(tmp_path):
    import pytest

    from llmrec.io import OutputFolderError, output_folder

    out = tmp_path / "out"
    with output_folder(out, "tool") as tmp:
        (tmp / "a.txt").write_text("1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("2")
    (out / "mine.txt").write_text("user")
    with pytest.raises(RuntimeError), output_folder(out, "tool") as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("the build failed")
    assert (out / "a.txt").read_text() == "1" and (out / "sub" / "b.txt").read_text() == "2"
    with output_folder(out, "tool") as tmp:  # the next build no longer writes sub/b.txt
        (tmp / "a.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [".llmrec-made.json", "a.txt", "mine.txt"]
    assert (out / "a.txt").read_text() == "new" and (out / "mine.txt").read_text() == "user"
    with pytest.raises(OutputFolderError, match="mine.txt exist"), output_folder(out, "tool") as tmp:
        (tmp / "mine.txt").write_text("would overwrite the user's file")
    assert (out / "mine.txt").read_text() == "user"
    kit = tmp_path / "data"
    kit.mkdir()
    (kit / "ratings.csv").write_text("u,i,r")
    with pytest.raises(OutputFolderError, match=r"data already holds files the kit did not write \(ratings.csv\)"):
        with output_folder(kit, "the site"):
            pass
    assert (kit / "ratings.csv").read_text() == "u,i,r"


def test_a_shared_folder_another_process_installed_first_is_kept_not_a_crash(tmp_path):
    from llmrec.io import atomic_dir

    path = tmp_path / "split-abc123"
    with atomic_dir(path, shared=True) as tmp:
        (tmp / "data").write_text("mine")
        path.mkdir()  # meanwhile, another process finished the same folder
        (path / "data").write_text("theirs")
    assert (path / "data").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["split-abc123"]  # no temporary folder left
    with atomic_dir(path, shared=True) as tmp:  # a stale folder there before the build: replaced
        (tmp / "data").write_text("rebuilt")
    assert (path / "data").read_text() == "rebuilt"
    with atomic_dir(path, shared=True) as tmp:  # stale, but another process replaced it meanwhile
        (tmp / "data").write_text("mine")
        other = tmp_path / ".other"
        other.mkdir()
        (other / "data").write_text("theirs, fresh")
        shutil.rmtree(path)
        other.rename(path)  # (a reader may have it open: it must not be deleted)
    assert (path / "data").read_text() == "theirs, fresh"
    with atomic_dir(path) as tmp:  # not shared: what appeared meanwhile is replaced
        (tmp / "data").write_text("new")
        (path / "data").write_text("appeared")
    assert (path / "data").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["split-abc123"]


@pytest.mark.parametrize("failure", [
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"),  # torch.save
    OSError(errno.ENOSPC, "No space left on device"),
])
@pytest.mark.parametrize("writer", ["atomic_dir", "atomic_path"])
def test_a_full_disk_is_said_with_the_folder_and_the_fix(tmp_path, monkeypatch, failure, writer):
    """A full disk while writing a cache gave torch's 'unexpected pos' without a word about disk."""
    import llmrec.io as io_mod

    monkeypatch.setattr(io_mod.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    target = tmp_path / "cache" / "key"
    with pytest.raises(OSError, match=r"disk holding .*cache is full.*LLMREC_DATA_DIR") as e, \
            getattr(io_mod, writer)(target) as tmp:
        (tmp / "part" if writer == "atomic_dir" else tmp).write_bytes(b"x")
        raise failure
    assert e.value.errno == errno.ENOSPC and e.value.__cause__ is failure
    assert not target.exists() and list((tmp_path / "cache").iterdir()) == []  # no partial file left


def test_another_error_with_room_on_the_disk_is_not_called_a_full_disk(tmp_path):
    with pytest.raises(RuntimeError, match="unexpected pos"), atomic_dir(tmp_path / "x"):
        raise RuntimeError("unexpected pos 64 vs 0")


def test_output_folder_keeps_empty_folders_it_did_not_make_and_knows_its_own_tool(tmp_path):
    """Review: every empty folder under --out was removed (a `git init` in site/ lost .git/refs,
    a student's empty my_work/); another tool's folder, a damaged record and an install cut
    short were not handled."""
    from llmrec.io import MARKER, OutputFolderError, output_folder

    out = tmp_path / "site"
    with output_folder(out, "the site") as tmp:
        (tmp / "a.html").write_text("1")
        (tmp / "old").mkdir()
        (tmp / "old" / "b.html").write_text("2")
    (out / ".git" / "refs" / "heads").mkdir(parents=True)
    (out / "my_work").mkdir()
    with output_folder(out, "the site") as tmp:
        (tmp / "a.html").write_text("new")
    assert (out / ".git" / "refs" / "heads").is_dir() and (out / "my_work").is_dir()
    assert not (out / "old").exists()  # emptied by the file the build no longer writes
    with pytest.raises(OutputFolderError, match="holds what the site wrote, not the student edition"), \
            output_folder(out, "the student edition"):
        pass
    record = json.loads((out / MARKER).read_text())
    # an install cut short: the record lists old and new digests, the file holds the new one
    record["files"]["a.html"] = [record["files"]["a.html"], "0" * 64]
    (out / MARKER).write_text(json.dumps(record))
    with output_folder(out, "the site") as tmp:
        (tmp / "a.html").write_text("again")
    assert (out / "a.html").read_text() == "again"
    (out / MARKER).write_text("{not json")
    with pytest.raises(OutputFolderError, match="record .* is damaged"), output_folder(out, "the site"):
        pass
    empty_dirs = tmp_path / "dirs"
    (empty_dirs / "x").mkdir(parents=True)
    with pytest.raises(OutputFolderError, match=r"\(x/\)"), output_folder(empty_dirs, "the site"):
        pass


def test_a_full_disk_names_the_variable_that_moves_that_folder_and_no_other_error_is_relabelled(
        tmp_path, monkeypatch):
    import llmrec.io as io_mod

    monkeypatch.setattr(io_mod.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    monkeypatch.setenv("LLMREC_MODEL_DIR", str(tmp_path / "models"))
    with pytest.raises(OSError, match="LLMREC_MODEL_DIR") as e, \
            atomic_dir(tmp_path / "models" / "smollm2-135m", shared=True):
        raise RuntimeError("unexpected pos 64 vs 0")
    assert "LLMREC_DATA_DIR" not in str(e.value)
    # another OSError on a nearly full disk is that error, not 'disk full'
    with pytest.raises(PermissionError), atomic_dir(tmp_path / "x"):
        raise PermissionError(errno.EACCES, "Permission denied")
