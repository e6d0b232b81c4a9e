"""`genaccel train-drafter`: train a FLASH draft head for a target by self-distillation."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from genaccel.errors import UserFacingError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-drafter", help="train a FLASH draft head on a target's own captions (self-distillation)",
        description="The target captions each image greedily; the FLASH head learns to predict its next k "
                    "tokens from its hidden states. Checkpoints go to OUTPUT/checkpoint-STEP; --resume continues.")
    parser.add_argument("--model", required=True, help="target: local folder or Hugging Face id (in the local cache)")
    parser.add_argument("--images", required=True, help="folder of training images (or video frames)")
    parser.add_argument("--prompt", default="Describe the image.",
                        help="user prompt (verbatim if it contains the image token, else via the chat template)")
    parser.add_argument("--output", required=True, help="folder for checkpoints and the trained drafter")
    parser.add_argument("--num-queries", type=int, default=64, help="learned queries pooling the visual span")
    parser.add_argument("--draft-len", type=int, default=4, help="tokens proposed per head pass (k)")
    parser.add_argument("--context-window", type=int, default=16, help="past positions the head attends to")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="length of the distilled responses")
    parser.add_argument("--max-images", type=int, default=None, help="use only the first N images")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", help="target dtype: float32, float16, bfloat16")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genaccel.speculative.distillation import distill, load_records, save_records
    from genaccel.speculative.flash_drafter import FlashDrafter
    from genaccel.speculative.flash_training import TrainingOptions, train_flash_head
    from genaccel.speculative.loading import build_prompt, image_inputs, list_images, load_image, load_target

    output = Path(args.output)
    if output.exists() and any(output.glob("checkpoint-*")) and not args.resume:
        raise UserFacingError(f"{output} already holds checkpoints; pass --resume to continue or choose another --output")
    model, processor = load_target(args.model, device=args.device, dtype=args.dtype)
    images = list_images(args.images)[: args.max_images]
    records_path = output / "distillation.safetensors"
    if args.resume and records_path.is_file():
        records = load_records(records_path)
    else:
        prompt_text = build_prompt(processor, args.prompt)
        inputs = (image_inputs(processor, load_image(path), prompt_text, model) for path in images)
        records = distill(model, inputs, args.max_new_tokens, total=len(images))
        output.mkdir(parents=True, exist_ok=True)
        save_records(records, records_path)
    try:
        drafter = FlashDrafter.from_target(model, num_queries=args.num_queries, draft_len=args.draft_len,
                                           context_window=args.context_window, seed=args.seed)
    except ValueError as error:
        raise UserFacingError(str(error)) from error
    options = TrainingOptions(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                              save_every=args.save_every, seed=args.seed)
    log = train_flash_head(drafter, records, output, options, resume=args.resume)
    final = log[-1]["loss"] if log else float("nan")
    print(f"trained FLASH drafter saved to {output} ({len(records)} responses, {args.steps} steps, last loss {final})")
    return 0
