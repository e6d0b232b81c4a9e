"""One denoising step of published diffusers transformers: dense vs genaccel proxy / window attention.

Each transformer is built from its published `transformer/config.json` (the values are written in
`MODELS` below; random weights, seed 0, nothing is downloaded) and one denoising step of it is timed
at its published resolution: CFG batch 2 (both guidance branches in one call), bf16 on CUDA, fp32 on
CPU. Settings: dense, proxy 8x8, proxy 4x4 and window 8x8 with alternating shift (windows count
tokens of the token grid; video windows cover one frame: 1x8x8, 1x4x4). Writes the
`transformer-step` section of BENCHMARKS.md with `--write`.

    python benchmarks/transformer_step.py                                  # CUDA: full depth, published grids
    python benchmarks/transformer_step.py --device cpu --write BENCHMARKS.md   # CPU: reduced (see below)
    python benchmarks/transformer_step.py --models pixart-sigma-2048,flux1-dev --runs 5

Fairness: all settings run in one process on the same model and inputs. A setting is applied with
`genaccel.apply`, timed and removed with `genaccel.remove`; first every setting gets its warm-up calls,
then each of `--runs` rounds times one call of every setting in turn (the order rotated by one each
round), so load that drifts over time hits every setting alike. Median of the rounds; CUDA events on
GPU (`genaccel.eval.timing.time_callable`). Peak memory: `torch.cuda.max_memory_allocated` over the
timed calls (weights included); not measured on CPU.

On CPU (2 cores) full-size steps take minutes each, so `--device cpu` defaults to a reduced run:
`--depth 1` (one block per block stack) and `--scale 4` (token grids divided by 4 along every axis,
frames included); the table says so in its header and in its blocks / token grid columns. On CUDA the
defaults are the published depth and grids (`--depth 0 --scale 1`); Wan 2.1-14B at 720p gets fewer runs
(`WAN_14B_RUNS`) so the whole script fits in about 8 minutes on an H200, and a model whose weights do
not fit in free GPU memory is skipped with a note (an out-of-memory step is recorded as such).

The op-level table (attention alone, 1k-64k tokens) is `benchmarks/attention.py`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import genaccel  # noqa: E402
from genaccel.bench.attention import device_description  # noqa: E402
from genaccel.bench.markdown import git_commit, markdown_table, update_section  # noqa: E402
from genaccel.eval.timing import time_callable  # noqa: E402

SECTION = "transformer-step"
BATCH = 2  # classifier-free guidance: conditional and unconditional branch in one call
CPU_DEPTH, CPU_SCALE, CPU_RUNS = 1, 4, 2
CUDA_RUNS, WAN_14B_RUNS = 5, 3
SEED = 0

Grid = tuple[int, ...]
InputBuilder = Callable[[torch.nn.Module, Grid, int, torch.device, torch.dtype], dict[str, Any]]


@dataclass(frozen=True)
class ModelSpec:
    """A published transformer: its config, its block stacks and its token grid at the published size."""

    name: str  # the --models key
    title: str
    class_name: str  # the diffusers class
    config: dict[str, Any]  # published transformer/config.json values (those that differ from nothing)
    depth_keys: tuple[str, ...]  # config keys that count blocks (one per block stack)
    grid: Grid  # token grid (after patchify) at the published resolution
    text_tokens: int
    joint_text: bool  # text tokens take part in the self-attention (joint attention), else cross-attention
    inputs: InputBuilder
    runs: int | None = None  # default runs on CUDA when not the general default

    @property
    def video(self) -> bool:
        return len(self.grid) == 3


def _randn(*shape: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(*shape, device=device, dtype=dtype)


def pixart_inputs(model: torch.nn.Module, grid: Grid, batch: int, device: torch.device,
                  dtype: torch.dtype) -> dict[str, Any]:
    """PixArt-Sigma: 4-channel latents, 300 T5 tokens (4096-d), integer timesteps, no size conditioning."""
    p, (h, w) = model.config.patch_size, grid
    return dict(hidden_states=_randn(batch, model.config.in_channels, h * p, w * p, device=device, dtype=dtype),
                encoder_hidden_states=_randn(batch, 300, 4096, device=device, dtype=dtype),
                timestep=torch.full((batch,), 500, device=device, dtype=torch.long),
                added_cond_kwargs={"resolution": None, "aspect_ratio": None})


def flux_inputs(model: torch.nn.Module, grid: Grid, batch: int, device: torch.device,
                dtype: torch.dtype) -> dict[str, Any]:
    """Flux.1: packed latents (2x2 patches as 64 channels), 512 T5 tokens, pooled CLIP, ids as the pipeline
    builds them (row-major image grid, zero text ids), timestep / 1000 and the distilled guidance 3.5."""
    h, w = grid
    image_ids = torch.zeros(h, w, 3, device=device, dtype=dtype)  # (0, row, column): FluxPipeline's layout
    image_ids[..., 1] = torch.arange(h, device=device, dtype=dtype)[:, None]
    image_ids[..., 2] = torch.arange(w, device=device, dtype=dtype)[None, :]
    return dict(hidden_states=_randn(batch, h * w, model.config.in_channels, device=device, dtype=dtype),
                encoder_hidden_states=_randn(batch, 512, 4096, device=device, dtype=dtype),
                pooled_projections=_randn(batch, 768, device=device, dtype=dtype),
                timestep=torch.full((batch,), 0.5, device=device, dtype=dtype),
                img_ids=image_ids.reshape(h * w, 3),
                txt_ids=torch.zeros(512, 3, device=device, dtype=dtype),
                guidance=torch.full((batch,), 3.5, device=device, dtype=torch.float32))


def sd3_inputs(model: torch.nn.Module, grid: Grid, batch: int, device: torch.device,
               dtype: torch.dtype) -> dict[str, Any]:
    """SD3.5: 16-channel latents, 77 CLIP + 256 T5 tokens (4096-d), pooled CLIP-L + CLIP-G (2048-d)."""
    p, (h, w) = model.config.patch_size, grid
    return dict(hidden_states=_randn(batch, model.config.in_channels, h * p, w * p, device=device, dtype=dtype),
                encoder_hidden_states=_randn(batch, 77 + 256, 4096, device=device, dtype=dtype),
                pooled_projections=_randn(batch, 2048, device=device, dtype=dtype),
                timestep=torch.full((batch,), 500.0, device=device, dtype=dtype))


def cogvideox_rotary(model: torch.nn.Module, grid: Grid, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The 3-D RoPE of CogVideoX 1.0, as `CogVideoXPipeline._prepare_rotary_positional_embeddings` computes it."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    frames, h, w = grid
    config = model.config
    crops = get_resize_crop_region_for_grid((h, w), config.sample_width // config.patch_size,
                                            config.sample_height // config.patch_size)
    return get_3d_rotary_pos_embed(embed_dim=config.attention_head_dim, crops_coords=crops, grid_size=(h, w),
                                   temporal_size=frames, device=device)


def cogvideox_inputs(model: torch.nn.Module, grid: Grid, batch: int, device: torch.device,
                     dtype: torch.dtype) -> dict[str, Any]:
    """CogVideoX-5B: (B, frames, 16, H, W) latents, 226 T5 tokens, integer timesteps, the pipeline's RoPE."""
    p, (frames, h, w) = model.config.patch_size, grid
    return dict(hidden_states=_randn(batch, frames, model.config.in_channels, h * p, w * p, device=device,
                                     dtype=dtype),
                encoder_hidden_states=_randn(batch, 226, 4096, device=device, dtype=dtype),
                timestep=torch.full((batch,), 500, device=device, dtype=torch.long),
                image_rotary_emb=cogvideox_rotary(model, grid, device))


