import json

import pytest
import torch
from safetensors.torch import load_file

from genaccel.cli import main
from genaccel.train.diffusion import (
    TrainConfig, _disable_internal_label_dropout, batch_indices, build_model, diffusion_loss, make_scheduler, train,
)

TINY = dict(data="shapes", num_images=40, image_size=16, width=32, depth=2, heads=2, patch_size=2, batch_size=4,
            warmup_steps=2, log_every=1, sample_steps=2, guidance_scale=2.0)


def test_tiny_model_overfits_a_fixed_batch():
    torch.manual_seed(0)
    config = TrainConfig(output_dir="unused", **TINY)
    model = build_model(config, num_classes=4)
    _disable_internal_label_dropout(model)
    scheduler = make_scheduler(config)
    images, labels = torch.rand(4, 3, 16, 16) * 2 - 1, torch.arange(4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        generator = torch.Generator().manual_seed(0)  # the same noise and timesteps every step
        loss = diffusion_loss(model, scheduler, images, labels, generator, null_label=4, class_dropout=0.0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 4


def test_v_prediction_target_is_the_scheduler_velocity():
    config = TrainConfig(output_dir="unused", prediction_type="v_prediction", **TINY)
    scheduler = make_scheduler(config)
    seen = {}

    class Echo(torch.nn.Module):
        def forward(self, sample, timestep, class_labels):
            seen["labels"] = class_labels
            return type("Out", (), {"sample": torch.zeros_like(sample)})()

    images = torch.rand(3, 3, 8, 8)
    loss = diffusion_loss(Echo(), scheduler, images, torch.tensor([0, 1, 2]), torch.Generator().manual_seed(1), 9, 0.0)
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(images.shape, generator=generator)
    timesteps = torch.randint(0, 1000, (3,), generator=generator)
    expected = scheduler.get_velocity(images, noise, timesteps).pow(2).mean()
    torch.testing.assert_close(loss, expected)
    assert seen["labels"].tolist() == [0, 1, 2]


def test_class_dropout_uses_the_null_label():
    seen = {}

    class Echo(torch.nn.Module):
        def forward(self, sample, timestep, class_labels):
            seen["labels"] = class_labels
            return type("Out", (), {"sample": sample})()

    scheduler = make_scheduler(TrainConfig(output_dir="unused"))
    diffusion_loss(Echo(), scheduler, torch.zeros(64, 3, 4, 4), torch.zeros(64, dtype=torch.long),
                   torch.Generator().manual_seed(0), null_label=7, class_dropout=0.5)
    assert set(seen["labels"].tolist()) == {0, 7}


def test_batch_indices_split_each_epoch_between_processes():
    shares = [batch_indices(12, step, 3, rank, 2, seed=0) for step in range(2) for rank in range(2)]
    assert sorted(torch.cat(shares).tolist()) == list(range(12))  # one epoch = 2 steps of 2 x 3
    assert not torch.equal(batch_indices(12, 2, 3, 0, 2, 0), batch_indices(12, 0, 3, 0, 2, 0))
    with pytest.raises(ValueError, match="larger than the dataset"):
        batch_indices(4, 0, 3, 0, 2, 0)


def _weights(folder):
    return load_file(folder / "model" / "diffusion_pytorch_model.safetensors")


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    full = TrainConfig(output_dir=str(tmp_path / "full"), max_steps=6, checkpoint_every=3, **TINY)
    train(full)
    part = TrainConfig(output_dir=str(tmp_path / "part"), max_steps=3, checkpoint_every=3, **TINY)
    train(part)
    resumed = TrainConfig(output_dir=str(tmp_path / "part"), max_steps=6, checkpoint_every=3, **TINY)
    train(resumed, resume="latest")
    a, b = tmp_path / "full" / "checkpoints" / "step-6", tmp_path / "part" / "checkpoints" / "step-6"
    assert json.loads((b / "state.json").read_text())["step"] == 6
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert torch.equal(load_file(a / "ema.safetensors")["pos_embed.proj.weight"],
                       load_file(b / "ema.safetensors")["pos_embed.proj.weight"])
    steps = [json.loads(line)["step"] for line in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "part" / "final" / "model_index.json").exists()
    assert (tmp_path / "part" / "samples" / "step-0000006.png").exists()


def test_cli_reports_user_errors(tmp_path, capsys):
    assert main(["train", str(tmp_path), "--data", str(tmp_path / "missing")]) == 2
    assert "--data must be 'shapes' or an existing image or clip folder" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--width", "30", "--heads", "4"]) == 2
    assert "divisible by heads" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--resume", "latest", "--num-images", "20", "--image-size", "16",
                 "--width", "16", "--depth", "1", "--heads", "1", "--batch-size", "2"]) == 2
    assert "no checkpoint to resume" in capsys.readouterr().err


@pytest.mark.parametrize("arch, class_name", [("ptdit", "PTDiTTransformer2DModel"), ("lamamba", "LaMambaDiTModel")])
def test_genaccel_models_train_through_the_same_loop(tmp_path, arch, class_name):
    small = {**TINY, "num_images": 20, "width": 16, "heads": 1, "batch_size": 2, "max_steps": 2, "sample_steps": 1}
    config = TrainConfig(output_dir=str(tmp_path), arch=arch, **small)
    assert type(build_model(config, num_classes=8)).__name__ == class_name
    train(config)
    state = json.loads((tmp_path / "checkpoints" / "step-2" / "state.json").read_text())
    assert state["step"] == 2 and state["config"]["arch"] == arch
    assert json.loads((tmp_path / "final" / "transformer" / "config.json").read_text())["_class_name"] == class_name


