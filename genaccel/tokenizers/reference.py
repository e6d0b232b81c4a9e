"""Reference tokenizers trained by genaccel on the emoji set and shipped in the package (sha256-verified).

`load_reference_tokenizer()` is the multi-scale tokenizer, `load_reference_tokenizer("single-scale")`
its single-scale twin, trained with one recipe for the same number of steps (each folder's
manifest.json records how). `bundle_tokenizer` writes such a folder from any trained tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genaccel.train.bundle import MANIFEST_NAME, WEIGHTS_NAME, sha256_of_bytes

REFERENCE_ROOT = Path(__file__).parent / "reference"
KINDS = {"multi-scale": REFERENCE_ROOT / "multi_scale", "single-scale": REFERENCE_ROOT / "single_scale"}


def bundle_tokenizer(model, out_dir: str | Path, dtype: torch.dtype = torch.float16, info: dict | None = None) -> Path:
    """config.json + weights (cast to `dtype`) + manifest.json (their sha256 and `info`) in `out_dir`."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()},
              out_dir / WEIGHTS_NAME)
    model.save_config(out_dir)
    manifest = {"class": type(model).__name__, "weights": WEIGHTS_NAME,
                "weights_dtype": str(dtype).removeprefix("torch."),
                "sha256": sha256_of_bytes((out_dir / WEIGHTS_NAME).read_bytes()), "info": info or {}}
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return out_dir


def load_bundled_tokenizer(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The MultiScaleTokenizer in `folder`, after checking its weights' sha256 against the manifest."""
    from safetensors.torch import load as load_safetensors

    from genaccel.tokenizers.multiscale import MultiScaleTokenizer

    folder = Path(folder)
    if not (folder / MANIFEST_NAME).exists():
        raise FileNotFoundError(f"{folder} has no {MANIFEST_NAME}: not a bundled tokenizer")
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    if manifest.get("class") != MultiScaleTokenizer.__name__:
        raise ValueError(f"{folder} holds a {manifest.get('class')!r}, not a {MultiScaleTokenizer.__name__}")
    data = (folder / manifest["weights"]).read_bytes()
    digest = sha256_of_bytes(data)
    if digest != manifest["sha256"]:
        raise ValueError(f"sha256 of {folder / manifest['weights']} is {digest} but {MANIFEST_NAME} records "
                         f"{manifest['sha256']}: the weights are corrupt or were replaced")
    model = MultiScaleTokenizer.from_config(MultiScaleTokenizer.load_config(folder))
    model.load_state_dict({k: v.to(dtype) for k, v in load_safetensors(data).items()}, strict=True)
    if dtype != next(model.parameters()).dtype:
        model.to(dtype=dtype)
    return model.to(device).eval()


def load_reference_tokenizer(kind: str = "multi-scale", *, device: str | torch.device = "cpu",
                             dtype: torch.dtype = torch.float32):
    """The shipped tokenizer of `kind` ('multi-scale' or 'single-scale')."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    return load_bundled_tokenizer(KINDS[kind], device=device, dtype=dtype)


def load_tokenizer(source: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """A MultiScaleTokenizer from "reference:multi-scale" / "reference:single-scale" (the shipped ones), a
    bundle (manifest.json, sha256 checked), a `train-tokenizer` checkpoint (EMA weights) or a saved folder."""
    from genaccel.tokenizers.multiscale import MultiScaleTokenizer
    from genaccel.train.tokenizer import tokenizer_from_checkpoint

    if str(source).startswith("reference:"):
        return load_reference_tokenizer(str(source).removeprefix("reference:"), device=device, dtype=dtype)
    path = Path(source)
    if (path / MANIFEST_NAME).exists():
        return load_bundled_tokenizer(path, device=device, dtype=dtype)
    if (path / "state.json").exists():
        model = tokenizer_from_checkpoint(path)
    elif (path / "config.json").exists():
        model = MultiScaleTokenizer.from_pretrained(path)
    else:
        raise FileNotFoundError(f"{path} is neither a tokenizer bundle ({MANIFEST_NAME}), a saved tokenizer "
                                f"(config.json) nor a checkpoint (state.json); or give reference:multi-scale / "
                                "reference:single-scale")
    return model.to(device=device, dtype=dtype).eval()


def main(argv: list[str] | None = None) -> None:
    """`python -m genaccel.tokenizers.reference CHECKPOINT OUT_DIR [--fp32]`: bundle a checkpoint's EMA tokenizer."""
    import argparse

    from genaccel.train.tokenizer import tokenizer_from_checkpoint

    parser = argparse.ArgumentParser(prog="python -m genaccel.tokenizers.reference", description=main.__doc__)
    parser.add_argument("checkpoint", help="a checkpoints/step-N folder written by `genaccel train-tokenizer`")
    parser.add_argument("out_dir")
    parser.add_argument("--fp32", action="store_true", help="keep float32 weights (default: float16)")
    args = parser.parse_args(argv)
    state = json.loads((Path(args.checkpoint) / "state.json").read_text())
    info = {"trained_with": "genaccel train-tokenizer", "steps": state["step"], "config": state["config"]}
    out = bundle_tokenizer(tokenizer_from_checkpoint(args.checkpoint), args.out_dir,
                           torch.float32 if args.fp32 else torch.float16, info)
    print(json.dumps({"bundle": str(out), "sha256": json.loads((out / MANIFEST_NAME).read_text())["sha256"]}))


if __name__ == "__main__":
    main()