def wan_inputs(model: torch.nn.Module, grid: Grid, batch: int, device: torch.device,
               dtype: torch.dtype) -> dict[str, Any]:
    """Wan 2.1: (B, 16, frames, H, W) latents, 512 umT5 tokens (4096-d), float timesteps."""
    pt, ph, pw = model.config.patch_size
    frames, h, w = grid
    return dict(hidden_states=_randn(batch, model.config.in_channels, frames * pt, h * ph, w * pw, device=device,
                                     dtype=dtype),
                timestep=torch.full((batch,), 500.0, device=device),
                encoder_hidden_states=_randn(batch, 512, 4096, device=device, dtype=dtype))


_WAN = dict(patch_size=(1, 2, 2), attention_head_dim=128, in_channels=16, out_channels=16, text_dim=4096,
            freq_dim=256, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None,
            added_kv_proj_dim=None, rope_max_seq_len=1024)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in [
    # PixArt-alpha/PixArt-Sigma-XL-2-2048-MS; 2048 px -> 256 x 256 latents -> 128 x 128 tokens
    ModelSpec("pixart-sigma-2048", "PixArt-Sigma 2048 px", "PixArtTransformer2DModel",
              dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
                   dropout=0.0, norm_num_groups=32, cross_attention_dim=1152, attention_bias=True, sample_size=256,
                   patch_size=2, activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                   upcast_attention=False, norm_type="ada_norm_single", norm_elementwise_affine=False,
                   norm_eps=1e-6, interpolation_scale=None, use_additional_conditions=False,
                   caption_channels=4096, attention_type="default"),
              ("num_layers",), (128, 128), 300, False, pixart_inputs),
    # black-forest-labs/FLUX.1-dev; 1024 px -> 128 x 128 latents -> 64 x 64 packed tokens
    ModelSpec("flux1-dev", "Flux.1-dev 1024 px", "FluxTransformer2DModel",
              dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                   num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                   axes_dims_rope=(16, 56, 56)),
              ("num_layers", "num_single_layers"), (64, 64), 512, True, flux_inputs),
    # stabilityai/stable-diffusion-3.5-large; 1024 px -> 128 x 128 latents -> 64 x 64 tokens
    ModelSpec("sd3.5-large", "SD3.5-large 1024 px", "SD3Transformer2DModel",
              dict(sample_size=128, patch_size=2, in_channels=16, num_layers=38, attention_head_dim=64,
                   num_attention_heads=38, joint_attention_dim=4096, caption_projection_dim=2432,
                   pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192, dual_attention_layers=(),
                   qk_norm="rms_norm"),
              ("num_layers",), (64, 64), 77 + 256, True, sd3_inputs),
    # THUDM/CogVideoX-5b; 49 frames 480 x 720 -> 13 x 60 x 90 latents -> 13 x 30 x 45 tokens
    ModelSpec("cogvideox-5b", "CogVideoX-5B 49 x 480 x 720", "CogVideoXTransformer3DModel",
              dict(num_attention_heads=48, attention_head_dim=64, in_channels=16, out_channels=16,
                   flip_sin_to_cos=True, freq_shift=0, time_embed_dim=512, text_embed_dim=4096, num_layers=42,
                   dropout=0.0, attention_bias=True, sample_width=90, sample_height=60, sample_frames=49,
                   patch_size=2, temporal_compression_ratio=4, max_text_seq_length=226,
                   activation_fn="gelu-approximate", timestep_activation_fn="silu", norm_elementwise_affine=True,
                   norm_eps=1e-5, spatial_interpolation_scale=1.875, temporal_interpolation_scale=1.0,
                   use_rotary_positional_embeddings=True, use_learned_positional_embeddings=False),
              ("num_layers",), (13, 30, 45), 226, True, cogvideox_inputs),
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers; 81 frames 480 x 832 -> 21 x 60 x 104 latents -> 21 x 30 x 52 tokens
    ModelSpec("wan2.1-1.3b", "Wan 2.1-1.3B 81 x 480 x 832", "WanTransformer3DModel",
              dict(_WAN, num_attention_heads=12, ffn_dim=8960, num_layers=30),
              ("num_layers",), (21, 30, 52), 512, False, wan_inputs),
    # Wan-AI/Wan2.1-T2V-14B-Diffusers; 81 frames 720 x 1280 -> 21 x 90 x 160 latents -> 21 x 45 x 80 tokens
    ModelSpec("wan2.1-14b", "Wan 2.1-14B 81 x 720 x 1280", "WanTransformer3DModel",
              dict(_WAN, num_attention_heads=40, ffn_dim=13824, num_layers=40),
              ("num_layers",), (21, 45, 80), 512, False, wan_inputs, runs=WAN_14B_RUNS),
]}


