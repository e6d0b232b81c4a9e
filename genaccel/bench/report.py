"""Benchmark reports: report.json, report.md, a speed-vs-quality plot and an image grid (PNG)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from genaccel.bench.markdown import markdown_table


def _fmt(value: float | None, digits: int = 3, spread: float | None = None) -> str:
    """`value` (and `± spread` where there is one) with `digits` decimals; n/a when not measured."""
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "inf"
    if spread is None or not math.isfinite(spread):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {spread:.{digits}f}"


def _figure(result, name: str, digits: int) -> str:
    return _fmt(getattr(result, name), digits, getattr(result, f"{name}_spread"))


def write_report(out_dir: Path, results: list, meta: dict) -> dict:
    """Write report.json and report.md; return the JSON object."""
    report = {"meta": meta, "methods": [asdict(r) for r in results]}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, allow_nan=True))
    headers = ["method", "outputs", "s / output", "s / step", "speed-up", "PSNR vs dense (dB)",
               "SSIM vs dense", "LPIPS vs dense", "FID vs dense", "FID vs real", "KID vs real", "FVD vs real"]
    rows = [[r.method, r.count, _fmt(r.seconds_per_output), _fmt(r.seconds_per_step, 4), _fmt(r.speedup, 2),
             _figure(r, "psnr", 2), _figure(r, "ssim", 4), _figure(r, "lpips", 4), _figure(r, "fid_vs_dense", 2),
             _figure(r, "fid_vs_real", 2), _figure(r, "kid_vs_real", 4), _figure(r, "fvd_vs_real", 2)]
            for r in results]
    notes = sorted({note for r in results for note in r.notes})
    lines = [
        "# genaccel bench report", "",
        f"- model: `{meta['model']}`, steps: {meta['steps']}, device: {meta['device']}, commit: {meta['commit']}",
        f"- command: `{meta['command']}`",
        "- time: median wall-clock per output after one warm-up output; s / step = s / output / steps.",
        "- PSNR / SSIM: mean over outputs against the dense output with the same prompt and seed "
        "(identical outputs count as 100 dB).",
        "- ± : PSNR / SSIM / LPIPS, half-width of the 95% t-interval of the mean over outputs; FID / FVD, "
        f"std over {meta.get('resamples', 0)} bootstrap resamples (the value itself uses all outputs); KID, std over "
        "100 subsets. Two methods differ where their intervals do not overlap.",
        "- FID below 2,000 samples is biased upward: compare methods at the same N with it (and with KID), "
        "not with published FIDs (the notes below say where this applies).", "",
        markdown_table(headers, rows), "",
    ]
    lines += [f"Note: {note}" for note in notes]
    lines += ["", "![speed vs quality](speed_quality.png)", "", "![grid](grid.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))
    return report


def plot_speed_quality(out_dir: Path, results: list) -> Path:
    """Speed-up (x) against PSNR to the dense output (y), one labelled point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        y = min(r.psnr, 100.0) if r.psnr is not None else float("nan")
        ax.scatter([r.speedup], [y])
        ax.annotate(r.method, (r.speedup, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("speed-up over dense (x)")
    ax.set_ylabel("PSNR vs dense (dB, dense = 100)")
    ax.set_title("speed vs fidelity")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "speed_quality.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def image_grid(out_dir: Path, method_names: list[str], outputs: list[list[np.ndarray]], max_columns: int = 8) -> Path:
    """Rows = methods, columns = the first outputs (first frame of videos)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(max_columns, len(outputs[0]))
    fig, axes = plt.subplots(len(method_names), columns, figsize=(2 * columns, 2 * len(method_names)),
                             squeeze=False)
    for row, (name, arrays) in enumerate(zip(method_names, outputs)):
        for col in range(columns):
            ax = axes[row][col]
            image = arrays[col][0] if arrays[col].ndim == 4 else arrays[col]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    path = out_dir / "grid.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
