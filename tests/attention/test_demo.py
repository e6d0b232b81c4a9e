"""`genaccel demo`'s quality part on the bundled emoji model (the speed part is a benchmark)."""

import argparse

from genaccel.commands import demo


def test_demo_quality_part_writes_a_grid_and_scores_methods_against_dense(tmp_path, capsys):
    demo.quality_part(argparse.Namespace(quality_steps=2, seed=0, out=str(tmp_path), device="cpu"))
    printed = capsys.readouterr().out
    assert (tmp_path / "grid.png").stat().st_size > 0
    rows = {line.strip().split("  ")[0]: line for line in printed.splitlines() if line.startswith("   ")}
    assert "inf" in rows["dense"]
    assert "proxy 2x2" in rows and "inf" not in rows["proxy 2x2"]
