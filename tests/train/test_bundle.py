import hashlib
import json

import numpy as np
import pytest
import torch

from genaccel.pipelines.reference import REFERENCE_DIR, load_reference_pipeline
from genaccel.train.bundle import bundle_pipeline, load_bundled_pipeline, main
from genaccel.train.diffusion import TrainConfig, pipeline_from_checkpoint, train


def _sample(pipe, steps=2):
    pipe.set_progress_bar_config(disable=True)
    return pipe([0, 1], num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
                guidance_scale=2.0, output_type="pt").images


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(output_dir=str(out), num_images=20, image_size=16, width=16, depth=1, heads=1,
                         batch_size=2, max_steps=2, sample_steps=1)
    torch.set_num_threads(1)
    train(config)
    return out / "checkpoints" / "step-2"


def test_bundle_roundtrip_float32_is_exact(checkpoint, tmp_path):
    pipe = pipeline_from_checkpoint(checkpoint)
    bundle_pipeline(pipe, tmp_path, dtype=torch.float32)
    loaded = load_bundled_pipeline(tmp_path)
    assert loaded.class_names == pipe.class_names
    assert torch.equal(_sample(pipe), _sample(loaded))


def test_bundle_cli_float16_manifest_hash(checkpoint, tmp_path, capsys):
    main([str(checkpoint), str(tmp_path)])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    data = (tmp_path / "diffusion_pytorch_model.safetensors").read_bytes()
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest() and manifest["weights_dtype"] == "float16"
    assert manifest["info"]["steps"] == 2
    loaded = load_bundled_pipeline(tmp_path)
    assert next(loaded.transformer.parameters()).dtype == torch.float32
    torch.testing.assert_close(_sample(loaded), _sample(pipeline_from_checkpoint(checkpoint)), atol=2e-2, rtol=0)


def test_tampered_weights_are_refused(checkpoint, tmp_path):
    bundle_pipeline(pipeline_from_checkpoint(checkpoint), tmp_path)
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256 of .* is .* but manifest.json records"):
        load_bundled_pipeline(tmp_path)
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        load_bundled_pipeline(tmp_path / "missing")


