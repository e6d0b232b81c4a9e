"""The shipped tokenizers: sha256-verified, multi-scale and single-scale twins of one size, they reconstruct."""

import hashlib
import json
import shutil

import pytest
import torch

from genaccel.tokenizers import load_reference_tokenizer
from genaccel.tokenizers.reference import KINDS, load_bundled_tokenizer


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_reference_tokenizers_verify_and_reconstruct(kind):
    manifest = json.loads((KINDS[kind] / "manifest.json").read_text())
    data = (KINDS[kind] / manifest["weights"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"] and len(data) <= 20 * 2**20
    model = load_reference_tokenizer(kind)
    size = model.config.image_size
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert model(x).sample.shape == x.shape
    assert (len(model.scales) > 1) == (kind == "multi-scale")
    # a trained tokenizer reconstructs an emoji-like picture (a yellow disc on white): about 27 dB for both
    from genaccel.eval.fidelity import psnr

    y, x_ = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (x_ - size / 2) ** 2 + (y - size / 2) ** 2 < (size / 3) ** 2
    picture = torch.ones(3, size, size)
    picture[1][disc], picture[2][disc] = 0.8, 0.1
    with torch.no_grad():
        reconstruction = model(picture[None] * 2 - 1).sample.clamp(-1, 1)[0]
    as_uint8 = lambda t: ((t + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()  # noqa: E731
    assert psnr(as_uint8(reconstruction), as_uint8(picture * 2 - 1)) > 24


def test_twins_have_one_recipe_and_parameter_counts_within_ten_percent():
    multi, single = (load_reference_tokenizer(kind) for kind in ("multi-scale", "single-scale"))
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert abs(count(multi) - count(single)) / count(single) < 0.10
    infos = [json.loads((KINDS[k] / "manifest.json").read_text())["info"] for k in ("multi-scale", "single-scale")]
    assert infos[0]["steps"] == infos[1]["steps"]
    differing = {k for k in infos[0]["config"] if infos[0]["config"][k] != infos[1]["config"].get(k)}
    assert differing <= {"scales", "output_dir"}


def test_tampered_weights_and_unknown_kinds_are_refused(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(KINDS["single-scale"], copy)
    weights = copy / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_bundled_tokenizer(copy)
    with pytest.raises(ValueError, match="kind must be one of"):
        load_reference_tokenizer("tiny")
