"""`genaccel caption` and `genaccel train-drafter` on a tiny saved captioner (no downloads)."""

from __future__ import annotations

import json

import pytest
import torch

from genaccel.cli import main
from genaccel.data.captions import make_sample

from tiny_targets import CAPTION_PROMPT, make_caption_workspace, run_caption


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield make_caption_workspace(tmp_path_factory.mktemp("captioner"))
    torch.set_num_threads(threads)


def test_caption_speculative_matches_vanilla_and_writes_stats(workspace, tmp_path):
    assert run_caption(workspace, tmp_path / "vanilla.jsonl") == 0
    assert run_caption(workspace, tmp_path / "self.jsonl", "--speculative", "--draft-layers", "2") == 0
    vanilla = [json.loads(line) for line in (tmp_path / "vanilla.jsonl").read_text().splitlines()]
    speculative = [json.loads(line) for line in (tmp_path / "self.jsonl").read_text().splitlines()]
    assert [row["image"].endswith(f"{i}.png") for i, row in enumerate(vanilla)] == [True] * 3
    assert [row["caption"] for row in speculative] == [row["caption"] for row in vanilla]
    assert all(row["acceptance_length"] == 1.0 for row in vanilla)
    stats = json.loads((tmp_path / "self.jsonl.stats.json").read_text())
    assert stats["decoding"] == "speculative/SelfDrafter" and stats["images"] == 3
    assert stats["new_tokens"] == sum(row["new_tokens"] for row in speculative)


def test_train_drafter_then_caption_with_it(workspace, tmp_path):
    output = tmp_path / "flash"
    assert main(["train-drafter", "--model", str(workspace / "model"), "--images", str(workspace / "images"),
                 "--prompt", CAPTION_PROMPT, "--output", str(output), "--num-queries", "4", "--draft-len", "3",
                 "--context-window", "4", "--max-new-tokens", "10", "--steps", "6", "--batch-size", "8",
                 "--save-every", "3", "--device", "cpu"]) == 0
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    assert run_caption(workspace, tmp_path / "flash.jsonl", "--drafter", str(output)) == 0
    assert run_caption(workspace, tmp_path / "vanilla.jsonl") == 0
    captions = [json.loads(line)["caption"] for line in (tmp_path / "flash.jsonl").read_text().splitlines()]
    vanilla = [json.loads(line)["caption"] for line in (tmp_path / "vanilla.jsonl").read_text().splitlines()]
    assert captions == vanilla


def test_missing_model_says_where_it_looked(workspace, tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    assert main(["caption", "--model", str(missing), "--images", str(workspace / "images")]) == 2
    assert str(missing) in capsys.readouterr().err


def test_corrupt_image_is_named(workspace, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    make_sample(0, image_size=16).image.save(images / "good.png")
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    code = main(["caption", "--model", str(workspace / "model"), "--images", str(images), "--prompt", CAPTION_PROMPT,
                 "--output", str(tmp_path / "out.jsonl"), "--max-new-tokens", "4"])
    assert code == 2
    assert "broken.png" in capsys.readouterr().err


def test_prompt_without_image_token_or_template_is_an_error(workspace, tmp_path, capsys):
    code = main(["caption", "--model", str(workspace / "model"), "--images", str(workspace / "images"),
                 "--prompt", "describe", "--output", str(tmp_path / "out.jsonl")])
    assert code == 2
    assert "<image>" in capsys.readouterr().err


def test_empty_image_folder_is_an_error(workspace, tmp_path, capsys):
    assert main(["caption", "--model", str(workspace / "model"), "--images", str(tmp_path)]) == 2
    assert "no images" in capsys.readouterr().err
