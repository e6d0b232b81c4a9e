"""Class-conditional diffusion training on accelerate: images (DiT, PT-DiT, LaMamba-DiT) in pixel space
or in a tokenizer's latent space (`vae`), or videos (`arch="wan"`: diffusers' WanTransformer3DModel,
the class as a one-hot "text" token).

Latent training encodes the whole training set once (the posterior mode, and of each image's mirror
image when `hflip` is on: a ViT tokenizer's latent of a flipped image is not the flipped latent) and
scales latents by 1 / their std over the training set, the scale the exported pipeline's vae keeps
as `config.scaling_factor`.

The loop is deterministic given the seed: batch order is a seeded permutation per epoch, and the
noise, timesteps and label dropout of step s on process r come from a generator seeded with
(seed, s, r). A run resumed from a checkpoint therefore continues exactly as if it had never
stopped. `batch_size` is per process; processes take disjoint slices of the global batch.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from genaccel.train.ema import EMA

ARCHS = ("dit", "ptdit", "lamamba", "wan")
VIDEO_ARCHS = ("wan",)
PREDICTION_TYPES = ("epsilon", "v_prediction")
MIXED_PRECISION = ("no", "bf16", "fp16")
LOSS_WEIGHTINGS = ("uniform", "min-snr")


@dataclass
class TrainConfig:
    """Everything a run depends on; saved into every checkpoint's state.json."""

    output_dir: str
    data: str = "shapes"  # "shapes" or a folder of images (with labels.csv for classes); videos: a clip folder
    num_images: int = 4000  # size of the generated shapes dataset (train + held-out)
    image_size: int = 32
    num_frames: int = 16  # frames per clip (video archs only)
    data_seed: int = 0
    arch: str = "dit"
    width: int = 192
    depth: int = 6
    heads: int = 4
    patch_size: int = 2
    window_size: int = 0  # ptdit / lamamba attention window (tokens per side); 0: the model's default
    prediction_type: str = "epsilon"
    loss_weighting: str = "uniform"  # "min-snr": Min-SNR-gamma (Hang et al. 2023), per-timestep loss weights
    min_snr_gamma: float = 5.0
    beta_schedule: str = "squaredcos_cap_v2"
    num_train_timesteps: int = 1000
    batch_size: int = 16
    learning_rate: float = 3e-4
    warmup_steps: int = 200
    weight_decay: float = 0.0
    max_steps: int = 1000
    class_dropout: float = 0.1
    hflip: bool = True
    ema_decay: float = 0.999
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    sample_every: int = 0  # 0: only at the end
    sample_steps: int = 50
    guidance_scale: float = 1.5
    log_every: int = 10
    max_minutes: float = 0.0  # stop (and save) after this much wall time; 0: no limit
    init_from: str = ""  # a checkpoint or bundle whose model weights start a new run (fresh optimizer, EMA, step 0)
    # train in a tokenizer's latent space: reference:multi-scale, reference:single-scale or a tokenizer folder
    vae: str = ""
    seed: int = 0

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {self.loss_weighting!r}")
        if self.min_snr_gamma <= 0:
            raise ValueError(f"min_snr_gamma must be > 0, got {self.min_snr_gamma!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.window_size < 0:
            raise ValueError(f"window_size must be >= 0 (0: the model's default), got {self.window_size!r}")
        if self.window_size and self.arch == "dit":
            raise ValueError("window_size applies to arch 'ptdit' and 'lamamba'; the dense 'dit' has no window")
        for name in ("width", "depth", "heads", "patch_size", "batch_size", "max_steps", "num_train_timesteps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        if self.image_size % self.patch_size and not self.vae:
            raise ValueError(f"image_size ({self.image_size}) must be divisible by patch_size ({self.patch_size})")
        if self.vae and self.video:
            raise ValueError("vae (latent training) is for image archs; arch 'wan' trains on pixels")
        if self.video and self.data == "shapes":
            raise ValueError("arch 'wan' trains on clips: give --data a folder written by `genaccel make-data "
                             "emoji-videos` (or `videos`)")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames!r}")
        if not 0.0 <= self.class_dropout < 1.0:
            raise ValueError(f"class_dropout must be in [0, 1), got {self.class_dropout!r}")

    @property
    def video(self) -> bool:
        return self.arch in VIDEO_ARCHS

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def load_training_data(config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    """The whole training set in memory: (uint8 images (N, 3, H, W) or clips (N, 3, T, H, W), int64
    labels (N,), class names)."""
    from tqdm.auto import tqdm

    if config.video:
        from genaccel.data.clip_folder import ClipFolderDataset

        dataset = ClipFolderDataset(config.data)
        expected = (config.num_frames, 3, config.image_size, config.image_size)
        if tuple(dataset.shape) != expected:
            raise ValueError(f"clips in {config.data} are {tuple(dataset.shape)} (T, 3, H, W) but num_frames and "
                             f"image_size ask for {expected}; give --num-frames / --image-size to match")
        classes = dataset.classes
    elif config.data == "shapes":
        from genaccel.data.shapes import SHAPE_CLASSES, ShapesDataset

        dataset = ShapesDataset(config.num_images, config.image_size, config.data_seed, "train")
        classes = list(SHAPE_CLASSES)
    else:
        from genaccel.data.image_folder import ImageFolderDataset

        dataset = ImageFolderDataset(config.data)
        if dataset.size != (config.image_size, config.image_size):
            raise ValueError(f"images in {config.data} are {dataset.size[0]}x{dataset.size[1]} but "
                             f"image_size is {config.image_size}; give --image-size to match")
        classes = dataset.classes
    images, labels = [], []
    for item in tqdm(range(len(dataset)), desc="loading data", leave=False):
        image, label = dataset[item]
        if config.video:
            image = image.transpose(0, 1)  # (T, 3, H, W) -> (3, T, H, W), Wan's layout
        images.append(((image + 1) * 127.5).round().to(torch.uint8))
        labels.append(label)
    labels_tensor = torch.tensor(labels, dtype=torch.long)
    if classes is None:
        classes = [str(k) for k in range(int(labels_tensor.max()) + 1)]
    return torch.stack(images), labels_tensor, classes


def load_vae(config: TrainConfig):
    """The tokenizer `config.vae` names, frozen; it must take config.image_size px images."""
    from genaccel.tokenizers.reference import load_tokenizer

    vae = load_tokenizer(config.vae).requires_grad_(False)
    if vae.config.image_size != config.image_size:
        raise ValueError(f"the vae {config.vae} takes {vae.config.image_size} px images but image_size is "
                         f"{config.image_size}")
    side = vae.config.image_size // vae.config.patch_size
    if side % config.patch_size:
        raise ValueError(f"the vae's {side}x{side} latents are not divisible by patch_size {config.patch_size}")
    return vae


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> the vae's posterior modes (N, C, m, m), float32."""
    from tqdm.auto import tqdm

    out = [vae.encode(images[start:start + batch_size].float() / 127.5 - 1.0).latent_dist.mode()
           for start in tqdm(range(0, len(images), batch_size), desc="encoding latents", leave=False)]
    return torch.cat(out).float()


def build_model(config: TrainConfig, num_classes: int, vae=None) -> nn.Module:
    """A freshly initialised transformer for `config.arch` (DiT's call signature, or Wan's for video);
    with a `vae`, sized for its latents."""
    if config.video:
        from diffusers import WanTransformer3DModel

        head_dim = config.width // config.heads
        return WanTransformer3DModel(
            patch_size=(1, config.patch_size, config.patch_size), num_attention_heads=config.heads,
            attention_head_dim=head_dim, in_channels=3, out_channels=3, text_dim=num_classes + 1, freq_dim=64,
            ffn_dim=4 * config.width, num_layers=config.depth, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
            rope_max_seq_len=max(64, config.num_frames, config.image_size))
    channels, size = 3, config.image_size
    if vae is not None:
        channels, size = vae.config.latent_channels, vae.config.image_size // vae.config.patch_size
    common = dict(num_attention_heads=config.heads, attention_head_dim=config.width // config.heads,
                  in_channels=channels, out_channels=channels, num_layers=config.depth, sample_size=size,
                  patch_size=config.patch_size, num_embeds_ada_norm=num_classes)
    if config.arch == "dit":
        from diffusers import DiTTransformer2DModel

        return DiTTransformer2DModel(**common)
    class_name = {"ptdit": "PTDiTTransformer2DModel", "lamamba": "LaMambaDiTModel"}[config.arch]
    try:
        import genaccel.models as models

        model_class = getattr(models, class_name)
    except (ImportError, AttributeError):
        raise ValueError(f"arch {config.arch!r} needs genaccel.models.{class_name}, which this install "
                         "does not have; use arch 'dit' or update genaccel") from None
    if config.window_size:
        common["window_size"] = config.window_size
    return model_class(**common)


def _disable_internal_label_dropout(model: nn.Module) -> None:
    """Turn off DiT's own random label dropout (it draws from the global RNG); the loop drops labels itself."""
    from diffusers.models.embeddings import LabelEmbedding

    for module in model.modules():
        if isinstance(module, LabelEmbedding):
            module.dropout_prob = 0.0


def make_scheduler(config: TrainConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule,
                         prediction_type=config.prediction_type, clip_sample=True)


def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + rank)


def batch_indices(num_items: int, step: int, batch_size: int, rank: int, num_processes: int,
                  seed: int) -> torch.Tensor:
    """Indices of this process's share of global step `step`: a seeded permutation per epoch."""
    global_batch = batch_size * num_processes
    if global_batch > num_items:
        raise ValueError(f"global batch ({global_batch}) is larger than the dataset ({num_items} images)")
    per_epoch = num_items // global_batch
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    start = position * global_batch + rank * batch_size
    return order[start:start + batch_size]


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023): min(SNR, gamma) expressed for the scheduler's target,
    min(SNR, gamma) / SNR for epsilon and min(SNR, gamma) / (SNR + 1) for v-prediction, so that every
    target's loss equals min(SNR, gamma) times the squared error of the denoised image."""
    alpha_bar = scheduler.alphas_cumprod.to(timesteps.device)[timesteps].double()
    snr = alpha_bar / (1.0 - alpha_bar)
    clipped = snr.clamp(max=gamma)
    weights = clipped / snr if scheduler.config.prediction_type == "epsilon" else clipped / (snr + 1.0)
    return weights.float()


