"""genaccel train-tokenizer: the loss falls, checkpoints resume exactly, both modes train, errors are one line."""

import json

import pytest
import torch
from safetensors.torch import load_file

from genaccel.cli import main
from genaccel.tokenizers import MultiScaleTokenizer
from genaccel.train.tokenizer import TokenizerTrainConfig, build_tokenizer, tokenizer_from_checkpoint, tokenizer_loss

ARGS = ["--num-images", "20", "--image-size", "16", "--patch-size", "2", "--width", "32", "--heads", "2",
        "--encoder-depth", "1", "--scale-depth", "1", "--decoder-depth", "1", "--scales", "1,2,4,8",
        "--batch-size", "4", "--warmup-steps", "1", "--log-every", "1"]


def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    config = TokenizerTrainConfig(output_dir="unused", image_size=16, patch_size=2, width=32, heads=2,
                                  encoder_depth=1, scale_depth=1, decoder_depth=1)
    model = build_tokenizer(config)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        loss = tokenizer_loss(model, images, 1e-6, torch.Generator().manual_seed(0)).total
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2


@pytest.mark.parametrize("quantizer", ["none", "fsq"])
def test_resume_is_exact_and_the_final_tokenizer_loads(tmp_path, quantizer):
    full, split = tmp_path / "full", tmp_path / "split"
    common = ARGS + ["--quantizer", quantizer, "--checkpoint-every", "2"]
    assert main(["train-tokenizer", str(full), *common, "--max-steps", "4"]) == 0
    assert main(["train-tokenizer", str(split), *common, "--max-steps", "2"]) == 0
    assert main(["train-tokenizer", str(split), *common, "--max-steps", "4", "--resume", "latest"]) == 0
    a = load_file(full / "checkpoints" / "step-4" / "ema.safetensors")
    b = load_file(split / "checkpoints" / "step-4" / "ema.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (full / "samples" / "step-0000004.png").is_file()
    final = MultiScaleTokenizer.from_pretrained(full / "final")
    assert final.config.quantizer == (None if quantizer == "none" else "fsq")
    from_checkpoint = tokenizer_from_checkpoint(full / "checkpoints" / "step-4")
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(final(x).sample, from_checkpoint(x).sample)
    losses = [json.loads(line)["loss"] for line in (full / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 4 and all(loss > 0 for loss in losses)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train-tokenizer", str(tmp_path), *ARGS, "--scales", "1,2,4"]) == 2
    assert "rise strictly from >= 1 to the token map's side 8" in capsys.readouterr().err
    assert main(["train-tokenizer", str(tmp_path), *ARGS, "--scales", "1,x"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
    assert main(["train-tokenizer", str(tmp_path), "--data", str(tmp_path / "missing")]) == 2
    assert "existing image folder" in capsys.readouterr().err
