"""`genaccel make-data`: write a generated dataset (shapes images or videos, colour emoji images or
clips) with train/held-out splits."""

from __future__ import annotations

import argparse
import json

from genaccel.errors import UserFacingError

KINDS = ("shapes", "videos", "emoji", "emoji-videos")
_DEFAULT_NUM = {"shapes": 4000, "videos": 4000, "emoji-videos": 1000}
_DEFAULT_SIZE = {"shapes": 32, "videos": 32, "emoji": 64, "emoji-videos": 64}
_EMOJI_ONLY = {"limit": ("emoji",), "background": ("emoji",), "font": ("emoji", "emoji-videos")}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("make-data", help="generate the shapes or emoji image or video dataset",
                                   description=__doc__)
    parser.add_argument("kind", choices=KINDS,
                        help="shapes: PNG images; videos: .npy (T, H, W, 3) uint8 clips; emoji: PNGs of every "
                             "glyph of Noto Color Emoji (fonts-noto-color-emoji); emoji-videos: .npy clips of "
                             "moving emoji")
    parser.add_argument("out_dir", help="output folder; gets train/ and heldout/ with labels.csv and classes.txt")
    parser.add_argument("--num", type=int, default=None,
                        help="items in train + held-out (default 4000; emoji-videos 1000; not for emoji, "
                             "which renders every glyph)")
    parser.add_argument("--size", type=int, default=None,
                        help="side in pixels: shapes/videos 16..64 (default 32), emoji 16..136, "
                             "emoji-videos 16..128 (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (videos, emoji-videos; default 16)")
    parser.add_argument("--heldout-fraction", type=float, default=0.1, help="share held out (default 0.1)")
    parser.add_argument("--limit", type=int, default=None,
                        help="emoji only: write only the first N glyphs of each split (a quick try)")
    parser.add_argument("--background", default=None,
                        help="emoji only: background colour, a name or #rrggbb (default white)")
    parser.add_argument("--font", default=None,
                        help="emoji kinds: NotoColorEmoji.ttf to read (default: $GENACCEL_EMOJI_FONT, "
                             "then the system's fonts-noto-color-emoji)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for option, kinds in _EMOJI_ONLY.items():
        if getattr(args, option) is not None and args.kind not in kinds:
            raise UserFacingError(f"--{option} applies to {' and '.join(kinds)} only, not {args.kind}")
    if args.kind == "emoji" and args.num is not None:
        raise UserFacingError("--num does not apply to emoji: every glyph of the font is rendered "
                              "(use --limit N for a quick try)")
    num = args.num if args.num is not None else _DEFAULT_NUM.get(args.kind)
    size = args.size if args.size is not None else _DEFAULT_SIZE[args.kind]
    try:
        if args.kind == "shapes":
            from genaccel.data.shapes import save_shapes

            counts = save_shapes(args.out_dir, num, size, args.seed, args.heldout_fraction)
        elif args.kind == "videos":
            from genaccel.data.videos import save_videos

            counts = save_videos(args.out_dir, num, size, args.frames, args.seed, args.heldout_fraction)
        elif args.kind == "emoji":
            from genaccel.data.emoji import save_emoji

            counts = save_emoji(args.out_dir, size, args.seed, args.heldout_fraction,
                                args.background or "white", args.limit, args.font)
        else:
            from genaccel.data.emoji_videos import save_emoji_videos

            counts = save_emoji_videos(args.out_dir, num, size, args.frames, args.seed, args.heldout_fraction,
                                       args.font)
    except (ValueError, FileNotFoundError) as error:
        raise UserFacingError(str(error)) from None
    print(json.dumps({"out_dir": args.out_dir, **counts}))
    return 0