def diffusion_loss(model: nn.Module, scheduler, images: torch.Tensor, labels: torch.Tensor,
                   generator: torch.Generator, null_label: int, class_dropout: float,
                   min_snr_gamma: float | None = None) -> torch.Tensor:
    """MSE between the model's prediction and the scheduler's target for randomly noised `images`;
    with `min_snr_gamma`, each sample's MSE is weighted by `min_snr_weights`."""
    noise = torch.randn(images.shape, generator=generator).to(images.device)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (images.shape[0],),
                              generator=generator).to(images.device)
    drop = (torch.rand(labels.shape[0], generator=generator) < class_dropout).to(labels.device)
    labels = torch.where(drop, torch.full_like(labels, null_label), labels)
    noisy = scheduler.add_noise(images, noise, timesteps)
    target = noise if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(images, noise, timesteps)
    error = (predict(model, noisy, timesteps, labels).float() - target.float()).pow(2)
    if min_snr_gamma is None:
        return error.mean()
    per_sample = error.flatten(1).mean(1)
    return (per_sample * min_snr_weights(scheduler, timesteps, min_snr_gamma)).mean()


def predict(model: nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The model's output for noisy images (DiT-style call) or clips (Wan: the class as a one-hot token)."""
    if noisy.dim() == 5:
        from genaccel.pipelines.class_conditional_video import class_condition

        condition = class_condition(labels, model.config.text_dim, noisy.dtype)
        return model(noisy, timestep=timesteps, encoder_hidden_states=condition, return_dict=False)[0]
    return model(noisy, timestep=timesteps, class_labels=labels).sample[:, : noisy.shape[1]]


def _learning_rate(config: TrainConfig, step: int) -> float:
    return config.learning_rate * min(1.0, (step + 1) / max(1, config.warmup_steps))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint folder with the highest step under `output_dir/checkpoints`, or None."""
    folder = Path(output_dir) / "checkpoints"
    steps = sorted((int(p.name.split("-")[1]), p) for p in folder.glob("step-*") if (p / "state.json").exists())
    return steps[-1][1] if steps else None


def save_checkpoint(folder: Path, model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer,
                    config: TrainConfig, step: int, classes: list[str], latent_scale: float | None = None) -> None:
    """Weights (safetensors), EMA (safetensors), optimizer (torch.save) and state.json into `folder`."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder / "model")
    save_file(ema.state_dict(), folder / "ema.safetensors")
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    state = {"step": step, "config": asdict(config), "classes": classes}
    if latent_scale is not None:
        state["latent_scaling_factor"] = latent_scale
    (folder / "state.json").write_text(json.dumps(state, indent=2))


def init_weights(model: nn.Module, checkpoint: Path) -> None:
    """Start from the (non-EMA) model weights of a checkpoint, e.g. to switch prediction type, or from the
    (EMA) weights of a bundle (`python -m genaccel.train.bundle`, sha256-verified), e.g. to train a shipped
    reference model longer."""
    from safetensors.torch import load_file

    from genaccel.train.bundle import MANIFEST_NAME, load_bundled_pipeline

    weights = checkpoint / "model" / "diffusion_pytorch_model.safetensors"
    if (checkpoint / MANIFEST_NAME).exists():
        state = load_bundled_pipeline(checkpoint).transformer.state_dict()
    elif weights.exists():
        state = load_file(weights)
    else:
        raise FileNotFoundError(f"{checkpoint} is neither a checkpoint (no {weights.relative_to(checkpoint)}) nor a "
                                f"bundle (no {MANIFEST_NAME})")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"the weights of {checkpoint} do not fit the model this run builds: pass the same "
                         f"--arch / --width / --depth / --heads / --patch-size as the run that made them ({error})"
                         ) from None


