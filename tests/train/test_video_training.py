"""Class-conditional video: the Wan pipeline (one-hot class token), training on a clip folder, bundling."""

import json

import numpy as np
import pytest
import torch

import genaccel
from genaccel.cli import main
from genaccel.pipelines.class_conditional_video import ClassConditionalVideoPipeline, class_condition
from genaccel.train.diffusion import TrainConfig, build_model, diffusion_loss, make_scheduler

TINY = dict(arch="wan", data="clips", image_size=8, num_frames=4, width=24, depth=1, heads=2, patch_size=2,
            batch_size=2, warmup_steps=1, log_every=1, sample_steps=2, guidance_scale=2.0)


def _pipe(num_classes=3):
    from diffusers import DDIMScheduler

    torch.manual_seed(0)
    model = build_model(TrainConfig(output_dir="unused", **TINY), num_classes).eval()
    pipe = ClassConditionalVideoPipeline(model, DDIMScheduler(), ["a", "b", "c"][:num_classes], num_frames=4,
                                         image_size=8)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, **kwargs):
    return pipe([0, 2], num_inference_steps=2, generator=torch.Generator().manual_seed(1), output_type="pt",
                **kwargs).frames


def test_class_token_is_one_hot_with_the_null_class_last():
    token = class_condition(torch.tensor([0, 3]), 4, torch.float32)
    assert token.shape == (2, 1, 4) and torch.equal(token[:, 0], torch.eye(4)[[0, 3]])
    assert _pipe().num_classes == 3  # text_dim 4: three classes and the null class


def test_clips_are_deterministic_per_seed_and_guidance_is_one_batched_call():
    pipe = _pipe()
    clips = _run(pipe)
    assert len(clips) == 2 and clips[0].shape == (4, 3, 8, 8) and 0 <= float(clips[0].min())
    assert all(torch.equal(a, b) for a, b in zip(clips, _run(pipe)))
    batches = []
    handle = pipe.transformer.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    _run(pipe, guidance_scale=2.0)
    handle.remove()
    assert batches == [4, 4]  # two steps, conditional + unconditional stacked
    frames = pipe("b", num_inference_steps=1, output_type="pil").frames
    assert len(frames) == 1 and len(frames[0]) == 4 and frames[0][0].size == (8, 8)
    with pytest.raises(ValueError, match="outside"):
        pipe([3])
    with pytest.raises(ValueError, match="multiple of the patch size"):
        pipe([0], image_size=7)


def test_sparse_attention_on_the_video_pipeline_and_exact_remove():
    pipe = _pipe()
    dense = torch.stack(_run(pipe))
    genaccel.apply(pipe, genaccel.ProxyAttentionConfig(window=(4, 4, 4)))  # one window covers 4x4x4 tokens
    whole = torch.stack(_run(pipe))
    genaccel.remove(pipe)
    genaccel.apply(pipe, genaccel.WindowAttentionConfig(window=(1, 2, 2)))
    sparse = torch.stack(_run(pipe))
    genaccel.remove(pipe)
    torch.testing.assert_close(whole, dense, atol=1e-5, rtol=0)
    assert not torch.allclose(sparse, dense, atol=1e-4)
    assert torch.equal(torch.stack(_run(pipe)), dense)


def test_loss_trains_the_wan_model_on_clips():
    torch.manual_seed(0)
    config = TrainConfig(output_dir="unused", **TINY)
    model = build_model(config, num_classes=3)
    scheduler = make_scheduler(config)
    clips, labels = torch.rand(2, 3, 4, 8, 8) * 2 - 1, torch.tensor([0, 2])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = diffusion_loss(model, scheduler, clips, labels, torch.Generator().manual_seed(0), 3, 0.0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 3


def _clip_folder(folder, count=4, frames=4, size=8):
    from genaccel.data.shapes import write_labels

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"{k:06d}.npy" for k in range(count)]
    for name in names:
        np.save(folder / name, rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8))
    write_labels(folder, names, [k % 2 for k in range(count)], ["up", "down"])


def test_train_cli_on_a_clip_folder_then_bundle_and_load(tmp_path, capsys):
    from genaccel.train.bundle import load_bundled_pipeline
    from genaccel.train.bundle import main as bundle

    _clip_folder(tmp_path / "clips")
    out = tmp_path / "run"
    assert main(["train", str(out), "--arch", "wan", "--data", str(tmp_path / "clips"), "--image-size", "8",
                 "--num-frames", "4", "--width", "24", "--depth", "1", "--heads", "2", "--batch-size", "2",
                 "--max-steps", "2", "--sample-steps", "1"]) == 0
    assert (out / "samples" / "step-0000002.png").is_file()
    state = json.loads((out / "checkpoints" / "step-2" / "state.json").read_text())
    assert state["classes"] == ["up", "down"] and state["config"]["arch"] == "wan"
    bundle([str(out / "checkpoints" / "step-2"), str(tmp_path / "bundle"), "--fp32"])
    pipe = load_bundled_pipeline(tmp_path / "bundle")
    assert isinstance(pipe, ClassConditionalVideoPipeline) and pipe.class_names == ["up", "down"]
    assert (pipe.config.num_frames, pipe.config.image_size) == (4, 8)
    clip = pipe([1], num_inference_steps=1, generator=torch.Generator().manual_seed(0)).frames[0]
    from genaccel.train.diffusion import pipeline_from_checkpoint

    original = pipeline_from_checkpoint(out / "checkpoints" / "step-2")
    expected = original([1], num_inference_steps=1, generator=torch.Generator().manual_seed(0)).frames[0]
    assert clip.shape == (4, 8, 8, 3) and np.array_equal(clip, expected)  # a float32 bundle is exact
    capsys.readouterr()
    assert main(["train", str(tmp_path / "r2"), "--arch", "wan", "--data", str(tmp_path / "clips"),
                 "--image-size", "8", "--num-frames", "16"]) == 2
    assert "num_frames and image_size ask for (16, 3, 8, 8)" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "r3"), "--arch", "wan"]) == 2
    assert "arch 'wan' trains on clips" in capsys.readouterr().err


def test_clip_folder_errors_name_the_file(tmp_path):
    from genaccel.data.clip_folder import ClipFolderDataset

    _clip_folder(tmp_path / "a")
    np.save(tmp_path / "a" / "000001.npy", np.zeros((4, 6, 6, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"clips differ in shape: 000000.npy is \(4, 8, 8, 3\), 000001.npy"):
        ClipFolderDataset(tmp_path / "a")
    np.save(tmp_path / "a" / "000001.npy", np.zeros((4, 8, 8, 3), dtype=np.uint8))
    (tmp_path / "a" / "000002.npy").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read clip .*000002.npy"):
        ClipFolderDataset(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "labels.csv").write_text("name,class\nx.npy,0\n")
    with pytest.raises(ValueError, match="needs the columns file,label"):
        ClipFolderDataset(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="labels.csv does not exist"):
        ClipFolderDataset(tmp_path / "missing")