def settings(video: bool) -> dict[str, genaccel.config.SparseAttentionConfig | None]:
    """The attention settings compared; windows count tokens of the token grid (video: one frame)."""
    window = (lambda h, w: (1, h, w)) if video else (lambda h, w: (h, w))
    text = lambda h, w: "x".join(map(str, window(h, w)))  # noqa: E731
    return {"dense": None,
            f"proxy {text(8, 8)}": genaccel.ProxyAttentionConfig(window=window(8, 8)),
            f"proxy {text(4, 4)}": genaccel.ProxyAttentionConfig(window=window(4, 4)),
            f"window {text(8, 8)}, shift alternate": genaccel.WindowAttentionConfig(window=window(8, 8),
                                                                                     shift="alternate")}


def scaled_grid(grid: Grid, scale: int) -> Grid:
    """The token grid divided by `scale` along every axis (rounded up, at least 1)."""
    return tuple(max(1, math.ceil(g / scale)) for g in grid)


def model_config(spec: ModelSpec, depth: int) -> dict[str, Any]:
    """The published config, with every block stack cut to `depth` blocks (0: the published depth)."""
    if depth <= 0:
        return dict(spec.config)
    return spec.config | {key: min(depth, spec.config[key]) for key in spec.depth_keys}


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def parameter_count(spec: ModelSpec, depth: int) -> int:
    """Parameters of the transformer, counted on the meta device (no memory, no init)."""
    import diffusers

    with torch.device("meta"):
        model = getattr(diffusers, spec.class_name)(**model_config(spec, depth))
    return sum(p.numel() for p in model.parameters())


