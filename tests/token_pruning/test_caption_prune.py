"""`genaccel caption --prune METHOD:KEEP` with and without --speculative, on a tiny saved captioner."""

from __future__ import annotations

import json

import pytest
import torch


from tiny_targets import make_caption_workspace, run_caption


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield make_caption_workspace(tmp_path_factory.mktemp("captioner"))
    torch.set_num_threads(threads)


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def captions(path):
    return [row["caption"] for row in rows(path)]


@pytest.mark.parametrize("spec, recorded", [("divprune:0.25", {"method": "divprune", "keep": 0.25}),
                                            ("fastv:4", {"method": "fastv", "keep": 4, "layer": 2})])
def test_pruned_captions_with_and_without_speculation_agree_and_are_recorded(workspace, tmp_path, spec, recorded):
    assert run_caption(workspace, tmp_path / "pruned.jsonl", "--prune", spec) == 0
    assert run_caption(workspace, tmp_path / "both.jsonl", "--prune", spec, "--speculative", "--draft-layers", "2") == 0
    pruned, both = rows(tmp_path / "pruned.jsonl"), rows(tmp_path / "both.jsonl")
    assert len(pruned) == 3 and [row["caption"] for row in both] == [row["caption"] for row in pruned]
    for name, decoding in (("pruned", "vanilla"), ("both", "speculative/SelfDrafter")):
        stats = json.loads((tmp_path / f"{name}.jsonl.stats.json").read_text())
        assert stats["prune"] == recorded and stats["decoding"] == decoding and stats["images"] == 3


def test_unpruned_stats_say_so_and_keep_all_is_the_unpruned_model(workspace, tmp_path):
    assert run_caption(workspace, tmp_path / "plain.jsonl") == 0
    assert run_caption(workspace, tmp_path / "all.jsonl", "--prune", "visionzip:1.0") == 0
    assert json.loads((tmp_path / "plain.jsonl.stats.json").read_text())["prune"] is None
    assert captions(tmp_path / "all.jsonl") == captions(tmp_path / "plain.jsonl")


@pytest.mark.parametrize("spec, message", [
    ("divprune", "--prune takes METHOD:KEEP (e.g. divprune:0.25 or fastv:64), got 'divprune'"),
    ("pdrop:0.5", "unknown visual-token pruning method 'pdrop'; accepted: cls, divprune, fastv, random, visionzip"),
    ("random:half", "KEEP must be a count (64) or a fraction in (0, 1] (0.25), got 'half'"),
    ("random:0", "keep must be a count >= 1 (int) or a fraction in (0, 1] (float), got 0"),
    ("random:17", "0.png: --prune random:17: VisualTokenPruningConfig(keep=17) asks for 17 visual tokens but "
                  "image 0 has 16"),
])
def test_bad_prune_specs_are_one_line_errors(workspace, tmp_path, capsys, spec, message):
    assert run_caption(workspace, tmp_path / "out.jsonl", "--prune", spec) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after any progress bars
    assert last.startswith("genaccel caption: error: ") and message in last


def test_pruned_captions_with_a_flash_drafter_are_the_pruned_captions(workspace, tmp_path):
    from transformers import AutoModelForImageTextToText

    from genaccel.speculative import FlashDrafter

    target = AutoModelForImageTextToText.from_pretrained(workspace / "model")
    FlashDrafter.from_target(target, num_queries=4, draft_len=3, context_window=4).save_pretrained(tmp_path / "flash")
    for spec in ("divprune:0.25", "fastv:4"):
        assert run_caption(workspace, tmp_path / "pruned.jsonl", "--prune", spec) == 0
        flash = tmp_path / "flash"
        assert run_caption(workspace, tmp_path / "flash.jsonl", "--prune", spec, "--drafter", str(flash)) == 0
        assert captions(tmp_path / "flash.jsonl") == captions(tmp_path / "pruned.jsonl")
        assert json.loads((tmp_path / "flash.jsonl.stats.json").read_text())["decoding"] == "speculative/FlashDrafter"
