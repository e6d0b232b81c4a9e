"""Training the multi-scale tokenizer (or its single-scale twin) on accelerate, with the conventions of
`genaccel.train.diffusion`: a seeded, resumable loop (batch order per epoch and the posterior noise of
step s on process r come from (seed, s, r)), EMA weights, mixed precision, checkpoints, sample grids.

Loss: L1 + MSE between the image and its reconstruction, plus `kl_weight` x the posterior's KL to a
standard normal in continuous mode (keeps the latent scale tame for a diffusion model; FSQ needs none),
plus, when their weights are > 0, `perceptual_weight` x an LPIPS-style distance on the Inception stem
(`genaccel.train.perceptual`) and, from step `adversarial_start`, `adversarial_weight` x a PatchGAN
hinge term scaled by VQGAN's adaptive weight (`genaccel.train.adversarial`; the discriminator trains in the same loop and is
checkpointed with the tokenizer). BENCHMARKS.md's `tokenizers` table measures each against plain
reconstruction.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from genaccel.train.diffusion import MIXED_PRECISION, TrainConfig, _step_generator, batch_indices, load_training_data
from genaccel.train.ema import EMA

QUANTIZERS = ("none", "fsq")


@dataclass
class TokenizerTrainConfig:
    """Everything a tokenizer run depends on; saved into every checkpoint's state.json."""

    output_dir: str
    data: str = "shapes"  # "shapes" or a folder of same-size images
    num_images: int = 4000  # size of the generated shapes dataset (train + held-out)
    image_size: int = 32
    data_seed: int = 0
    patch_size: int = 4
    width: int = 128
    heads: int = 4
    encoder_depth: int = 2
    scale_depth: int = 2
    decoder_depth: int = 2
    scales: str = "1,2,4,8"  # comma-separated, coarse to fine, ending at image_size / patch_size
    latent_channels: int = 4
    quantizer: str = "none"
    fsq_levels: str = "8,5,5,5"
    kl_weight: float = 1e-6
    perceptual_weight: float = 0.0
    perceptual_resize: int = 96  # pixels per side the images are resized to before the Inception stem
    adversarial_weight: float = 0.0
    adversarial_start: int = 500  # steps of reconstruction-only training before the discriminator joins
    discriminator_channels: int = 64
    batch_size: int = 32
    learning_rate: float = 3e-4
    warmup_steps: int = 200
    max_steps: int = 2000
    ema_decay: float = 0.999
    mixed_precision: str = "no"
    checkpoint_every: int = 500
    sample_every: int = 0  # 0: only at the end
    log_every: int = 10
    max_minutes: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        for name in ("batch_size", "max_steps", "width", "heads", "patch_size", "latent_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("kl_weight", "perceptual_weight", "adversarial_weight", "adversarial_start"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.perceptual_resize < 32:
            raise ValueError(f"perceptual_resize must be >= 32 pixels, got {self.perceptual_resize!r}")
        if self.discriminator_channels < 1:
            raise ValueError(f"discriminator_channels must be >= 1, got {self.discriminator_channels!r}")
        _ints(self.scales, "scales")
        _ints(self.fsq_levels, "fsq_levels")

    @classmethod
    def from_dict(cls, values: dict) -> "TokenizerTrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}") from None


def build_tokenizer(config: TokenizerTrainConfig):
    """A freshly initialised MultiScaleTokenizer for `config` (its errors name bad scales / levels)."""
    from genaccel.tokenizers import MultiScaleTokenizer

    return MultiScaleTokenizer(
        image_size=config.image_size, patch_size=config.patch_size, width=config.width, heads=config.heads,
        encoder_depth=config.encoder_depth, scale_depth=config.scale_depth, decoder_depth=config.decoder_depth,
        scales=_ints(config.scales, "scales"), latent_channels=config.latent_channels,
        quantizer=None if config.quantizer == "none" else config.quantizer,
        fsq_levels=_ints(config.fsq_levels, "fsq_levels"))


