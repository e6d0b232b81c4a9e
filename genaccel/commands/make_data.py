"""`genaccel make-data`: write a generated dataset (shapes images or videos) with train/held-out splits."""

from __future__ import annotations

import argparse
import json

from genaccel.errors import UserFacingError

KINDS = ("shapes", "videos")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("make-data", help="generate the shapes image or video dataset",
                                   description=__doc__)
    parser.add_argument("kind", choices=KINDS, help="shapes: PNG images; videos: .npy (T, H, W, 3) uint8 clips")
    parser.add_argument("out_dir", help="output folder; gets train/ and heldout/ with labels.csv and classes.txt")
    parser.add_argument("--num", type=int, default=4000, help="items in train + held-out (default 4000)")
    parser.add_argument("--size", type=int, default=32, help="side in pixels, 16..64 (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--frames", type=int, default=16, help="frames per video (videos only, default 16)")
    parser.add_argument("--heldout-fraction", type=float, default=0.1, help="share held out (default 0.1)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genaccel.data.shapes import save_shapes
    from genaccel.data.videos import save_videos

    try:
        if args.kind == "shapes":
            counts = save_shapes(args.out_dir, args.num, args.size, args.seed, args.heldout_fraction)
        else:
            counts = save_videos(args.out_dir, args.num, args.size, args.frames, args.seed, args.heldout_fraction)
    except ValueError as error:
        raise UserFacingError(str(error)) from None
    print(json.dumps({"out_dir": args.out_dir, **counts}))
    return 0