def test_reference_model_verifies_loads_and_samples():
    manifest = json.loads((REFERENCE_DIR / "manifest.json").read_text())
    data = (REFERENCE_DIR / manifest["weights"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert len(data) <= 20 * 2**20
    pipe = load_reference_pipeline()
    config = pipe.transformer.config
    assert (config.sample_size, config.patch_size, config.in_channels) == (32, 2, 3)
    assert pipe.class_names == manifest["classes"] and pipe.num_classes == len(manifest["classes"])
    images = _sample(pipe)
    assert images.shape == (2, 3, 32, 32) and torch.equal(images, _sample(pipe))


def test_emoji_reference_model_verifies_loads_and_denoises_an_emoji_like_picture():
    from diffusers import DDPMScheduler, DiTTransformer2DModel

    from genaccel.data.emoji import GROUPS
    from genaccel.pipelines.loading import load_pipeline
    from genaccel.pipelines.reference import REFERENCE_DIRS

    folder = REFERENCE_DIRS["emoji"]
    manifest = json.loads((folder / "manifest.json").read_text())
    data = (folder / manifest["weights"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"] and len(data) <= 20 * 2**20
    pipe = load_pipeline("demo-emoji")
    config = pipe.transformer.config
    assert (config.sample_size, config.patch_size, config.in_channels) == (32, 2, 3)
    assert pipe.class_names == list(GROUPS)
    images = _sample(pipe)
    assert images.shape == (2, 3, 32, 32) and torch.equal(images, _sample(pipe))
    # learned, not noise: from a yellow disc on white noised to t = 400 (input PSNR about 11 dB), the
    # trained model's clean-image estimate is above 22 dB (measured 26.2), a fresh one's below 12 (9.7)
    rows, columns = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disc = (rows - 15.5) ** 2 + (columns - 15.5) ** 2 < 12**2
    clean = torch.where(disc, torch.tensor([1.0, 0.6, -0.8]).view(3, 1, 1), torch.ones(3, 1, 1)).expand(4, 3, 32, 32)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    timesteps = torch.full((4,), 400)
    noisy = scheduler.add_noise(clean, torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)), timesteps)
    alpha_bar = scheduler.alphas_cumprod[400]

    def estimate_psnr(model):
        with torch.no_grad():
            velocity = model(noisy, timestep=timesteps, class_labels=torch.zeros(4, dtype=torch.long)).sample[:, :3]
        estimate = (alpha_bar.sqrt() * noisy - (1 - alpha_bar).sqrt() * velocity).clamp(-1, 1)
        return float(-10 * torch.log10(((estimate - clean) / 2).pow(2).mean()))

    assert scheduler.config.prediction_type == "v_prediction"
    assert estimate_psnr(pipe.transformer) > 22
    torch.manual_seed(0)
    assert estimate_psnr(DiTTransformer2DModel.from_config(config)) < 12


def test_reference_video_model_verifies_loads_and_samples_clips():
    from genaccel.pipelines.class_conditional_video import ClassConditionalVideoPipeline
    from genaccel.pipelines.reference import REFERENCE_DIRS

    folder = REFERENCE_DIRS["video"]
    manifest = json.loads((folder / "manifest.json").read_text())
    data = (folder / manifest["weights"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"] and len(data) <= 20 * 2**20
    pipe = load_reference_pipeline("video")
    assert isinstance(pipe, ClassConditionalVideoPipeline) and pipe.class_names == manifest["classes"]
    pipe.set_progress_bar_config(disable=True)
    clips = pipe([0, 2], num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    again = pipe([0, 2], num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    assert all(np.array_equal(a, b) for a, b in zip(clips, again))  # seeded: the same clips
    frames, size = manifest["video"]["num_frames"], manifest["video"]["image_size"]
    assert len(clips) == 2 and clips[0].shape == (frames, size, size, 3) and frames >= 16
    # learned, not noise: a yellow disc gliding over white, noised to t = 400 (input PSNR about 11 dB), is
    # denoised to above 21 dB (measured 23.4; 20.6 after the first 887 steps), a fresh model's below 11 (9.6)
    from diffusers import DDPMScheduler, WanTransformer3DModel

    from genaccel.pipelines.class_conditional_video import class_condition

    rows, columns = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    glide = torch.arange(float(frames)).view(frames, 1, 1) / 2
    disc = (rows - 7.5) ** 2 + (columns - 4 - glide) ** 2 < 4.5**2
    clean = torch.where(disc, torch.tensor([1.0, 0.6, -0.8]).view(3, 1, 1, 1), torch.ones(3, 1, 1, 1))
    clean = clean.expand(4, 3, frames, size, size)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    timesteps = torch.full((4,), 400)
    noisy = scheduler.add_noise(clean, torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)), timesteps)
    alpha_bar = scheduler.alphas_cumprod[400]
    condition = class_condition(torch.zeros(4, dtype=torch.long), pipe.transformer.config.text_dim, torch.float32)

    def estimate_psnr(model):
        with torch.no_grad():
            velocity = model(noisy, timestep=timesteps, encoder_hidden_states=condition, return_dict=False)[0]
        estimate = (alpha_bar.sqrt() * noisy - (1 - alpha_bar).sqrt() * velocity).clamp(-1, 1)
        return float(-10 * torch.log10(((estimate - clean) / 2).pow(2).mean()))

    assert scheduler.config.prediction_type == "v_prediction"
    assert estimate_psnr(pipe.transformer) > 21
    torch.manual_seed(0)
    assert estimate_psnr(WanTransformer3DModel.from_config(pipe.transformer.config)) < 11
    with pytest.raises(ValueError, match="kind must be one of"):
        load_reference_pipeline("cuda")