@dataclass
class LossTerms:
    """The tokenizer's loss this step, its parts (detached, for the log) and the reconstruction."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]
    reconstruction: torch.Tensor


def tokenizer_loss(model, images: torch.Tensor, kl_weight: float, generator: torch.Generator, *,
                   perceptual=None, perceptual_weight: float = 0.0,
                   discriminator=None, adversarial_weight: float = 0.0) -> LossTerms:
    """L1 + MSE of the reconstruction (from a posterior sample) plus kl_weight x KL (continuous mode),
    plus perceptual_weight x `perceptual(rec, x)` and adversarial_weight x the generator hinge term
    of `discriminator` where those are given."""
    from genaccel.train.adversarial import generator_hinge_loss

    decoded, posterior = model(images, sample_posterior=True, generator=generator, return_posterior=True)
    reconstruction, target = decoded.sample.float(), images.float()
    pixel = (reconstruction - target).abs().mean() + (reconstruction - target).pow(2).mean()
    loss, parts = pixel, {"reconstruction": pixel.detach()}
    continuous = getattr(model, "module", model).quantize is None  # (model may be wrapped for DDP)
    if kl_weight and continuous:  # FSQ's point-mass posterior has no KL term
        loss = loss + kl_weight * posterior.kl().mean()
    if perceptual is not None and perceptual_weight:
        term = perceptual(reconstruction, target)
        loss, parts["perceptual"] = loss + perceptual_weight * term, term.detach()
    if discriminator is not None and adversarial_weight:
        term = generator_hinge_loss(discriminator(reconstruction))
        balance = adaptive_weight(loss, term, getattr(model, "module", model).to_pixels.weight)
        loss = loss + adversarial_weight * balance * term
        parts["adversarial"], parts["adaptive_weight"] = term.detach(), balance
    return LossTerms(loss, parts, reconstruction)


def adaptive_weight(reconstruction_loss: torch.Tensor, adversarial_loss: torch.Tensor,
                    last_layer: torch.Tensor) -> torch.Tensor:
    """VQGAN's balance: |grad of the reconstruction loss| / |grad of the adversarial loss| at the decoder's
    last layer (clamped to [0, 1e4], no gradient), so the discriminator can never drown the reconstruction."""
    if not torch.is_grad_enabled() or not last_layer.requires_grad:
        return torch.ones((), device=last_layer.device)
    reconstruction_grad, = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)
    adversarial_grad, = torch.autograd.grad(adversarial_loss, last_layer, retain_graph=True)
    return (reconstruction_grad.norm() / (adversarial_grad.norm() + 1e-4)).clamp(0, 1e4).detach()


def _save(folder: Path, model, ema: EMA, optimizer, config: TokenizerTrainConfig, step: int,
          critic: tuple | None = None) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder / "model")
    save_file(ema.state_dict(), folder / "ema.safetensors")
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    if critic is not None:
        discriminator, discriminator_optimizer = critic
        save_file(discriminator.state_dict(), folder / "discriminator.safetensors")
        torch.save(discriminator_optimizer.state_dict(), folder / "discriminator_optimizer.pt")
    (folder / "state.json").write_text(json.dumps({"step": step, "config": asdict(config)}, indent=2))


def ema_tokenizer(model, ema: EMA):
    """A copy of `model` holding the EMA weights, in eval mode."""
    copy_ = copy.deepcopy(model).eval()
    ema.copy_to(copy_)
    return copy_


def tokenizer_from_checkpoint(folder: str | Path):
    """The EMA tokenizer of a checkpoint written by `train_tokenizer`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "state.json").exists():
        raise FileNotFoundError(f"{folder} is not a tokenizer checkpoint: it has no state.json")
    config = TokenizerTrainConfig.from_dict(json.loads((folder / "state.json").read_text())["config"])
    model = build_tokenizer(config)
    ema = EMA(model, config.ema_decay)
    ema.load_state_dict(load_file(folder / "ema.safetensors"))
    return ema_tokenizer(model, ema)