def load_checkpoint(folder: Path, model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer) -> dict:
    """Restore what `save_checkpoint` wrote (optimizer state with weights_only=True); returns state.json."""
    from safetensors.torch import load_file

    state_path = folder / "state.json"
    if not state_path.exists():
        raise FileNotFoundError(f"{folder} is not a checkpoint: it has no state.json")
    weights = load_file(folder / "model" / "diffusion_pytorch_model.safetensors")
    model.load_state_dict(weights, strict=True)
    ema.load_state_dict(load_file(folder / "ema.safetensors"))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu"))
    return json.loads(state_path.read_text())


def export_pipeline(model: nn.Module, ema: EMA, config: TrainConfig, classes: list[str], folder: Path,
                    vae=None, latent_scale: float | None = None):
    """A ClassConditionalPipeline (or ClassConditionalVideoPipeline) with the EMA weights and a DDIM
    scheduler (and, for latent training, a copy of the vae whose scaling_factor is `latent_scale`),
    saved to `folder` unless it is None."""
    from diffusers import DDIMScheduler

    from genaccel.pipelines.class_conditional import ClassConditionalPipeline
    from genaccel.pipelines.class_conditional_video import ClassConditionalVideoPipeline

    ema_model = copy.deepcopy(model).eval()
    ema.copy_to(ema_model)
    scheduler = DDIMScheduler.from_config(make_scheduler(config).config)
    if config.video:
        pipe = ClassConditionalVideoPipeline(transformer=ema_model, scheduler=scheduler, class_names=classes,
                                             num_frames=config.num_frames, image_size=config.image_size)
    else:
        if vae is not None:
            vae = copy.deepcopy(vae)
            vae.register_to_config(scaling_factor=latent_scale)
        pipe = ClassConditionalPipeline(transformer=ema_model, scheduler=scheduler, class_names=classes, vae=vae)
    pipe.set_progress_bar_config(disable=True)
    if folder is not None:
        pipe.save_pretrained(folder)
        (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    return pipe


def pipeline_from_checkpoint(folder: str | Path):
    """The ClassConditionalPipeline (EMA weights, DDIM scheduler) of a checkpoint written by `train`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    state_path = folder / "state.json"
    if not state_path.exists():
        raise FileNotFoundError(f"{folder} is not a checkpoint: it has no state.json")
    state = json.loads(state_path.read_text())
    config = TrainConfig.from_dict(state["config"])
    vae = load_vae(config) if config.vae else None
    model = build_model(config, len(state["classes"]), vae)
    ema = EMA(model, config.ema_decay)
    ema.load_state_dict(load_file(folder / "ema.safetensors"))
    return export_pipeline(model, ema, config, state["classes"], None, vae, state.get("latent_scaling_factor"))


def save_sample_grid(pipe, config: TrainConfig, path: Path, per_class: int = 4) -> None:
    """A grid PNG from a fixed seed: one column per class and `per_class` rows (images), or one row
    per class of 8 frames spread over its clip (videos)."""
    from PIL import Image

    from genaccel.pipelines.class_conditional import image_grid

    num_classes = pipe.num_classes
    generator = torch.Generator().manual_seed(config.seed)
    if config.video:
        clips = pipe(list(range(num_classes)), num_inference_steps=config.sample_steps, generator=generator,
                     guidance_scale=config.guidance_scale, output_type="pil").frames
        columns = min(8, config.num_frames)
        picks = [round(k * (config.num_frames - 1) / max(1, columns - 1)) for k in range(columns)]
        images: list[Image.Image] = [clip[k] for clip in clips for k in picks]
        path.parent.mkdir(parents=True, exist_ok=True)
        image_grid(images, columns=columns).save(path)
        return
    labels = [c for _ in range(per_class) for c in range(num_classes)]
    images = pipe(labels, num_inference_steps=config.sample_steps, generator=generator,
                  guidance_scale=config.guidance_scale).images
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, columns=num_classes).save(path)


def train(config: TrainConfig, resume: str | None = None) -> Path:
    """Run (or resume) training; returns the folder of the exported final pipeline."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    config.validate()
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    images, labels, classes = load_training_data(config)
    num_classes = len(classes)
    vae = latent_scale = mirrored = None
    if config.vae:
        vae = load_vae(config)
        latents = encode_latents(vae, images)
        latent_scale = float(1.0 / latents.std())
        mirrored = encode_latents(vae, images.flip(-1)) * latent_scale if config.hflip else None
        images = latents * latent_scale
    torch.manual_seed(config.seed)  # the initial weights are a function of the seed
    model = build_model(config, num_classes, vae)
    _disable_internal_label_dropout(model)
    if config.gradient_checkpointing:
        if not getattr(model, "_supports_gradient_checkpointing", False):
            raise ValueError(f"{type(model).__name__} does not support gradient checkpointing")
        model.enable_gradient_checkpointing()
    if config.init_from and resume is None:
        init_weights(model, Path(config.init_from))
    ema = EMA(model, config.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    step = 0
    if resume is not None:
        checkpoint = latest_checkpoint(output_dir) if resume == "latest" else Path(resume)
        if checkpoint is None:
            raise FileNotFoundError(f"no checkpoint to resume under {output_dir / 'checkpoints'}")
        step = load_checkpoint(checkpoint, model, ema, optimizer)["step"]
    scheduler = make_scheduler(config)
    model, optimizer = accelerator.prepare(model, optimizer)
    images = images.to(accelerator.device)
    mirrored = mirrored.to(accelerator.device) if mirrored is not None else None
    labels = labels.to(accelerator.device)
    rank, world = accelerator.process_index, accelerator.num_processes
    log_path = output_dir / "log.jsonl"
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    progress = tqdm(total=config.max_steps, initial=step, desc="train", disable=not accelerator.is_main_process)
    model.train()
    started = time.monotonic()
    while step < config.max_steps:
        if config.max_minutes > 0:
            out_of_time = torch.tensor(float(time.monotonic() - started > 60 * config.max_minutes),
                                       device=accelerator.device)
            if accelerator.reduce(out_of_time, reduction="sum").item() > 0:
                break
        generator = _step_generator(config.seed, step, rank)
        index = batch_indices(len(images), step, config.batch_size, rank, world, config.seed).to(images.device)
        batch = images[index] if vae is not None else images[index].float() / 127.5 - 1.0
        if config.hflip:
            flip = (torch.rand(batch.shape[0], generator=generator) < 0.5).to(batch.device)
            flipped = mirrored[index] if vae is not None else batch.flip(-1)
            batch = torch.where(flip.view(-1, *[1] * (batch.dim() - 1)), flipped, batch)
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(config, step)
        with accelerator.autocast():
            loss = diffusion_loss(model, scheduler, batch, labels[index], generator, num_classes, config.class_dropout,
                                  config.min_snr_gamma if config.loss_weighting == "min-snr" else None)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower the learning rate")
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(accelerator.unwrap_model(model))
        step += 1
        progress.update(1)
        if step % config.log_every == 0 or step == config.max_steps:
            mean_loss = accelerator.reduce(loss.detach(), reduction="mean").item()
            progress.set_postfix(loss=f"{mean_loss:.4f}")
            if accelerator.is_main_process:
                with log_path.open("a") as handle:
                    handle.write(json.dumps({"step": step, "loss": mean_loss, "lr": _learning_rate(config, step - 1)}) + "\n")
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                save_checkpoint(output_dir / "checkpoints" / f"step-{step}", unwrapped, ema, optimizer,
                                config, step, classes, latent_scale)
            if config.sample_every and step % config.sample_every == 0:
                pipe = export_pipeline(unwrapped, ema, config, classes, None, vae, latent_scale)
                save_sample_grid(pipe, config, output_dir / "samples" / f"step-{step:07d}.png")
                model.train()
    progress.close()
    accelerator.wait_for_everyone()
    final = output_dir / "final"
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        save_checkpoint(output_dir / "checkpoints" / f"step-{step}", unwrapped, ema, optimizer, config, step, classes,
                        latent_scale)
        pipe = export_pipeline(unwrapped, ema, config, classes, final, vae, latent_scale)
        save_sample_grid(pipe, config, output_dir / "samples" / f"step-{step:07d}.png")
    accelerator.wait_for_everyone()
    return final
