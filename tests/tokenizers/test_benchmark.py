"""benchmarks/visual_tokenizers.py on two tiny tokenizers (continuous and FSQ) and a small image folder."""


import numpy as np
import pytest
import torch
from PIL import Image

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("visual_tokenizers")


def test_table_rows_and_code_usage(bench, tmp_path):
    from genaccel.tokenizers import MultiScaleTokenizer

    small = dict(image_size=16, patch_size=2, width=32, heads=2, encoder_depth=1, scale_depth=1, decoder_depth=1)
    torch.manual_seed(0)
    MultiScaleTokenizer(**small).save_pretrained(tmp_path / "multi")
    MultiScaleTokenizer(**small, scales=(8,), quantizer="fsq", fsq_levels=(4, 4, 4, 4)).save_pretrained(tmp_path / "fsq")
    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(0)
    for k in range(5):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(real / f"{k}.png")
    target = tmp_path / "BENCHMARKS.md"
    assert bench.main(["--tokenizer", f"multi={tmp_path / 'multi'}", "--tokenizer", f"fsq={tmp_path / 'fsq'}",
                       "--real", str(real), "--runs", "1", "--no-fid", "--write", str(target)]) == 0
    rows = [line.split("|") for line in target.read_text().splitlines() if line.startswith(("| multi", "| fsq"))]
    assert [r[1].strip() for r in rows] == ["multi", "fsq"]
    assert rows[0][3].strip() == "1+4+16+64" and rows[1][3].strip() == "64"
    assert rows[0][11].strip() == "-" and rows[1][11].strip().endswith("%")
    assert "±" in rows[0][7]
    with pytest.raises(SystemExit):
        bench.parse_args(["--tokenizer", "nameonly", "--real", str(real)])
