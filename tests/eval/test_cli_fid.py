"""`genaccel fid`, `fid-stats` and `weights` through genaccel.cli.main: results and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genaccel.cli import main
from genaccel.eval.frechet import GaussianStats


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv) + (["--device", "cpu"] if argv[0] in ("fid", "fid-stats") else []))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def test_fid_of_folders_equals_fid_of_their_saved_stats(capsys, image_folders, tmp_path) -> None:
    real, fake = image_folders
    code, out, _ = _run(capsys, "fid", str(real), str(fake), "--json", "--kid",
                        "--kid-subset-size", "3", "--kid-subsets", "4")
    assert code == 0
    result = json.loads(out)
    assert (result["num_a"], result["num_b"], result["mode"], result["kid_subset_size"]) == (4, 4, "legacy-tf", 3)
    assert result["fid"] > 1 and np.isfinite(result["kid_mean"])
    assert "FID from 4 samples (< 2,000) is biased upward" in result["note"]
    code, out, _ = _run(capsys, "fid", str(real), str(fake))
    assert "note: FID from 4 samples" in out and "(add --kid)" in out
    for folder in (real, fake):
        assert _run(capsys, "fid-stats", str(folder), "-o", str(tmp_path / f"{folder.name}.npz"))[0] == 0
    code, out, _ = _run(capsys, "fid", str(tmp_path / "real.npz"), str(tmp_path / "fake.npz"), "--json")
    assert code == 0 and json.loads(out)["fid"] == pytest.approx(result["fid"], rel=1e-9)


def test_clean_stats_match_their_folder_and_refuse_other_modes(capsys, image_folders, tmp_path) -> None:
    real, fake = image_folders
    stats = tmp_path / "clean.npz"
    assert _run(capsys, "fid-stats", str(real), "-o", str(stats), "--mode", "clean")[0] == 0
    code, out, _ = _run(capsys, "fid", str(stats), str(real), "--mode", "clean", "--json")
    # 4 samples in 2048-d: the rank-deficient covariances leave ~1e-4 of eigenvalue noise
    assert code == 0 and abs(json.loads(out)["fid"]) < 1e-3
    code, _, err = _run(capsys, "fid", str(stats), str(fake))
    _assert_one_line_error(code, err, "'clean'", "not comparable")


def test_empty_folder_is_a_one_line_error(capsys, image_folders, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "fid", str(tmp_path / "empty"), str(image_folders[0]))
    _assert_one_line_error(code, err, "contains no images")


def test_corrupt_image_is_named(capsys, image_folders) -> None:
    real, fake = image_folders
    (fake / "broken.png").write_bytes(b"\x89PNG not really")
    code, _, err = _run(capsys, "fid", str(fake), str(real))
    _assert_one_line_error(code, err, "cannot decode image", "broken.png")


def test_unreadable_stats_file(capsys, image_folders, tmp_path) -> None:
    (tmp_path / "bad.npz").write_text("garbage")
    code, _, err = _run(capsys, "fid", str(tmp_path / "bad.npz"), str(image_folders[1]))
    _assert_one_line_error(code, err, "bad.npz")


def test_kid_with_a_stats_file_is_refused(capsys, image_folders, tmp_path) -> None:
    GaussianStats(np.zeros(2048), np.eye(2048), 10, "legacy-tf").save(tmp_path / "s.npz")
    code, _, err = _run(capsys, "fid", str(tmp_path / "s.npz"), str(image_folders[1]), "--kid")
    _assert_one_line_error(code, err, "KID needs raw features")


def test_missing_weights_names_the_fetch_command(capsys, image_folders, monkeypatch, tmp_path) -> None:
    from genaccel.eval import weights

    monkeypatch.delenv("GENACCEL_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("GENACCEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(weights, "_installed_path", lambda spec: None)
    code, _, err = _run(capsys, "fid", str(image_folders[0]), str(image_folders[1]))
    _assert_one_line_error(code, err, "inception weights not found", "genaccel weights fetch")


def test_weights_list_reports_paths(capsys, inception_weights) -> None:
    code, out, _ = _run(capsys, "weights", "list")
    assert code == 0 and f"inception: {inception_weights}" in out
