"""`genaccel caption --prune METHOD:KEEP` with and without --speculative, on a tiny saved captioner."""

from __future__ import annotations

import json

import pytest
import torch

from genaccel.cli import main
from genaccel.data.captions import make_sample

from tiny_targets import CAPTION_PROMPT, save_tiny_captioner


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("captioner")
    save_tiny_captioner(root / "model")  # 16 visual tokens per image
    (root / "images").mkdir()
    for seed in range(3):
        make_sample(seed, image_size=16).image.save(root / "images" / f"{seed}.png")
    yield root
    torch.set_num_threads(threads)


def caption(workspace, output, *extra):
    return main(["caption", "--model", str(workspace / "model"), "--images", str(workspace / "images"),
                 "--prompt", CAPTION_PROMPT, "--output", str(output), "--max-new-tokens", "12", *extra])


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("spec, recorded", [("divprune:0.25", {"method": "divprune", "keep": 0.25}),
                                            ("fastv:4", {"method": "fastv", "keep": 4, "layer": 2})])
def test_pruned_captions_with_and_without_speculation_agree_and_are_recorded(workspace, tmp_path, spec, recorded):
    assert caption(workspace, tmp_path / "pruned.jsonl", "--prune", spec) == 0
    assert caption(workspace, tmp_path / "both.jsonl", "--prune", spec, "--speculative", "--draft-layers", "2") == 0
    pruned, both = rows(tmp_path / "pruned.jsonl"), rows(tmp_path / "both.jsonl")
    assert len(pruned) == 3 and [row["caption"] for row in both] == [row["caption"] for row in pruned]
    for name, decoding in (("pruned", "vanilla"), ("both", "speculative/SelfDrafter")):
        stats = json.loads((tmp_path / f"{name}.jsonl.stats.json").read_text())
        assert stats["prune"] == recorded and stats["decoding"] == decoding and stats["images"] == 3


def test_unpruned_stats_say_so_and_keep_all_is_the_unpruned_model(workspace, tmp_path):
    assert caption(workspace, tmp_path / "plain.jsonl") == 0
    assert caption(workspace, tmp_path / "all.jsonl", "--prune", "visionzip:1.0") == 0
    assert json.loads((tmp_path / "plain.jsonl.stats.json").read_text())["prune"] is None
    assert [r["caption"] for r in rows(tmp_path / "all.jsonl")] == [r["caption"] for r in rows(tmp_path / "plain.jsonl")]


@pytest.mark.parametrize("spec, message", [
    ("divprune", "--prune takes METHOD:KEEP (e.g. divprune:0.25 or fastv:64), got 'divprune'"),
    ("pdrop:0.5", "unknown visual-token pruning method 'pdrop'; accepted: cls, divprune, fastv, random, visionzip"),
    ("random:half", "KEEP must be a count (64) or a fraction in (0, 1] (0.25), got 'half'"),
    ("random:0", "keep must be a count >= 1 (int) or a fraction in (0, 1] (float), got 0"),
    ("random:17", "0.png: --prune random:17: VisualTokenPruningConfig(keep=17) asks for 17 visual tokens but "
                  "image 0 has 16"),
])
def test_bad_prune_specs_are_one_line_errors(workspace, tmp_path, capsys, spec, message):
    assert caption(workspace, tmp_path / "out.jsonl", "--prune", spec) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after any progress bars
    assert last.startswith("genaccel caption: error: ") and message in last


def test_prune_with_a_flash_drafter_is_refused(workspace, tmp_path, capsys):
    assert caption(workspace, tmp_path / "out.jsonl", "--prune", "divprune:0.5", "--drafter", str(tmp_path)) == 2
    assert "--prune with --drafter (a FLASH drafter) is not supported yet" in capsys.readouterr().err
