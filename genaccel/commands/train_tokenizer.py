"""`genaccel train-tokenizer`: train the multi-scale (or, with --scales M, single-scale) tokenizer."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from genaccel.commands._support import add_config_arguments
from genaccel.errors import UserFacingError

_HELP = {
    "data": "'shapes' (generated on the fly) or a folder of same-size images (e.g. `genaccel make-data emoji`)",
    "scales": "token-map sides, coarse to fine, ending at image_size / patch_size (one value: the single-scale twin)",
    "quantizer": "none (continuous, an AutoencoderKL drop-in) or fsq (discrete codes per scale)",
    "fsq_levels": "FSQ levels, one per latent channel (codebook = their product)",
    "kl_weight": "weight of the posterior's KL term (continuous mode)",
    "perceptual_weight": "weight of an LPIPS-style distance on the FID Inception's stem (0: off; needs the "
                         "registry Inception weights, `genaccel weights fetch inception`)",
    "perceptual_resize": "pixels per side images are resized to before the perceptual network",
    "adversarial_weight": "weight of a PatchGAN hinge term (0: off); the discriminator trains alongside",
    "adversarial_start": "steps of training before the adversarial term and the discriminator start",
    "discriminator_channels": "width of the PatchGAN discriminator's first layer",
    "max_minutes": "stop and save after this many minutes (0: no limit)",
    "sample_every": "write a reconstruction grid every N steps (0: only at the end)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from genaccel.train.diffusion import MIXED_PRECISION
    from genaccel.train.tokenizer import QUANTIZERS, TokenizerTrainConfig

    parser = subparsers.add_parser("train-tokenizer", help="train the multi-scale visual tokenizer",
                                   description=__doc__)
    parser.add_argument("output_dir", help="where checkpoints, samples, log.jsonl and final/ go")
    choices = {"quantizer": QUANTIZERS, "mixed_precision": MIXED_PRECISION}
    add_config_arguments(parser, TokenizerTrainConfig, _HELP, choices)
    parser.add_argument("--resume", default=None, help="'latest' or a checkpoint folder to continue from")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: torch default)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from genaccel.train.tokenizer import TokenizerTrainConfig, train_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TokenizerTrainConfig(**{field.name: getattr(args, field.name) for field in fields(TokenizerTrainConfig)})
    if args.data != "shapes" and not Path(args.data).is_dir():
        raise UserFacingError(f"--data must be 'shapes' or an existing image folder, got {args.data!r}")
    try:
        final = train_tokenizer(config, resume=args.resume)
    except (ValueError, FileNotFoundError) as error:
        raise UserFacingError(str(error)) from None
    print(json.dumps({"tokenizer": str(final)}))
    return 0
