"""Our Inception against the registry TorchScript, the torchmetrics doctest goldens, preprocessing."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch

from genaccel.eval.frechet import FeatureStats, frechet_distance
from genaccel.eval.inception import InceptionV3Features, load_inception
from genaccel.eval.kid import kernel_inception_distance
from genaccel.eval.resize import preprocess, resize_legacy_tf, to_uint8
from genaccel.eval.torchscript_tensors import read_torchscript_tensors


@pytest.fixture(scope="module")
def inception(inception_weights) -> InceptionV3Features:
    return load_inception(inception_weights).to(memory_format=torch.channels_last)


def test_features_match_the_torchscript_output(inception, inception_weights) -> None:
    # Test-only: run the bundled TorchScript as the reference our tensor mapping must reproduce.
    reference = torch.jit.load(str(inception_weights)).eval()
    x = torch.randn(2, 3, 299, 299, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    with torch.inference_mode():
        ours, theirs = inception(x.contiguous(memory_format=torch.channels_last)), reference(x)
    assert ours.shape == (2, 2048)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=2e-5)


@pytest.fixture(scope="module")
def doctest_features(inception) -> dict[str, dict[str, torch.Tensor]]:
    """Features of torchmetrics' FID/KID doctest images, drawn from the same RNG stream.

    torchmetrics seeds doctests with 42; constructing its Inception (torch-fidelity layout: 94
    bias-free convs and a 2048x1008 fc, kaiming-uniform init) then draws one float per weight and
    fc bias before the images are drawn. Both doctests draw identical images.
    """
    conv_weights = sum(m.conv.weight.numel() for m in inception.modules() if hasattr(m, "conv"))
    torch.manual_seed(42)
    torch.empty(conv_weights + 2048 * 1008 + 1008).uniform_()
    dist1 = torch.randint(0, 200, (100, 3, 299, 299), dtype=torch.uint8)
    dist2 = torch.randint(100, 255, (100, 3, 299, 299), dtype=torch.uint8)
    rng_after_images = torch.get_rng_state()
    out = {}
    with torch.inference_mode():
        for name, images in (("real", dist1), ("fake", dist2)):
            parts = [inception.forward_layers(preprocess(images[i:i + 25]).contiguous(memory_format=torch.channels_last),
                                              ("64", "2048")) for i in range(0, 100, 25)]
            out[name] = {k: torch.cat([p[k] for p in parts]) for k in ("64", "2048")}
    out["rng"] = rng_after_images
    return out


def test_fid64_reproduces_torchmetrics_doctest(doctest_features) -> None:
    stats = {}
    for side in ("real", "fake"):
        stats[side] = FeatureStats(64)
        stats[side].update(doctest_features[side]["64"])
    value = frechet_distance(*stats["real"].mean_cov(), *stats["fake"].mean_cov())
    assert round(value, 4) == 12.6388


def test_kid_reproduces_torchmetrics_doctest(doctest_features) -> None:
    torch.set_rng_state(doctest_features["rng"])  # KID draws its subsets right after the images
    mean, std = kernel_inception_distance(doctest_features["real"]["2048"], doctest_features["fake"]["2048"],
                                          subsets=100, subset_size=50)
    assert (round(mean, 4), round(std, 4)) == (0.0312, 0.0025)


def test_legacy_tf_resize_follows_tf1_definition() -> None:
    image = torch.randint(0, 256, (1, 3, 5, 7), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    out = resize_legacy_tf(image, size=4)
    src = image[0].double().numpy()
    for oy in range(4):
        for ox in range(4):
            sy, sx = oy * 5 / 4, ox * 7 / 4  # TF1 legacy: no half-pixel offset
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            y1, x1 = min(y0 + 1, 4), min(x0 + 1, 6)
            fy, fx = sy - y0, sx - x0
            top = src[:, y0, x0] * (1 - fx) + src[:, y0, x1] * fx
            bottom = src[:, y1, x0] * (1 - fx) + src[:, y1, x1] * fx
            np.testing.assert_allclose(out[0, :, oy, ox].numpy(), top * (1 - fy) + bottom * fy, atol=1e-4)


def test_to_uint8_rounds_floats_and_preprocess_scales() -> None:
    x = torch.tensor([0.0, 0.5 / 255, 1.49 / 255, 1.51 / 255, 1.0, 1.2])
    assert to_uint8(x).tolist() == [0, 0, 1, 2, 255, 255]  # round half to even, then clamp
    images = torch.full((1, 3, 299, 299), 128, dtype=torch.uint8)
    assert preprocess(images).abs().max().item() == 0.0
    with pytest.raises(ValueError, match="mode"):
        preprocess(images, mode="bicubic")


def test_clean_mode_resizes_with_pil_bicubic() -> None:
    images = torch.randint(0, 256, (1, 3, 40, 30), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
    from PIL import Image

    channel = Image.fromarray(images[0, 1].numpy().astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC)
    expected = (np.asarray(channel).clip(0, 255) - 128) / 128
    np.testing.assert_allclose(preprocess(images, mode="clean")[0, 1].numpy(), expected, atol=1e-6)


def test_torchscript_reader_refuses_foreign_globals(tmp_path) -> None:
    payload = io.BytesIO()
    pickle.dump({"boom": print}, payload, protocol=4)  # references builtins.print
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as archive:
        archive.writestr("archive/data.pkl", payload.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        read_torchscript_tensors(tmp_path / "evil.pt")
