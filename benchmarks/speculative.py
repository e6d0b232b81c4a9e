"""Speculative captioning benchmark: vanilla, assisted, prompt lookup, SelfDrafter, FlashDrafter.

No hub weights may be downloaded here, so the benchmark builds everything it measures, in stages
(each writes under --out, git-ignored):

  train-target   a LLaVA-architecture target (CLIP vision tower + Llama text model) trained on the
                 shapes-and-colours captioning task of `genaccel.data.captions`, and a smaller LLaVA
                 used as the assistant model of transformers' assisted generation (CPU, one thread)
  train-drafter  writes training images and runs `genaccel train-drafter` (self-distillation) for
                 the FLASH head
  select-drafter picks the FLASH checkpoint with the best acceptance on validation images
  measure        times every method on the same held-out images in one process, checks that every
                 output equals vanilla greedy decoding, and writes BENCHMARKS.md section "speculative"

Acceptance length = tokens emitted per target forward, including the bonus token (vanilla = 1.0),
counted with a forward hook on the target, the same way for every method.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration, LlavaProcessor)

from genaccel.data.captions import PROMPT, build_caption_tokenizer, make_sample
from genaccel.bench.markdown import git_commit, markdown_table, update_section
from genaccel.eval.timing import time_callable

IMAGE_SIZE = 32
PATCH_SIZE = 4


def chat_prompt() -> str:
    """The prompt text given to the processor (it expands `<image>` to one token per patch)."""
    return f"<s> <image> user : {PROMPT} assistant :"


def build_processor(tokenizer=None, image_size: int = IMAGE_SIZE, patch_size: int = PATCH_SIZE) -> LlavaProcessor:
    """A LLaVA processor (CLS dropped: (image_size / patch_size)^2 visual tokens) over `tokenizer`
    (default: the shapes-caption tokenizer)."""
    tokenizer = build_caption_tokenizer() if tokenizer is None else tokenizer
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                            crop_size={"height": image_size, "width": image_size})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1)


def build_llava(processor: LlavaProcessor, hidden_size: int, num_layers: int, seed: int,
                image_size: int = IMAGE_SIZE, patch_size: int = PATCH_SIZE,
                max_position_embeddings: int = 256) -> LlavaForConditionalGeneration:
    """A LLaVA-1.5-architecture model sized for CPU: (image_size / patch_size)^2 visual tokens (64 by
    default), word-level vocabulary."""
    tokenizer = processor.tokenizer
    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(image_size=image_size, patch_size=patch_size, hidden_size=64,
                                       intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size,
                                intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                                num_attention_heads=4, num_key_value_heads=4,
                                max_position_embeddings=max_position_embeddings,
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.pad_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def training_batch(processor: LlavaProcessor, seeds: list[int]) -> dict[str, torch.Tensor]:
    """Prompt + caption + EOS for each seed; labels cover only the caption and EOS."""
    samples = [make_sample(seed, IMAGE_SIZE) for seed in seeds]
    return caption_batch(processor, [s.image for s in samples], [s.caption for s in samples], chat_prompt())


def caption_batch(processor: LlavaProcessor, images: list, captions: list[str], prompt: str) -> dict[str, torch.Tensor]:
    """`prompt` + caption + EOS for each image, left-padded; labels cover only the caption and EOS."""
    texts = [f"{prompt} {caption} </s>" for caption in captions]
    batch = processor(images=images, text=texts, return_tensors="pt", padding=True)
    prompt_length = processor(images=images[:1], text=[prompt], return_tensors="pt")["input_ids"].shape[1]
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    # left padding: the prompt ends `prompt_length` tokens after each row's first real token
    first_real = batch["attention_mask"].argmax(dim=1)
    for row, start in enumerate(first_real.tolist()):
        labels[row, : start + prompt_length] = -100
    batch["labels"] = labels
    return batch


def train_target(out: Path, minutes: float, batch_size: int, seed_offset: int = 1000) -> None:
    torch.set_num_threads(1)
    processor = build_processor()
    models = {"target": build_llava(processor, hidden_size=256, num_layers=4, seed=0),
              "assistant": build_llava(processor, hidden_size=64, num_layers=1, seed=1)}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01) for name, m in models.items()}
    deadline = time.monotonic() + minutes * 60
    step, log = 0, []
    progress = tqdm(desc="train target+assistant", unit="step")
    while time.monotonic() < deadline:
        seeds = list(range(seed_offset + step * batch_size, seed_offset + (step + 1) * batch_size))
        batch = training_batch(processor, seeds)
        losses = {}
        for name, model in models.items():
            model.train()
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            losses[name] = round(loss.item(), 4)
        step += 1
        progress.update(1)
        progress.set_postfix(losses)
        if step % 20 == 0:
            log.append({"step": step, **losses})
    progress.close()
    for name, model in models.items():
        model.eval()
        model.save_pretrained(out / name)
        processor.save_pretrained(out / name)
    (out / "train_log.json").write_text(json.dumps({"steps": step, "batch_size": batch_size, "log": log}, indent=1))


TRAIN_IMAGE_SEEDS = range(100_000, 101_200)  # disjoint from the target's training seeds (1000 + ...)
VALIDATION_IMAGE_SEEDS = range(800_000, 800_016)  # checkpoint selection only
EVAL_IMAGE_SEEDS = range(900_000, 900_008)


def train_drafter(out: Path, steps: int) -> None:
    """Training images on disk, then the `genaccel train-drafter` command on the trained target."""
    from genaccel.cli import main as genaccel_main

    torch.set_num_threads(1)
    images = out / "train_images"
    images.mkdir(parents=True, exist_ok=True)
    for seed in TRAIN_IMAGE_SEEDS:
        path = images / f"{seed}.png"
        if not path.exists():
            make_sample(seed, IMAGE_SIZE).image.save(path)
    argv = ["train-drafter", "--model", str(out / "target"), "--images", str(images), "--prompt", chat_prompt(),
            "--output", str(out / "flash"), "--num-queries", "16", "--draft-len", "5", "--context-window", "16",
            "--max-new-tokens", "64", "--steps", str(steps), "--batch-size", "128", "--lr", "2e-3",
            "--save-every", "250", "--device", "cpu"]
    if (out / "flash" / "distillation.safetensors").exists():
        argv.append("--resume")
    raise SystemExit(genaccel_main(argv))


def select_drafter(out: Path, max_new_tokens: int) -> None:
    """Pick the FLASH checkpoint with the best acceptance length on validation images (not the eval ones)."""
    from genaccel.speculative import FlashDrafter, speculative_generate
    from genaccel.speculative.loading import image_inputs, load_target

    torch.set_num_threads(1)
    model, processor = load_target(str(out / "target"))
    prompts = [image_inputs(processor, make_sample(seed, IMAGE_SIZE).image, chat_prompt(), model)
               for seed in VALIDATION_IMAGE_SEEDS]
    scores = {}
    for checkpoint in sorted((out / "flash").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        drafter = FlashDrafter.from_pretrained(checkpoint, model)
        results = [speculative_generate(model, drafter, **inputs, max_new_tokens=max_new_tokens, do_sample=False)
                   for inputs in prompts]
        scores[checkpoint.name] = sum(r.num_new_tokens for r in results) / sum(r.num_target_forwards for r in results)
        print(f"{checkpoint.name}: acceptance length {scores[checkpoint.name]:.3f}", file=sys.stderr)
    best = max(scores, key=scores.get)
    (out / "flash" / "selection.json").write_text(json.dumps({"selected": best, "validation": scores}, indent=1))


class ForwardCounter:
    """Counts forward calls of one model instance (a hook on the instance, removed in `close`)."""

    def __init__(self, model: torch.nn.Module):
        self.count = 0
        self._handle = model.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        self.count += 1

    def close(self) -> None:
        self._handle.remove()


def measure(out: Path, max_new_tokens: int, runs: int, command: str) -> None:
    from genaccel.speculative import FlashDrafter, SelfDrafter, speculative_generate
    from genaccel.speculative.loading import image_inputs, load_target

    torch.set_num_threads(1)
    model, processor = load_target(str(out / "target"))
    assistant, _ = load_target(str(out / "assistant"))
    prompts = [image_inputs(processor, make_sample(seed, IMAGE_SIZE).image, chat_prompt(), model)
               for seed in EVAL_IMAGE_SEEDS]
    selection = json.loads((out / "flash" / "selection.json").read_text())
    flash = FlashDrafter.from_pretrained(out / "flash" / selection["selected"], model)
    self_drafter = SelfDrafter.from_target(model, num_layers=1, visual_tokens=16, draft_len=5)
    greedy = {"max_new_tokens": max_new_tokens, "do_sample": False}
    methods = {
        "vanilla generate": lambda inputs: model.generate(**inputs, **greedy),
        "assisted generation (assistant: 1-layer LLaVA)": lambda inputs: model.generate(
            **inputs, **greedy, assistant_model=assistant),
        "prompt lookup (3 tokens)": lambda inputs: model.generate(**inputs, **greedy, prompt_lookup_num_tokens=3),
        "SelfDrafter (1 of 4 layers, 16 visual tokens)": lambda inputs: speculative_generate(
            model, self_drafter, **inputs, **greedy).sequences,
        "FlashDrafter (16 queries, k=5)": lambda inputs: speculative_generate(
            model, flash, **inputs, **greedy).sequences,
    }
    reference = [methods["vanilla generate"](inputs) for inputs in prompts]
    new_tokens = sum(r.shape[1] - p["input_ids"].shape[1] for r, p in zip(reference, prompts))
    results, passes = {}, {name: [] for name in methods}
    for name, generate in methods.items():
        counter = ForwardCounter(model)
        outputs = [generate(inputs) for inputs in prompts]  # also the warm-up
        counter.close()
        results[name] = {"target_forwards": counter.count,
                         "identical": all(torch.equal(a, b) for a, b in zip(outputs, reference))}
    # Methods are interleaved run by run, so load from other processes affects all of them alike.
    for _ in range(runs):
        for name, generate in methods.items():
            timing = time_callable(lambda: [generate(inputs) for inputs in prompts], warmup=0, runs=1)
            passes[name].append(timing.median_s)
    rows = []
    for name, result in results.items():
        result["seconds"] = statistics.median(passes[name])
        print(f"{name}: {result['seconds']:.3f} s, {new_tokens / result['target_forwards']:.2f} tokens/forward, "
              f"identical={result['identical']}", file=sys.stderr)
    vanilla_s = results["vanilla generate"]["seconds"]
    assisted_s = results["assisted generation (assistant: 1-layer LLaVA)"]["seconds"]
    for name, result in results.items():
        rows.append([name, f"{new_tokens / result['seconds']:.1f}", f"{new_tokens / result['target_forwards']:.2f}",
                     f"{vanilla_s / result['seconds']:.2f}x", f"{assisted_s / result['seconds']:.2f}x",
                     "yes" if result["identical"] else "NO"])
    table = markdown_table(["method", "tokens/s", "acceptance length", "speedup vs vanilla",
                            "vs assisted", "output identical to vanilla"], rows)
    train_log = json.loads((out / "train_log.json").read_text())
    body = (
        f"Device: CPU ({platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread); "
        f"GPU: not measured. Commit: `{git_commit()}`. Command: `{command}`.\n\n"
        f"Task: greedy captioning of {len(prompts)} held-out images of `genaccel.data.captions` "
        f"(max_new_tokens={max_new_tokens}, {new_tokens} new tokens in all) by a LLaVA-architecture target "
        f"trained here (CLIP vision tower, 64 visual tokens; Llama text model, 4 layers, hidden 256; "
        f"{train_log['steps']} steps of batch {train_log['batch_size']} on CPU). Each time is the median of "
        f"{runs} runs over all images after a warm-up, all methods in the same process, interleaved run by run. "
        "Acceptance length = "
        "tokens emitted per target forward, including the bonus token (vanilla = 1.00), counted with a forward "
        "hook on the target. FLASH head: trained with `genaccel train-drafter` on the target's greedy captions of "
        f"{len(TRAIN_IMAGE_SEEDS)} other images; {selection['selected']} chosen by acceptance length on "
        f"{len(VALIDATION_IMAGE_SEEDS)} validation images (neither set overlaps the measured images).\n\n" + table
    )
    update_section(Path("BENCHMARKS.md"), "speculative", body)
    print(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["train-target", "train-drafter", "select-drafter", "measure"])
    parser.add_argument("--out", type=Path, default=Path("outputs/speculative"))
    parser.add_argument("--minutes", type=float, default=20.0, help="train-target: wall-clock budget")
    parser.add_argument("--batch-size", type=int, default=16, help="train-target: batch size")
    parser.add_argument("--steps", type=int, default=1500, help="train-drafter: optimisation steps")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="measure: caption length limit")
    parser.add_argument("--runs", type=int, default=7, help="measure: timed runs (median)")
    args = parser.parse_args()
    if args.stage == "train-target":
        train_target(args.out, args.minutes, args.batch_size)
    elif args.stage == "train-drafter":
        train_drafter(args.out, args.steps)
    elif args.stage == "select-drafter":
        select_drafter(args.out, args.max_new_tokens)
    else:
        measure(args.out, args.max_new_tokens, args.runs, "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
