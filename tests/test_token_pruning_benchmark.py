"""benchmarks/token_pruning.py: its metrics, and the train + measure path on a tiny captioner."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genaccel.data.emoji import find_font
from tests.benchmark_scripts import load_benchmark

try:
    find_font()
except FileNotFoundError:
    pytest.skip("fonts-noto-color-emoji is not installed (apt-get install fonts-noto-color-emoji)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("token_pruning")


@pytest.fixture(scope="module")
def tiny_captioner(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("captioner")
    torch.set_num_threads(1)
    assert bench.main(["train", str(out), "--max-steps", "1", "--batch-size", "2", "--hidden-size", "32",
                       "--layers", "2", "--image-size", "16"]) == 0
    return out


HYPOTHESES = ["grinning face", "smiling face with open mouth", "red apple", "", "flag f r", "man light skin tone"]
REFERENCES = ["grinning face", "smiling face with open mouth and smiling eyes", "green apple", "dog face",
              "flag f r", "man medium skin tone"]


def test_bleu_from_statistics_equals_torchmetrics_on_the_whole_corpus(bench):
    from torchmetrics.functional.text import bleu_score

    stats = bench.bleu_statistics(HYPOTHESES, REFERENCES)
    assert stats.shape == (6, 10)
    expected = float(bleu_score(HYPOTHESES, [[r] for r in REFERENCES], n_gram=4))
    assert bench.corpus_bleu(stats.sum(0)) == pytest.approx(expected, abs=1e-6)
    assert bench.corpus_bleu(stats[:1].sum(0)) == 0.0  # no 4-gram in a 2-word caption
    assert bench.corpus_bleu(np.zeros(10)) == 0.0


def test_scores_and_paired_intervals(bench):
    indices = bench.bootstrap_indices(len(REFERENCES), 200)
    same = bench.caption_scores(REFERENCES, REFERENCES, indices)
    assert same["exact"]["value"] == 100 and same["exact"]["interval"] == (100, 100)
    assert same["bleu4"]["value"] == pytest.approx(100)
    scores = bench.caption_scores(HYPOTHESES, REFERENCES, indices)
    assert scores["exact"]["value"] == pytest.approx(100 * 2 / 6)
    low, high = scores["exact"]["interval"]
    assert low <= scores["exact"]["value"] <= high and low < high
    if "cider" in scores:  # pycocoevalcap installed
        assert same["cider"]["value"] > scores["cider"]["value"] > 0
    share = bench.retained(scores["bleu4"], same["bleu4"])
    assert share["value"] == pytest.approx(scores["bleu4"]["value"])
    assert bench.retained(scores["bleu4"], {"value": 0.0}) is None
    assert bench.format_score(None) == "not measured"


def test_settings_keep_counts(bench):
    rows = bench.settings(("random",), 256)
    assert rows == [(None, "all", None), ("random", "50%", 128), ("random", "25%", 64), ("random", "11%", 28)]
    assert bench.settings(("random",), 16, ("25%",)) == [(None, "all", None), ("random", "25%", 4)]
    with pytest.raises(SystemExit, match="unknown keep '30%'"):
        bench.settings(("random",), 16, ("30%",))


def test_train_writes_a_captioner_with_the_visual_tokens_asked(tiny_captioner):
    info = json.loads((tiny_captioner / "train_log.json").read_text())
    assert info["steps"] == 1 and info["visual_tokens"] == 16
    assert (tiny_captioner / "tokenizer.json").exists() and (tiny_captioner / "model.safetensors").exists()


def _measure(bench, tiny_captioner, tmp_path, methods, extra=()):
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\n<!-- BEGIN other -->\nkept\n<!-- END other -->\n")
    argv = ["measure", str(tiny_captioner), "--methods", methods, "--keeps", "25%", "--num-images", "3",
            "--timing-images", "2", "--runs", "1", "--max-new-tokens", "4", "--resamples", "20",
            "--train-check", "1", "--write", str(target), *extra]
    assert bench.main(argv) == 0
    text = target.read_text()
    assert "<!-- BEGIN other -->\nkept\n<!-- END other -->" in text
    assert "<!-- BEGIN token-pruning -->" in text and "GPU: not measured" in text and "N = 3" in text
    return text


def test_measure_unpruned_only(bench, tiny_captioner, tmp_path):
    text = _measure(bench, tiny_captioner, tmp_path, "")
    rows = [line for line in text.splitlines() if line.startswith("| unpruned | 16 (all)")]
    assert len(rows) == 3  # speed, speculative (SelfDrafter), quality
    assert rows[1].split("|")[3].strip() == "SelfDrafter" and rows[1].split("|")[-2].strip() == "yes"
    assert "100.0 [100.0, 100.0]" in rows[2]  # the unpruned model agrees with itself
    assert "FlashDrafter: not measured" in text


def test_measure_one_method_one_keep(bench, tiny_captioner, tmp_path):
    pytest.importorskip("genaccel.token_pruning")
    text = _measure(bench, tiny_captioner, tmp_path, "random")
    rows = [line for line in text.splitlines() if line.startswith("| random | 4 (25%)")]
    assert len(rows) == 3
    assert rows[1].split("|")[-2].strip() == "yes"  # speculative decoding of the pruned target is lossless
    assert "random at 25% kept" in text


def test_flash_head_trains_and_is_measured_over_the_pruned_target(bench, tiny_captioner, tmp_path):
    flash = tmp_path / "flash"
    assert bench.main(["train-drafter", str(tiny_captioner), str(flash), "--steps", "2", "--batch-size", "4",
                       "--max-images", "3"]) == 0
    assert len(list((flash / "images").glob("*.png"))) == 3
    text = _measure(bench, tiny_captioner, tmp_path, "", ["--flash", str(flash)])
    rows = [line for line in text.splitlines() if line.startswith("| unpruned | 16 (all) | FlashDrafter")]
    assert len(rows) == 1 and rows[0].split("|")[-2].strip() == "yes"
    assert "2 steps of batch 4" in text and "3 train glyphs" in text