def save_reconstruction_grid(model, images: torch.Tensor, path: Path) -> None:
    """Originals (top row) over reconstructions (bottom row), as one PNG."""
    from genaccel.pipelines.class_conditional import image_grid
    from PIL import Image

    with torch.no_grad():
        reconstruction = model(images.to(next(model.parameters()).dtype)).sample.float().clamp(-1, 1)
    rows = torch.cat([images.float(), reconstruction.cpu()])
    arrays = ((rows + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid([Image.fromarray(a) for a in arrays], columns=len(images)).save(path)


def train_tokenizer(config: TokenizerTrainConfig, resume: str | None = None) -> Path:
    """Run (or resume) a tokenizer run; returns the final tokenizer folder (EMA weights, save_pretrained)."""
    from accelerate import Accelerator
    from safetensors.torch import load_file
    from tqdm.auto import tqdm

    from genaccel.train.diffusion import latest_checkpoint

    config.validate()
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    data_config = TrainConfig(output_dir=config.output_dir, data=config.data, num_images=config.num_images,
                              image_size=config.image_size, data_seed=config.data_seed)
    images, _, _ = load_training_data(data_config)
    torch.manual_seed(config.seed)
    model = build_tokenizer(config)
    ema = EMA(model, config.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, betas=(0.9, 0.95))
    perceptual = None
    if config.perceptual_weight:
        from genaccel.train.perceptual import InceptionPerceptualLoss

        perceptual = InceptionPerceptualLoss.from_registry(resize=config.perceptual_resize).to(accelerator.device)
    discriminator = discriminator_optimizer = None
    if config.adversarial_weight:
        from genaccel.train.adversarial import PatchDiscriminator

        discriminator = PatchDiscriminator(config.discriminator_channels)
        discriminator_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=config.learning_rate,
                                                    betas=(0.5, 0.9))
    step = 0
    if resume is not None:
        checkpoint = latest_checkpoint(output_dir) if resume == "latest" else Path(resume)
        if checkpoint is None:
            raise FileNotFoundError(f"no checkpoint to resume under {output_dir / 'checkpoints'}")
        model.load_state_dict(load_file(checkpoint / "model" / "diffusion_pytorch_model.safetensors"), strict=True)
        ema.load_state_dict(load_file(checkpoint / "ema.safetensors"))
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True, map_location="cpu"))
        if discriminator is not None:
            if not (checkpoint / "discriminator.safetensors").is_file():
                raise FileNotFoundError(f"{checkpoint} has no discriminator.safetensors: it was trained without "
                                        "--adversarial-weight; resume it with the settings it was trained with")
            discriminator.load_state_dict(load_file(checkpoint / "discriminator.safetensors"), strict=True)
            discriminator_optimizer.load_state_dict(torch.load(
                checkpoint / "discriminator_optimizer.pt", weights_only=True, map_location="cpu"))
        step = json.loads((checkpoint / "state.json").read_text())["step"]
    model, optimizer = accelerator.prepare(model, optimizer)
    if discriminator is not None:
        discriminator, discriminator_optimizer = accelerator.prepare(discriminator, discriminator_optimizer)
    images = images.to(accelerator.device)
    fixed = images[:8].float().cpu() / 127.5 - 1.0  # the same images in every sample grid
    rank, world = accelerator.process_index, accelerator.num_processes
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    progress = tqdm(total=config.max_steps, initial=step, desc="train-tokenizer",
                    disable=not accelerator.is_main_process)
    model.train()
    started = time.monotonic()

    def critic() -> tuple | None:
        if discriminator is None:
            return None
        return accelerator.unwrap_model(discriminator), discriminator_optimizer

    while step < config.max_steps:
        if config.max_minutes > 0:
            late = torch.tensor(float(time.monotonic() - started > 60 * config.max_minutes), device=accelerator.device)
            if accelerator.reduce(late, reduction="sum").item() > 0:
                break
        generator = _step_generator(config.seed, step, rank)
        index = batch_indices(len(images), step, config.batch_size, rank, world, config.seed).to(images.device)
        batch = images[index].float() / 127.5 - 1.0
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * min(1.0, (step + 1) / max(1, config.warmup_steps))
        adversarial = discriminator is not None and step >= config.adversarial_start
        with accelerator.autocast():
            terms = tokenizer_loss(model, batch, config.kl_weight, generator, perceptual=perceptual,
                                   perceptual_weight=config.perceptual_weight,
                                   discriminator=discriminator if adversarial else None,
                                   adversarial_weight=config.adversarial_weight)
        loss = terms.total
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower the learning rate")
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if adversarial:
            from genaccel.train.adversarial import discriminator_hinge_loss

            discriminator_optimizer.zero_grad(set_to_none=True)  # drop what the generator term left
            with accelerator.autocast():
                logits = discriminator(torch.cat([batch, terms.reconstruction.detach()]))
                critic_loss = discriminator_hinge_loss(*logits.float().chunk(2))
            accelerator.backward(critic_loss)
            discriminator_optimizer.step()
            discriminator_optimizer.zero_grad(set_to_none=True)
            terms.parts["discriminator"] = critic_loss.detach()
        ema.update(accelerator.unwrap_model(model))
        step += 1
        progress.update(1)
        if step % config.log_every == 0 or step == config.max_steps:
            mean_loss = accelerator.reduce(loss.detach(), reduction="mean").item()
            progress.set_postfix(loss=f"{mean_loss:.4f}")
            if accelerator.is_main_process:
                with (output_dir / "log.jsonl").open("a") as handle:
                    parts = {name: value.item() for name, value in terms.parts.items()}
                    handle.write(json.dumps({"step": step, "loss": mean_loss, **parts}) + "\n")
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                _save(output_dir / "checkpoints" / f"step-{step}", unwrapped, ema, optimizer, config, step, critic())
            if config.sample_every and step % config.sample_every == 0:
                save_reconstruction_grid(ema_tokenizer(unwrapped, ema), fixed,
                                         output_dir / "samples" / f"step-{step:07d}.png")
    progress.close()
    accelerator.wait_for_everyone()
    final = output_dir / "final"
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        _save(output_dir / "checkpoints" / f"step-{step}", unwrapped, ema, optimizer, config, step, critic())
        tokenizer = ema_tokenizer(unwrapped, ema)
        tokenizer.save_pretrained(final)
        save_reconstruction_grid(tokenizer, fixed, output_dir / "samples" / f"step-{step:07d}.png")
    accelerator.wait_for_everyone()
    return final