def build(spec: ModelSpec, depth: int, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The transformer with random weights (seeded), created directly on `device` in `dtype`."""
    import diffusers

    torch.manual_seed(SEED)
    with torch.device(device), _default_dtype(dtype):
        model = getattr(diffusers, spec.class_name)(**model_config(spec, depth))
    # as `from_pretrained(torch_dtype=dtype)` loads it: the class's `_keep_in_fp32_modules` (Wan's norms,
    # RoPE and time embedder) stay float32
    keep = tuple(model._keep_in_fp32_modules or ())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if any(part in name for part in keep):  # diffusers' own rule: a substring of the name
            tensor.data = tensor.data.float()
    return model.eval().requires_grad_(False)


@contextlib.contextmanager
def attention(model: torch.nn.Module, config: genaccel.config.SparseAttentionConfig | None) -> Iterator[None]:
    """`config` applied to the transformer inside the block (dense when None), removed after it."""
    if config is None:
        yield
        return
    genaccel.apply(model, config)
    try:
        yield
    finally:
        genaccel.remove(model)


def _out_of_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def time_settings(model: torch.nn.Module, inputs: dict[str, Any], configs: dict[str, Any], *,
                  device: torch.device, warmup: int, runs: int) -> dict[str, dict[str, Any]]:
    """Median seconds per call and peak memory of every setting, timed in interleaved rounds.

    Returns {setting: {"median_s", "runs_s", "peak_bytes", "error"}}; `error` is "out of memory" for a
    setting that did not fit (it is left out of later rounds)."""
    results = {name: {"median_s": None, "runs_s": [], "peak_bytes": None, "error": None} for name in configs}

    def call() -> None:
        model(**inputs, return_dict=False)

    def attempt(name: str, fn: Callable[[], None]) -> None:
        try:
            with attention(model, configs[name]):
                fn()
        except torch.OutOfMemoryError:
            results[name]["error"] = "out of memory"
            _out_of_memory(device)

    with torch.no_grad():
        for name in configs:
            attempt(name, lambda: [call() for _ in range(warmup)])
        names = list(configs)
        for round_index in range(runs):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                if results[name]["error"] is None:
                    def timed(name: str = name) -> None:
                        timing = time_callable(call, warmup=0, runs=1, device=device)
                        results[name]["runs_s"].append(timing.median_s)
                        if timing.peak_memory_bytes is not None:
                            results[name]["peak_bytes"] = max(results[name]["peak_bytes"] or 0,
                                                              timing.peak_memory_bytes)
                    attempt(name, timed)
    for result in results.values():
        if result["error"] is None:
            result["median_s"] = statistics.median(result["runs_s"])
    return results


def benchmark_model(spec: ModelSpec, *, depth: int, scale: int, device: torch.device, dtype: torch.dtype,
                    warmup: int, runs: int) -> list[dict[str, Any]]:
    """Rows of the table for one model: one per setting (or one saying why the model was skipped)."""
    config = model_config(spec, depth)
    blocks = " + ".join(f"{config[k]} of {spec.config[k]}" for k in spec.depth_keys)
    grid = scaled_grid(spec.grid, scale)
    base = dict(model=spec.title, blocks=blocks, grid="x".join(map(str, grid)), image_tokens=math.prod(grid),
                text_tokens=spec.text_tokens, joint_text=spec.joint_text, runs=runs)
    if device.type == "cuda":
        weights = parameter_count(spec, depth) * torch.finfo(dtype).bits // 8
        free, _ = torch.cuda.mem_get_info(device)
        if weights * 1.1 + 2 * 2**30 > free:
            return [dict(base, setting="-", skipped=f"not run: weights need {weights / 2**30:.1f} GiB, "
                                                    f"{free / 2**30:.1f} GiB free")]
    model = None
    try:
        model = build(spec, depth, device, dtype)
        torch.manual_seed(SEED)
        inputs = spec.inputs(model, grid, BATCH, device, dtype)
    except torch.OutOfMemoryError:
        model = None
        _out_of_memory(device)
        return [dict(base, setting="-", skipped="out of memory (building the model)")]
    results = time_settings(model, inputs, settings(spec.video), device=device, warmup=warmup, runs=runs)
    del model, inputs
    _out_of_memory(device)
    dense_s = results["dense"]["median_s"]
    rows = []
    for name, result in results.items():
        speedup = None if result["median_s"] is None or dense_s is None else dense_s / result["median_s"]
        rows.append(dict(base, setting=name, median_s=result["median_s"], speedup=speedup,
                         peak_bytes=result["peak_bytes"], error=result["error"]))
    return rows


def format_row(row: dict[str, Any]) -> list[str]:
    text = f"+ {row['text_tokens']} text" + ("" if row["joint_text"] else " (cross-attn)")
    head = [row["model"], row["blocks"], row["grid"], f"{row['image_tokens']:,} {text}", row["setting"]]
    if "skipped" in row:
        return head + [row["skipped"], "-", "-", "-"]
    if row["error"] is not None:
        return head + [row["error"], "-", "-", str(row["runs"])]
    speedup = "-" if row["speedup"] is None else f"{row['speedup']:.2f}x"
    peak = "n/a" if row["peak_bytes"] is None else f"{row['peak_bytes'] / 2**30:.1f}"
    return head + [f"{1e3 * row['median_s']:.1f}", speedup, peak, str(row["runs"])]


HEADERS = ["model", "blocks", "token grid", "tokens", "setting", "median ms / step", "speed-up vs dense",
           "peak memory (GiB)", "runs"]


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="models: " + ", ".join(MODELS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated list (default: all)")
    parser.add_argument("--depth", type=int, default=None,
                        help=f"blocks per block stack, 0 = published (default: 0 on CUDA, {CPU_DEPTH} on CPU)")
    parser.add_argument("--scale", type=int, default=None,
                        help=f"divide every token-grid axis by this (default: 1 on CUDA, {CPU_SCALE} on CPU)")
    parser.add_argument("--runs", type=int, default=None,
                        help=f"timed rounds, median reported (default: {CUDA_RUNS} on CUDA, {WAN_14B_RUNS} for "
                             f"Wan 2.1-14B; {CPU_RUNS} on CPU)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up calls per setting")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--write", default=None, metavar="BENCHMARKS.md",
                        help=f"write the table into this file's `{SECTION}` section")
    args = parser.parse_args(argv)
    for option, minimum in (("depth", 0), ("scale", 1), ("runs", 1), ("warmup", 0), ("threads", 1)):
        value = getattr(args, option)
        if value is not None and value < minimum:
            parser.error(f"--{option} must be >= {minimum}, got {value}")
    args.model_names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in args.model_names if name not in MODELS]
    if unknown or not args.model_names:
        parser.error(f"--models: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(MODELS)}")
    try:
        args.device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device!r}: {error}")
    if args.device.type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda, got {args.device}")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch build or machine has no CUDA; use --device cpu")
    return args, parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from command-line arguments; print the table and optionally write it."""
    args, _ = parse_args(argv)
    commit = git_commit()  # the code that is measured, whatever is committed while it runs
    start_s = time.perf_counter()
    device, cpu = args.device, args.device.type == "cpu"
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dtype = torch.float32 if cpu else torch.bfloat16
    depth = args.depth if args.depth is not None else (CPU_DEPTH if cpu else 0)
    scale = args.scale if args.scale is not None else (CPU_SCALE if cpu else 1)
    rows = []
    for name in args.model_names:
        spec = MODELS[name]
        runs = args.runs or (CPU_RUNS if cpu else spec.runs or CUDA_RUNS)
        print(f"timing {spec.title} ...", file=sys.stderr, flush=True)
        model_start = time.perf_counter()
        rows += benchmark_model(spec, depth=depth, scale=scale, device=device, dtype=dtype, warmup=args.warmup,
                                runs=runs)
        print(f"  {time.perf_counter() - model_start:.0f} s", file=sys.stderr, flush=True)
    wall_s = time.perf_counter() - start_s

    import diffusers

    command = "python benchmarks/transformer_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
    reduced = []
    if depth > 0:
        reduced.append(f"{depth} block(s) per block stack instead of the published depth")
    if scale > 1:
        reduced.append(f"token grids divided by {scale} along every axis (frames included), rounded up")
    size = (f"**Reduced sizes, not the published ones**: {'; '.join(reduced)} (see the blocks and token grid "
            "columns)." if reduced else "Published depth and token grids.")
    header = (f"Device: {device_description(device)}, {dtype}; torch {torch.__version__}, diffusers "
              f"{diffusers.__version__}; commit {commit}. Command: `{command.strip()}` ({wall_s:.0f} s in all).\n\n"
              "One denoising step of each transformer, built from its published `transformer/config.json` with "
              f"random weights (seed {SEED}): CFG batch {BATCH} (both guidance branches in one call; the Flux.1-dev "
              "pipeline runs batch 1 as it is guidance-distilled, and Wan's pipeline makes two batch-1 calls). "
              f"{size} Settings are applied with `genaccel.apply` and removed with `genaccel.remove` in turn: "
              f"{args.warmup} warm-up call(s) per setting, then rounds that time one call of each setting (order "
              "rotated by one each round); median of the rounds (`runs`). "
              + ("Peak memory: n/a on CPU (not measured). " if cpu else
                 "Peak memory: `torch.cuda.max_memory_allocated` over the timed calls, weights included. ")
              + "Speed-ups of the whole step are bounded by the share of time in self-attention "
                "(see `benchmarks/attention.py` for attention alone).\n")
    table = markdown_table(HEADERS, [format_row(row) for row in rows])
    print(header)
    print(table)
    if args.write:
        gpu_note = ("\n\nGPU: not measured (no GPU was lent to the session that produced this table)."
                    if cpu else "")
        update_section(args.write, SECTION, header + "\n" + table + gpu_note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
