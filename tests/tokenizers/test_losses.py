"""The tokenizer's optional perceptual and adversarial terms: exact values where they exist, and
training runs that use them resume bit for bit (the discriminator is checkpointed too)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from genaccel.cli import main
from genaccel.eval.inception import InceptionV3Features
from genaccel.eval.weights import INCEPTION, WeightsNotFoundError, resolve_weights
from genaccel.train.adversarial import PatchDiscriminator, discriminator_hinge_loss, generator_hinge_loss
from genaccel.train.perceptual import InceptionPerceptualLoss
from genaccel.train.tokenizer import TokenizerTrainConfig, build_tokenizer, tokenizer_loss

ARGS = ["--num-images", "20", "--image-size", "16", "--patch-size", "2", "--width", "32", "--heads", "2",
        "--encoder-depth", "1", "--scale-depth", "1", "--decoder-depth", "1", "--scales", "1,2,4,8",
        "--batch-size", "4", "--warmup-steps", "1", "--log-every", "1", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def perceptual() -> InceptionPerceptualLoss:
    torch.manual_seed(0)
    return InceptionPerceptualLoss(InceptionV3Features(), resize=48)


def test_perceptual_distance_is_zero_only_for_identical_images(perceptual):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert perceptual(x, x).item() == 0.0
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1).requires_grad_()
    distance = perceptual(y, x)
    assert distance.item() > 0
    distance.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in perceptual.parameters())


def test_perceptual_network_stays_frozen_in_eval_mode(perceptual):
    perceptual.train()
    assert not perceptual.training and not any(m.training for m in perceptual.modules())


def test_perceptual_rejects_mismatched_shapes_and_tiny_resize(perceptual):
    with pytest.raises(ValueError, match="differ"):
        perceptual(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="resize must be >= 32"):
        InceptionPerceptualLoss(InceptionV3Features(), resize=16)


def test_hinge_losses_have_their_exact_values():
    assert discriminator_hinge_loss(torch.full((2, 1, 4, 4), 2.0), torch.full((2, 1, 4, 4), -2.0)).item() == 0.0
    assert discriminator_hinge_loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)).item() == 1.0
    assert generator_hinge_loss(torch.full((2, 1, 4, 4), 0.5)).item() == -0.5


def test_discriminator_scores_4x4_patches():
    assert PatchDiscriminator(16)(torch.zeros(3, 3, 32, 32)).shape == (3, 1, 8, 8)


def test_loss_terms_add_up(perceptual):
    torch.manual_seed(0)
    config = TokenizerTrainConfig(output_dir="unused", image_size=16, patch_size=2, width=32, heads=2,
                                  encoder_depth=1, scale_depth=1, decoder_depth=1)
    model = build_tokenizer(config).eval()
    discriminator = PatchDiscriminator(16)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    plain = tokenizer_loss(model, images, 0.0, torch.Generator().manual_seed(0))
    full = tokenizer_loss(model, images, 0.0, torch.Generator().manual_seed(0), perceptual=perceptual,
                          perceptual_weight=0.5, discriminator=discriminator, adversarial_weight=0.1)
    assert set(plain.parts) == {"reconstruction"}
    assert set(full.parts) == {"reconstruction", "perceptual", "adversarial", "adaptive_weight"}
    assert torch.equal(plain.reconstruction, full.reconstruction)
    parts = full.parts
    expected = plain.total + 0.5 * parts["perceptual"] + 0.1 * parts["adaptive_weight"] * parts["adversarial"]
    torch.testing.assert_close(full.total, expected)


def test_the_adaptive_weight_equalises_the_gradient_norms_at_the_last_layer():
    from genaccel.train.tokenizer import adaptive_weight

    layer = torch.nn.Linear(4, 4)
    x = torch.randn(8, 4)
    reconstruction, adversarial = layer(x).pow(2).mean(), -3.0 * layer(x).mean()
    weight = adaptive_weight(reconstruction, adversarial, layer.weight)
    g_rec, = torch.autograd.grad(reconstruction, layer.weight, retain_graph=True)
    g_adv, = torch.autograd.grad(weight * adversarial, layer.weight)
    torch.testing.assert_close(g_adv.norm(), g_rec.norm(), rtol=1e-3, atol=0)
    assert not weight.requires_grad


def test_adversarial_run_resumes_exactly(tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    common = ARGS + ["--adversarial-weight", "0.1", "--adversarial-start", "1", "--discriminator-channels", "8"]
    assert main(["train-tokenizer", str(full), *common, "--max-steps", "4"]) == 0
    assert main(["train-tokenizer", str(split), *common, "--max-steps", "2"]) == 0
    assert main(["train-tokenizer", str(split), *common, "--max-steps", "4", "--resume", "latest"]) == 0
    for name in ("ema.safetensors", "discriminator.safetensors"):
        a = load_file(full / "checkpoints" / "step-4" / name)
        b = load_file(split / "checkpoints" / "step-4" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logged = [json.loads(line) for line in (full / "log.jsonl").read_text().splitlines()]
    assert "adversarial" not in logged[0] and {"adversarial", "discriminator"} <= logged[1].keys()


def test_resuming_a_plain_run_with_a_discriminator_is_a_one_line_error(tmp_path, capsys):
    assert main(["train-tokenizer", str(tmp_path), *ARGS, "--max-steps", "2"]) == 0
    capsys.readouterr()
    assert main(["train-tokenizer", str(tmp_path), *ARGS, "--max-steps", "4", "--resume", "latest",
                 "--adversarial-weight", "0.1"]) == 2
    assert "has no discriminator.safetensors" in capsys.readouterr().err


def test_negative_weights_are_refused(tmp_path, capsys):
    assert main(["train-tokenizer", str(tmp_path), *ARGS, "--perceptual-weight", "-1"]) == 2
    assert "perceptual_weight must be >= 0" in capsys.readouterr().err


def test_perceptual_run_with_the_registry_inception(tmp_path):
    try:
        resolve_weights(INCEPTION)
    except WeightsNotFoundError:
        pytest.skip("the registry Inception weights are not installed (`genaccel weights fetch inception`)")
    from genaccel.eval.inception import load_inception

    network = load_inception()
    perceptual = InceptionPerceptualLoss.from_registry(resize=32)
    for name, module in perceptual.stem.items():  # the FID network's own stem, not a fresh one
        assert torch.equal(module.conv.weight, getattr(network, name).conv.weight)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert perceptual(x, x).item() == 0.0 and perceptual(x.flip(-1), x).item() > 0
    assert main(["train-tokenizer", str(tmp_path), *ARGS, "--max-steps", "2", "--perceptual-weight", "1",
                 "--perceptual-resize", "32"]) == 0
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert all(entry["perceptual"] > 0 for entry in logged)
