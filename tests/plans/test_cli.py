"""`genaccel calibrate MODEL --out plan.json`, then `genaccel bench --methods plan:plan.json`."""

from __future__ import annotations

import json

import pytest

from genaccel import SparsityPlan
from genaccel.cli import main
from genaccel.pipelines.methods import parse_method


def test_calibrate_writes_a_plan_that_bench_measures(tmp_path, capsys):
    plan_path = tmp_path / "plan.json"
    code = main(["calibrate", "demo", "--out", str(plan_path), "--num", "1", "--steps", "4", "--max-trials", "2",
                 "--target-psnr", "20", "--phases", "2", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"wrote {plan_path}" in printed and "modelled speed-up" in printed and "steps 0-1:" in printed
    plan = SparsityPlan.load(plan_path)
    assert plan.num_inference_steps == 4 and plan.phases == [(0, 2), (2, 4)]
    assert plan.calibration["target"] == {"psnr": 20.0} and plan.calibration["calls"] == 1
    method = parse_method(f"plan:{plan_path}")
    assert method.config.to_dict() == plan.to_dict()

    out = tmp_path / "bench"
    assert main(["bench", "--model", "demo", "--methods", f"plan:{plan_path}", "--num", "1", "--steps", "4",
                 "--device", "cpu", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [row["method"] for row in report["methods"]][-1] == f"plan:{plan_path}"


@pytest.mark.parametrize("argv,message", [
    (["--candidates", "dense"], "--candidates are sparse methods"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--target-psnr", "nan"], "target_psnr must be a finite number"),
])
def test_calibrate_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    assert main(["calibrate", "demo", "--out", str(tmp_path / "p.json"), "--num", "1", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_plan_file_is_a_clear_bench_error(tmp_path, capsys):
    assert main(["bench", "--model", "demo", "--methods", f"plan:{tmp_path / 'none.json'}", "-o",
                 str(tmp_path / "o")]) == 2
    assert "no plan file at" in capsys.readouterr().err