@pytest.mark.parametrize("arch", ["ptdit", "lamamba"])
def test_window_size_reaches_the_model_and_the_dense_dit_refuses_it(arch):
    small = {**TINY, "width": 16, "heads": 1}
    assert build_model(TrainConfig(output_dir="unused", arch=arch, window_size=4, **small), 8).config.window_size == 4
    default = build_model(TrainConfig(output_dir="unused", arch=arch, **small), 8).config.window_size
    assert default == {"ptdit": 2, "lamamba": 8}[arch]
    with pytest.raises(ValueError, match="window_size applies to arch 'ptdit' and 'lamamba'"):
        TrainConfig(output_dir="unused", arch="dit", window_size=4, **small).validate()


def test_trains_from_an_image_folder(tmp_path):
    from genaccel.data.shapes import save_shapes

    save_shapes(tmp_path / "data", num_images=12, size=16, seed=0, progress=False)
    out = tmp_path / "run"
    assert main(["train", str(out), "--data", str(tmp_path / "data" / "train"), "--image-size", "16",
                 "--width", "16", "--depth", "1", "--heads", "1", "--batch-size", "2", "--max-steps", "2",
                 "--sample-steps", "1"]) == 0
    state = json.loads((out / "checkpoints" / "step-2" / "state.json").read_text())
    assert state["step"] == 2 and state["classes"][0] == "circle"
    assert main(["train", str(tmp_path / "r2"), "--data", str(tmp_path / "data" / "train"), "--image-size", "32"]) == 2


def test_gradient_checkpointing_gives_the_same_weights_and_bf16_runs(tmp_path):
    small = {**TINY, "num_images": 20, "width": 16, "heads": 1, "batch_size": 2, "max_steps": 2, "sample_steps": 1}
    train(TrainConfig(output_dir=str(tmp_path / "plain"), **small))
    train(TrainConfig(output_dir=str(tmp_path / "ckpt"), gradient_checkpointing=True, **small))
    a = _weights(tmp_path / "plain" / "checkpoints" / "step-2")
    b = _weights(tmp_path / "ckpt" / "checkpoints" / "step-2")
    assert all(torch.equal(a[k], b[k]) for k in a)
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # accelerate keeps one precision per process
    try:
        train(TrainConfig(output_dir=str(tmp_path / "bf16"), mixed_precision="bf16", **small))
    finally:
        AcceleratorState._reset_state(True)
    c = _weights(tmp_path / "bf16" / "checkpoints" / "step-2")
    assert all(torch.isfinite(v).all() for v in c.values()) and not all(torch.equal(a[k], c[k]) for k in a)


def test_init_from_starts_a_new_run_from_checkpoint_weights(tmp_path):
    from genaccel.train.diffusion import init_weights

    small = {**TINY, "num_images": 20, "width": 16, "heads": 1, "batch_size": 2, "max_steps": 2, "sample_steps": 1}
    train(TrainConfig(output_dir=str(tmp_path / "a"), **small))
    checkpoint = tmp_path / "a" / "checkpoints" / "step-2"
    model = build_model(TrainConfig(output_dir="unused", **small), num_classes=8)
    init_weights(model, checkpoint)
    saved = _weights(checkpoint)
    assert all(torch.equal(value, saved[name]) for name, value in model.state_dict().items())
    with pytest.raises(FileNotFoundError, match="is neither a checkpoint .* nor a bundle"):
        train(TrainConfig(output_dir=str(tmp_path / "b"), init_from=str(tmp_path / "nope"), **small))


def test_init_from_a_bundle_starts_from_its_weights(tmp_path):
    from genaccel.train.bundle import main as bundle_main
    from genaccel.train.diffusion import init_weights

    small = {**TINY, "num_images": 20, "width": 16, "heads": 1, "batch_size": 2, "max_steps": 2, "sample_steps": 1}
    train(TrainConfig(output_dir=str(tmp_path / "a"), **small))
    bundle_main([str(tmp_path / "a" / "checkpoints" / "step-2"), str(tmp_path / "bundle"), "--fp32"])
    model = build_model(TrainConfig(output_dir="unused", **small), num_classes=8)
    init_weights(model, tmp_path / "bundle")
    shipped = load_file(tmp_path / "bundle" / "diffusion_pytorch_model.safetensors")  # read apart from the loader
    assert model.state_dict().keys() == shipped.keys()
    assert all(torch.equal(value, shipped[name]) for name, value in model.state_dict().items())
    assert not all(torch.equal(value, shipped[name]) for name, value in
                   build_model(TrainConfig(output_dir="unused", **small), num_classes=8).state_dict().items())
    wider = build_model(TrainConfig(output_dir="unused", **{**small, "width": 32}), num_classes=8)
    with pytest.raises(ValueError, match="do not fit the model this run builds: pass the same --arch"):
        init_weights(wider, tmp_path / "bundle")
