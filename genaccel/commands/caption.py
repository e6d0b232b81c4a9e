"""`genaccel caption`: caption a folder of images (or video frames), optionally with speculative decoding
and / or visual-token pruning of the target (`--prune METHOD:KEEP`, lossy)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genaccel.errors import UserFacingError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "caption", help="caption images with a multimodal LM (speculative decoding: same captions, fewer passes)",
        description="Writes one JSON line per image (caption, new tokens, seconds, tokens/s, acceptance length) "
                    "and a summary in OUTPUT.stats.json. Acceptance length = tokens emitted per target forward, "
                    "including the bonus token (vanilla decoding = 1.0).")
    parser.add_argument("--model", required=True, help="local folder or Hugging Face id (in the local cache)")
    parser.add_argument("--images", required=True, help="folder of images or video frames")
    parser.add_argument("--prompt", default="Describe the image.",
                        help="user prompt (verbatim if it contains the image token, else via the chat template)")
    parser.add_argument("--output", default="captions.jsonl", help="JSONL file to write")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--speculative", action="store_true", help="lossless speculative decoding")
    parser.add_argument("--drafter", default=None,
                        help="trained FLASH drafter folder (implies --speculative); default: SelfDrafter")
    parser.add_argument("--draft-layers", type=int, default=None, help="SelfDrafter: target layers it uses")
    parser.add_argument("--draft-visual-tokens", type=int, default=64, help="SelfDrafter: visual tokens it reads")
    parser.add_argument("--draft-len", type=int, default=4, help="SelfDrafter: longest draft")
    parser.add_argument("--prune", default=None, metavar="METHOD:KEEP",
                        help="visual-token pruning of the target (lossy): METHOD one of "
                             "fastv, visionzip, divprune, random, cls; KEEP a count per image (64) or a fraction "
                             "(0.25), e.g. divprune:0.25 or fastv:64")
    parser.add_argument("--prune-layer", type=int, default=2,
                        help="--prune fastv: language-model layers that see every visual token")
    parser.add_argument("--do-sample", action="store_true", help="sample (temperature/top-k/top-p) instead of greedy")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")
    parser.set_defaults(func=run)


def _drafter(args: argparse.Namespace, model):
    from genaccel.speculative import FlashDrafter, SelfDrafter

    try:
        if args.drafter is not None:
            return FlashDrafter.from_pretrained(args.drafter, model)
        return SelfDrafter.from_target(model, num_layers=args.draft_layers, visual_tokens=args.draft_visual_tokens,
                                       draft_len=args.draft_len)
    except (ValueError, FileNotFoundError) as error:
        raise UserFacingError(str(error)) from error


def parse_prune(spec: str, layer: int = 2):
    """`METHOD:KEEP` -> VisualTokenPruningConfig (KEEP with a '.' is a fraction, else a count)."""
    from genaccel.token_pruning import METHODS, VisualTokenPruningConfig

    method, sep, keep_text = spec.partition(":")
    if not sep or not method or not keep_text:
        raise UserFacingError(f"--prune takes METHOD:KEEP (e.g. divprune:0.25 or fastv:64), got {spec!r}; "
                              f"methods: {', '.join(sorted(METHODS))}")
    try:
        keep = float(keep_text) if any(c in keep_text for c in ".eE") else int(keep_text)
    except ValueError:
        raise UserFacingError(f"--prune {spec}: KEEP must be a count (64) or a fraction in (0, 1] (0.25), "
                              f"got {keep_text!r}") from None
    try:
        return VisualTokenPruningConfig(keep=keep, method=method, layer=layer)
    except ValueError as error:
        raise UserFacingError(f"--prune {spec}: {error}") from error


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from genaccel.speculative import speculative_generate
    from genaccel.speculative.loading import build_prompt, image_inputs, list_images, load_image, load_target
    from genaccel.token_pruning.config import PruningInputError

    images = list_images(args.images)
    pruning = parse_prune(args.prune, args.prune_layer) if args.prune is not None else None
    model, processor = load_target(args.model, device=args.device, dtype=args.dtype)
    if pruning is not None:
        import genaccel

        try:
            genaccel.apply(model, pruning)
        except (TypeError, ValueError) as error:
            raise UserFacingError(f"--prune {args.prune}: {error}") from error
    prompt_text = build_prompt(processor, args.prompt)
    speculative = args.speculative or args.drafter is not None
    drafter = _drafter(args, model) if speculative else None
    sampling = {key: value for key, value in (("temperature", args.temperature), ("top_k", args.top_k),
                                              ("top_p", args.top_p)) if value is not None}
    if sampling and not args.do_sample:
        raise UserFacingError(f"{', '.join(sampling)} only apply with --do-sample")
    generate_kwargs = {"max_new_tokens": args.max_new_tokens, "do_sample": args.do_sample, **sampling}
    tokenizer = getattr(processor, "tokenizer", processor)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    totals = {"images": 0, "new_tokens": 0, "seconds": 0.0, "target_forwards": 0}
    torch.manual_seed(args.seed)
    with output.open("w") as handle:
        for path in tqdm(images, desc="caption", unit="image"):
            inputs = image_inputs(processor, load_image(path), prompt_text, model)
            prompt_length = inputs["input_ids"].shape[1]
            start = time.perf_counter()
            try:
                if drafter is not None:
                    result = speculative_generate(model, drafter, **inputs, **generate_kwargs)
                    sequences, forwards = result.sequences, result.num_target_forwards
                else:
                    sequences = model.generate(**inputs, **generate_kwargs)
                    forwards = sequences.shape[1] - prompt_length
            except PruningInputError as error:
                raise UserFacingError(f"{path}: --prune {args.prune}: {error}") from error
            seconds = time.perf_counter() - start
            new_tokens = sequences.shape[1] - prompt_length
            caption = tokenizer.decode(sequences[0, prompt_length:], skip_special_tokens=True).strip()
            row = {"image": str(path), "caption": caption, "new_tokens": new_tokens, "seconds": round(seconds, 4),
                   "tokens_per_s": round(new_tokens / seconds, 2) if seconds > 0 else None,
                   "acceptance_length": round(new_tokens / max(forwards, 1), 3)}
            handle.write(json.dumps(row) + "\n")
            totals["images"] += 1
            totals["new_tokens"] += new_tokens
            totals["seconds"] += seconds
            totals["target_forwards"] += forwards
    stats = {**totals, "tokens_per_s": totals["new_tokens"] / totals["seconds"] if totals["seconds"] else None,
             "acceptance_length": totals["new_tokens"] / max(totals["target_forwards"], 1),
             "decoding": ("speculative/" + type(drafter).__name__) if drafter is not None else "vanilla",
             "prune": None if pruning is None else {"method": pruning.method, "keep": pruning.keep,
                                                    **({"layer": pruning.layer} if pruning.method == "fastv" else {})},
             "model": args.model}
    Path(str(output) + ".stats.json").write_text(json.dumps(stats, indent=2))
    pruned = f", pruned {pruning.describe()}" if pruning is not None else ""
    print(f"{totals['images']} captions -> {output}; {stats['tokens_per_s']:.1f} tokens/s, "
          f"acceptance length {stats['acceptance_length']:.2f} ({stats['decoding']}{pruned})")
    return 0
