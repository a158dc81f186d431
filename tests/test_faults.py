"""Faults that must never lose a user's files (issue 14): concurrent and overwriting data builds, interrupted and
poisoned checkpoints, `extract_codes.py --overwrite` onto its own input. Each test asserts that everything the user
had before is still there afterwards. The crash cases run as real subprocesses on tiny configs."""

import json

import pytest

from vcq_hf.cli import main
from vcq_hf.data import imagefolder as data
from vcq_hf.training_utils.files import FolderLockedError, folder_lock, replace_folder


def _snapshot(folder):
    """{relative path: bytes} of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------------- data build


def test_data_build_refuses_a_folder_it_did_not_write_even_with_overwrite(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "train").mkdir(parents=True)
    (out / "train" / "holiday.png").write_bytes(b"not really a png")
    (out / "notes.txt").write_text("keep me")
    before = _snapshot(out)
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "build", "digits", "-o", str(out), "--limit", "4", "--overwrite", "--cache-dir",
              str(tmp_path / "c")])  # fmt: skip
    assert exit_info.value.code == 2
    assert "was not written by `vcq data build`" in capsys.readouterr().err
    assert _snapshot(out) == before


def test_data_build_overwrite_swaps_split_folders_and_a_locked_folder_is_refused(tmp_path):
    out = tmp_path / "digits"
    args = dict(resolution=8, limit=6, cache_dir=tmp_path / "c")
    data.build_imagefolder("digits", out, **args)
    assert len(list((out / "train").glob("*/*.png"))) == 6
    with folder_lock(out, what="a test"), pytest.raises(FolderLockedError, match="being written by another"):
        data.build_imagefolder("digits", out, overwrite=True, **args)
    assert len(list((out / "train").glob("*/*.png"))) == 6
    metadata = data.build_imagefolder("digits", out, overwrite=True, **{**args, "limit": 4})
    assert metadata["splits"]["train"]["num_images"] == len(list((out / "train").glob("*/*.png"))) == 4
    assert json.loads((out / "vcq_data.json").read_text())["splits"]["test"]["num_images"] == 4
    # No temporary or set-aside folders are left behind.
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "test", "train", "vcq_data.json"]


def test_a_failed_build_leaves_no_new_folder(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(data, "_as_rgb_png", fail)
    out = tmp_path / "new"
    with pytest.raises(OSError, match="disk full"):
        data.build_imagefolder("digits", out, resolution=8, limit=2, cache_dir=tmp_path / "c")
    assert not out.exists()


def test_replace_folder_keeps_unmarked_targets(tmp_path):
    new, target = tmp_path / "new", tmp_path / "target"
    new.mkdir()
    (new / "a").write_text("new")
    target.mkdir()
    (target / "b").write_text("user's")
    with pytest.raises(FileExistsError, match="not written by vcq_hf"):
        replace_folder(new, target, marker="MARK")
    assert (target / "b").read_text() == "user's" and (new / "a").is_file()
    (target / "MARK").write_text("")
    replace_folder(new, target, marker="MARK")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
