"""`genaccel train`: class-conditional diffusion training, in pixel space or a tokenizer's latent space
(`--vae`); runs under `accelerate launch` too."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from genaccel.commands._support import add_config_arguments
from genaccel.errors import UserFacingError

_HELP = {
    "data": "'shapes' (generated on the fly) or a folder of same-size images with labels.csv; for --arch wan "
            "a clip folder (`genaccel make-data emoji-videos`)",
    "num_images": "size of the generated shapes dataset (train + held-out)",
    "arch": "dit (diffusers DiTTransformer2DModel), ptdit or lamamba (genaccel.models); wan: videos "
            "(diffusers WanTransformer3DModel)",
    "num_frames": "frames per clip (--arch wan only; default 16)",
    "batch_size": "images per process per step",
    "max_minutes": "stop and save after this many minutes (0: no limit)",
    "init_from": "a checkpoint or bundle folder whose model weights start this run (fresh optimizer, EMA and "
                 "step), e.g. a shipped reference model to train longer",
    "sample_every": "write a sample grid PNG every N steps (0: only at the end)",
    "loss_weighting": "uniform (plain MSE) or min-snr (Min-SNR-gamma weights, Hang et al. 2023)",
    "min_snr_gamma": "gamma of --loss-weighting min-snr (default 5, the paper's)",
    "vae": "train in a tokenizer's latent space: reference:multi-scale, reference:single-scale or a tokenizer "
           "folder / checkpoint (default: pixel space)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from genaccel.train.diffusion import ARCHS, LOSS_WEIGHTINGS, MIXED_PRECISION, PREDICTION_TYPES, TrainConfig

    parser = subparsers.add_parser("train", help="train a class-conditional diffusion transformer (pixels or latents)",
                                   description=__doc__)
    parser.add_argument("output_dir", help="where checkpoints, samples, log.jsonl and final/ go")
    choices = {"arch": ARCHS, "prediction_type": PREDICTION_TYPES, "mixed_precision": MIXED_PRECISION,
               "loss_weighting": LOSS_WEIGHTINGS}
    add_config_arguments(parser, TrainConfig, _HELP, choices)
    parser.add_argument("--resume", default=None, help="'latest' or a checkpoint folder to continue from")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: torch default)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from genaccel.train.diffusion import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    values = {field.name: getattr(args, field.name) for field in fields(TrainConfig)}
    config = TrainConfig(**values)
    if args.data != "shapes" and not Path(args.data).is_dir():
        raise UserFacingError(f"--data must be 'shapes' or an existing image or clip folder, got {args.data!r}")
    try:
        final = train(config, resume=args.resume)
    except (ValueError, FileNotFoundError) as error:
        raise UserFacingError(str(error)) from None
    print(json.dumps({"pipeline": str(final)}))
    return 0
