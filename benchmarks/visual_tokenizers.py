"""Visual tokenizers side by side on held-out images: reconstruction quality, speed and (discrete) code usage.

(Not `benchmarks/tokenizers.py`: scripts here put benchmarks/ on sys.path, where that name would shadow
Hugging Face's `tokenizers`.)

For every `--tokenizer NAME=PATH` (a bundled tokenizer such as genaccel/tokenizers/reference/multi_scale,
a `MultiScaleTokenizer` folder, e.g. a run's `final/`, or a training checkpoint): reconstruct every image of `--real` (a folder of same-size images, e.g.
`genaccel make-data emoji`'s heldout/), then report rFID of the reconstructions against the
originals (legacy-tf Inception; bootstrap std; below 2,000 images biased upward, said so, KID beside
it), PSNR and SSIM (torchmetrics, mean ± 95% interval over images), encode and decode images/s
(median of `--runs` after a warm-up), parameters, tokens per scale and, for FSQ tokenizers, the share
of the codebook used at each scale. Writes the "tokenizers" section of BENCHMARKS.md.

    python benchmarks/visual_tokenizers.py --tokenizer multi=runs/tok_multi/final --tokenizer single=runs/tok_single/final \
        --real data/emoji32/heldout --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genaccel.bench.markdown import git_commit, markdown_table, update_section  # noqa: E402
from genaccel.eval.fidelity import psnr, ssim  # noqa: E402
from genaccel.eval.intervals import bootstrap_frechet, frechet_sample_note, mean_with_interval  # noqa: E402
from genaccel.eval.timing import time_callable  # noqa: E402
from genaccel.tokenizers.reference import load_tokenizer  # noqa: E402

SECTION = "tokenizers"


def reconstruct(model, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> uint8 reconstructions (the posterior mode, or the quantized codes)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = images[start:start + batch].float() / 127.5 - 1
            out.append(((model(x).sample.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    return torch.cat(out)


def code_usage(model, images: torch.Tensor) -> list[float]:
    """Per scale, the share of FSQ codes that occur at least once over the images."""
    with torch.no_grad():
        codes = model.tokenize(images.float() / 127.5 - 1)
    size = model.quantize.codebook_size
    return [len(torch.unique(c)) / size for c in codes]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", action="append", required=True, metavar="NAME=PATH",
                        help="a tokenizer to compare (repeat the option)")
    parser.add_argument("--real", required=True, help="folder of same-size held-out images")
    parser.add_argument("--runs", type=int, default=5, help="timed encode / decode calls (median)")
    parser.add_argument("--time-batch", type=int, default=64, help="images per timed call")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-fid", action="store_true", help="skip rFID / KID (no Inception weights needed)")
    parser.add_argument("--write", default=None, metavar="BENCHMARKS.md")
    args = parser.parse_args(argv)
    pairs = []
    for item in args.tokenizer:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"--tokenizer takes NAME=PATH, got {item!r}")
        pairs.append((name, path))
    args.tokenizers = pairs
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    commit = git_commit()
    if args.threads:
        torch.set_num_threads(args.threads)
    from genaccel.data.image_folder import ImageFolderDataset

    dataset = ImageFolderDataset(args.real)
    real = torch.stack([((dataset[k][0] + 1) * 127.5).round().to(torch.uint8) for k in range(len(dataset))])
    extractor = real_features = None
    if not args.no_fid:
        from genaccel.eval.fid import InceptionExtractor

        extractor = InceptionExtractor("legacy-tf")
        real_features = extractor(real).numpy()
    started = time.perf_counter()
    rows, notes = [], set()
    for name, path in args.tokenizers:
        model = load_tokenizer(path)
        if model.config.image_size != real.shape[-1]:
            raise ValueError(f"{name} takes {model.config.image_size} px images, {args.real} holds {real.shape[-1]} px")
        recon = reconstruct(model, real)
        originals, outputs = real.permute(0, 2, 3, 1).numpy(), recon.permute(0, 2, 3, 1).numpy()
        pairs = list(zip(outputs, originals))
        quality = [mean_with_interval([min(psnr(a, b), 100.0) for a, b in pairs]).format(2),
                   mean_with_interval([ssim(a, b) for a, b in pairs]).format(4)]
        rfid, kid = "not measured", "not measured"
        if extractor is not None:
            from genaccel.eval.kid import kernel_inception_distance

            fake = extractor(recon).numpy()
            rfid = bootstrap_frechet(fake, real_features, resamples=10).format(2)
            mean, std = kernel_inception_distance(real_features, fake, subset_size=max(2, len(fake) // 2),
                                                  generator=torch.Generator().manual_seed(0))
            kid = f"{mean:.4f} ± {std:.4f}"
            notes.add(frechet_sample_note("FID", len(fake)) or "")
        batch = real[:args.time_batch].float() / 127.5 - 1
        with torch.no_grad():
            latents = model.encode(batch).latent_dist.mode()
            encode_s = time_callable(lambda: model.encode(batch), warmup=1, runs=args.runs).median_s
            decode_s = time_callable(lambda: model.decode(latents), warmup=1, runs=args.runs).median_s
        usage = "-" if model.quantize is None else " / ".join(f"{100 * u:.0f}%" for u in code_usage(model, real))
        rows.append([name, model.config.quantizer or "continuous", "+".join(map(str, model.tokens_per_scale)),
                     f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M", rfid, kid, *quality,
                     f"{len(batch) / encode_s:.0f}", f"{len(batch) / decode_s:.0f}", usage])
    wall = time.perf_counter() - started
    command = "python benchmarks/visual_tokenizers.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = (f"Device: CPU ({torch.get_num_threads()} threads); torch {torch.__version__}; commit {commit}. Command: "
              f"`{command.strip()}` ({wall:.0f} s).\n\nEvery image of `{args.real}` ({len(real)} images, "
              f"{real.shape[-1]} px) reconstructed by each tokenizer (posterior mode / quantized codes). rFID: "
              "legacy-tf Inception FID of the reconstructions against the originals, ± bootstrap std (10 "
              "resamples); KID ± subset std; PSNR / SSIM: mean ± 95% interval over images; encode / decode: "
              f"images/s for a batch of {len(batch)}, median of {args.runs}. Code usage: share of the FSQ codebook "
              "seen at each scale, coarse to fine.\n")
    table = markdown_table(["tokenizer", "mode", "tokens per scale", "parameters", f"rFID (N={len(real)})", "KID",
                            "PSNR (dB)", "SSIM", "encode img/s", "decode img/s", "code usage per scale"], rows)
    body = header + "\n" + table + "".join(f"\n\n{note}" for note in sorted(notes) if note)
    body += "\n\nGPU: not measured (no GPU was lent to the session that produced this table)."
    print(body)
    if args.write:
        update_section(args.write, SECTION, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
