"""Bundle a trained class-conditional pipeline as a small, hash-verified folder (how the reference model ships).

The folder holds the transformer's config.json and weights (diffusion_pytorch_model.safetensors,
optionally cast to float16 to halve the size), the scheduler's scheduler_config.json and a
manifest.json with the weights' sha256, the class names and free-form training information.
`load_bundled_pipeline` refuses weights whose sha256 differs from the manifest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
MANIFEST_NAME = "manifest.json"


def sha256_of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundle_pipeline(pipe, out_dir: str | Path, dtype: torch.dtype = torch.float16,
                    info: dict | None = None) -> Path:
    """Write `pipe` (a ClassConditionalPipeline or ClassConditionalVideoPipeline) into `out_dir` as
    config + weights + manifest."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    transformer = pipe.transformer
    state = {name: value.detach().to("cpu", dtype).contiguous() for name, value in transformer.state_dict().items()}
    save_file(state, out_dir / WEIGHTS_NAME)
    transformer.save_config(out_dir)
    pipe.scheduler.save_config(out_dir)
    manifest = {
        "transformer_class": type(transformer).__name__,
        "scheduler_class": type(pipe.scheduler).__name__,
        "weights": WEIGHTS_NAME,
        "weights_dtype": str(dtype).removeprefix("torch."),
        "sha256": sha256_of_bytes((out_dir / WEIGHTS_NAME).read_bytes()),
        "classes": list(pipe.class_names) if pipe.class_names is not None else None,
        "info": info or {},
    }
    if "num_frames" in pipe.config:  # a video pipeline: what it samples by default
        manifest["video"] = {"num_frames": pipe.config.num_frames, "image_size": pipe.config.image_size}
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return out_dir


def load_bundled_pipeline(folder: str | Path, device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float32):
    """The ClassConditionalPipeline (or ClassConditionalVideoPipeline) in `folder`, after checking its
    weights' sha256 against the manifest."""
    import diffusers
    from safetensors.torch import load as load_safetensors

    from genaccel.pipelines.class_conditional import ClassConditionalPipeline

    folder = Path(folder)
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.exists():
        raise FileNotFoundError(f"{folder} has no {MANIFEST_NAME}: not a bundled pipeline")
    manifest = json.loads(manifest_path.read_text())
    data = (folder / manifest["weights"]).read_bytes()
    digest = sha256_of_bytes(data)
    if digest != manifest["sha256"]:
        raise ValueError(f"sha256 of {folder / manifest['weights']} is {digest} but {MANIFEST_NAME} "
                         f"records {manifest['sha256']}: the weights are corrupt or were replaced")
    from genaccel.models import LaMambaDiTModel, PTDiTTransformer2DModel

    allowed = {"DiTTransformer2DModel": diffusers.DiTTransformer2DModel,
               "PTDiTTransformer2DModel": PTDiTTransformer2DModel, "LaMambaDiTModel": LaMambaDiTModel,
               "WanTransformer3DModel": diffusers.WanTransformer3DModel}
    schedulers = {"DDIMScheduler": diffusers.DDIMScheduler, "DDPMScheduler": diffusers.DDPMScheduler}
    if manifest["transformer_class"] not in allowed or manifest["scheduler_class"] not in schedulers:
        raise ValueError(f"unsupported bundled classes {manifest['transformer_class']}/{manifest['scheduler_class']};"
                         f" supported: {sorted(allowed)} / {sorted(schedulers)}")
    transformer_class = allowed[manifest["transformer_class"]]
    transformer = transformer_class.from_config(transformer_class.load_config(folder))
    state = {name: value.to(dtype) for name, value in load_safetensors(data).items()}
    transformer.load_state_dict(state, strict=True)
    if dtype != next(transformer.parameters()).dtype:
        transformer.to(dtype=dtype)
    transformer.to(device).eval()
    scheduler_class = schedulers[manifest["scheduler_class"]]
    scheduler = scheduler_class.from_config(scheduler_class.load_config(folder))
    if manifest["transformer_class"] == "WanTransformer3DModel":
        from genaccel.pipelines.class_conditional_video import ClassConditionalVideoPipeline

        video = manifest.get("video", {})
        pipe = ClassConditionalVideoPipeline(transformer=transformer, scheduler=scheduler,
                                             class_names=manifest["classes"], **video)
    else:
        pipe = ClassConditionalPipeline(transformer=transformer, scheduler=scheduler, class_names=manifest["classes"])
    return pipe.to(device)


def main(argv: list[str] | None = None) -> None:
    """`python -m genaccel.train.bundle CHECKPOINT OUT_DIR [--fp32]`: bundle a training checkpoint's EMA weights."""
    import argparse

    from genaccel.train.diffusion import pipeline_from_checkpoint

    parser = argparse.ArgumentParser(prog="python -m genaccel.train.bundle", description=main.__doc__)
    parser.add_argument("checkpoint", help="a checkpoints/step-N folder written by `genaccel train`")
    parser.add_argument("out_dir")
    parser.add_argument("--fp32", action="store_true", help="keep float32 weights (default: float16)")
    parser.add_argument("--scheduler", choices=("ddim", "ddpm"), default="ddim",
                        help="sampler shipped with the model: ddim (deterministic) or ddpm (ancestral)")
    args = parser.parse_args(argv)
    state = json.loads((Path(args.checkpoint) / "state.json").read_text())
    pipe = pipeline_from_checkpoint(args.checkpoint)
    if args.scheduler == "ddpm":
        from diffusers import DDPMScheduler

        pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    info = {"trained_with": "genaccel train", "steps": state["step"], "config": state["config"]}
    out = bundle_pipeline(pipe, args.out_dir, torch.float32 if args.fp32 else torch.float16, info)
    print(json.dumps({"bundle": str(out), "sha256": json.loads((out / MANIFEST_NAME).read_text())["sha256"]}))


if __name__ == "__main__":
    main()
