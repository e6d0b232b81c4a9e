"""`genaccel fid-stats DIR -o stats.npz`: save Inception statistics (mu, sigma, count, mode) for reuse."""

from __future__ import annotations

import argparse

from genaccel.commands.fid import add_feature_options
from genaccel.commands._support import default_device, user_errors


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fid-stats", help="save FID statistics of an image folder", description=__doc__)
    parser.add_argument("folder", help="folder of images")
    parser.add_argument("-o", "--output", required=True, help="output .npz file")
    add_feature_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genaccel.eval.distributed import is_main_process
    from genaccel.eval.fid import InceptionExtractor, stats_of_folder
    from genaccel.eval.frechet import GaussianStats

    with user_errors():
        if not args.output.endswith(".npz"):
            raise ValueError(f"output must end with .npz, got {args.output}")
        extractor = InceptionExtractor(args.mode, weights=args.weights, device=args.device or default_device(),
                                       batch_size=args.batch_size)
        stats = GaussianStats.from_features(stats_of_folder(args.folder, extractor), args.mode)
        if is_main_process():  # under `accelerate launch` every process holds the gathered stats
            stats.save(args.output)
            print(f"wrote {args.output}: {stats.count} images, mode {stats.mode}")
    return 0
