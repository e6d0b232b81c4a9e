"""The small captioning target and assistant that benchmarks/speculative.py measures.

No hub weights may be downloaded here, so the benchmark trains its own LLaVA-architecture target
(CLIP vision tower + Llama text model) on the shapes-and-colours captioning task of
`genaccel.data.captions`, on CPU with one thread, plus a smaller LLaVA used as the assistant model
of transformers' assisted generation. Both are saved with their processor under --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration, LlavaProcessor)

from genaccel.data.captions import PROMPT, build_caption_tokenizer, make_sample

IMAGE_SIZE = 32
PATCH_SIZE = 4


def chat_prompt() -> str:
    """The prompt text given to the processor (it expands `<image>` to one token per patch)."""
    return f"<s> <image> user : {PROMPT} assistant :"


def build_processor() -> LlavaProcessor:
    tokenizer = build_caption_tokenizer()
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1)


def build_llava(processor: LlavaProcessor, hidden_size: int, num_layers: int, seed: int) -> LlavaForConditionalGeneration:
    """A LLaVA-1.5-architecture model sized for CPU: 64 visual tokens, word-level vocabulary."""
    tokenizer = processor.tokenizer
    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, hidden_size=64,
                                       intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size,
                                intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                                num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
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
    prompt = chat_prompt()
    texts = [f"{prompt} {sample.caption} </s>" for sample in samples]
    batch = processor(images=[s.image for s in samples], text=texts, return_tensors="pt", padding=True)
    prompt_length = processor(images=[samples[0].image], text=[prompt], return_tensors="pt")["input_ids"].shape[1]
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    # left padding: the prompt ends `prompt_length` tokens after each row's first real token
    first_real = batch["attention_mask"].argmax(dim=1)
    for row, start in enumerate(first_real.tolist()):
        labels[row, : start + prompt_length] = -100
    batch["labels"] = labels
    return batch


def train(out: Path, minutes: float, batch_size: int, seed_offset: int = 1000) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/speculative"))
    parser.add_argument("--minutes", type=float, default=18.0)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    train(args.out, args.minutes, args.batch_size)


if __name__ == "__main__":
    main()
