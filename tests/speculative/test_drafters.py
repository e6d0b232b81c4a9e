"""Drafter building blocks: target checks, save/load, visual compression, draft length, training."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from genaccel.speculative import FlashDrafter, SelfDrafter, speculative_generate
from genaccel.speculative.distillation import distill, load_records, save_records
from genaccel.speculative.draft_length import DraftLength
from genaccel.speculative.flash_training import TrainingOptions, train_flash_head
from genaccel.speculative.visual_compression import compress_visual_tokens

from tiny_targets import llava_inputs, text_inputs, tiny_llama, tiny_llava



def test_drafter_for_another_hidden_size_or_vocab_raises():
    target = tiny_llama()
    wider = tiny_llama(hidden=48)
    inputs = text_inputs()
    with pytest.raises(ValueError, match="hidden_size=48"):
        speculative_generate(target, FlashDrafter.from_target(wider), **inputs, max_new_tokens=4, do_sample=False)
    with pytest.raises(ValueError, match="hidden_size"):
        speculative_generate(target, SelfDrafter.from_target(wider), **inputs, max_new_tokens=4, do_sample=False)
    other_vocab = tiny_llama()
    other_vocab.resize_token_embeddings(120)
    with pytest.raises(ValueError, match="vocab_size=120"):
        speculative_generate(target, FlashDrafter.from_target(other_vocab), **inputs, max_new_tokens=4,
                             do_sample=False)


def test_from_pretrained_for_another_target_raises(tmp_path):
    FlashDrafter.from_target(tiny_llama(hidden=48)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="another|built for"):
        FlashDrafter.from_pretrained(tmp_path, tiny_llama())
    with pytest.raises(FileNotFoundError, match="flash_config.json"):
        FlashDrafter.from_pretrained(tmp_path / "missing", tiny_llama())


def test_batch_size_above_one_is_a_clear_error():
    model = tiny_llama()
    inputs = {"input_ids": torch.randint(3, 80, (2, 6))}
    with pytest.raises(ValueError, match="batch size 1"):
        speculative_generate(model, SelfDrafter.from_target(model), **inputs, max_new_tokens=4, do_sample=False)


def test_inputs_embeds_without_ids_is_rejected():
    model = tiny_llama()
    embeds = model.get_input_embeddings()(text_inputs()["input_ids"])
    with pytest.raises(ValueError, match="input_ids"):
        speculative_generate(model, SelfDrafter.from_target(model), inputs_embeds=embeds, max_new_tokens=4)


def test_beam_search_is_rejected():
    model = tiny_llama()
    with pytest.raises(ValueError, match="num_beams"):
        speculative_generate(model, SelfDrafter.from_target(model), **text_inputs(), max_new_tokens=4, num_beams=2)


def test_save_and_load_round_trip_is_exact(tmp_path):
    model = tiny_llava()
    drafter = FlashDrafter.from_target(model, num_queries=4, draft_len=3, context_window=5, seed=7)
    drafter.save_pretrained(tmp_path)
    loaded = FlashDrafter.from_pretrained(tmp_path, model)
    assert loaded.head.config == drafter.head.config
    saved = load_file(tmp_path / "model.safetensors")
    for name, tensor in drafter.head.state_dict().items():
        assert torch.equal(saved[name], tensor) and torch.equal(loaded.head.state_dict()[name], tensor)


def test_pool_compression_averages_contiguous_chunks_and_keeps_text():
    embeds = torch.arange(10 * 2, dtype=torch.float32).view(1, 10, 2)
    mask = torch.tensor([[False, True, True, True, True, True, True, False, False, False]])
    out = compress_visual_tokens(embeds, mask, num_tokens=3, method="pool")
    expected = torch.cat([embeds[:, :1], embeds[:, 1:7].view(1, 3, 2, 2).mean(dim=2), embeds[:, 7:]], dim=1)
    assert torch.equal(out, expected)


def test_norm_compression_keeps_the_highest_scores_in_order():
    embeds = torch.arange(8, dtype=torch.float32).view(1, 8, 1)
    mask = torch.tensor([[False, True, True, True, True, True, False, False]])
    scores = torch.tensor([[0.0, 5.0, 1.0, 9.0, 2.0, 7.0, 0.0, 0.0]])
    out = compress_visual_tokens(embeds, mask, num_tokens=3, method="norm", scores=scores)
    assert out.flatten().tolist() == [0.0, 1.0, 3.0, 5.0, 6.0, 7.0]
    with pytest.raises(ValueError, match="pool, norm"):
        compress_visual_tokens(embeds, mask, num_tokens=3, method="random")


def test_draft_length_follows_acceptance():
    length = DraftLength(max_length=5)
    assert length.current == 5
    length.update(proposed=5, accepted=1)
    assert length.current == 2
    length.update(proposed=2, accepted=2)
    assert length.current == 3
    length.update(proposed=3, accepted=0)
    assert length.current == 1
    fixed = DraftLength(max_length=4, adaptive=False)
    fixed.update(proposed=4, accepted=0)
    assert fixed.current == 4


def test_training_lowers_loss_and_resume_matches_an_unbroken_run(tmp_path):
    model = tiny_llava()
    records = distill(model, [llava_inputs(seed) for seed in range(3)], max_new_tokens=12)
    assert [r.input_ids.shape[0] - 1 for r in records] == [r.hidden.shape[0] for r in records]
    save_records(records, tmp_path / "records.safetensors")
    reloaded = load_records(tmp_path / "records.safetensors")
    assert all(torch.equal(a.hidden, b.hidden) and a.prompt_length == b.prompt_length
               for a, b in zip(records, reloaded))

    def fresh():
        return FlashDrafter.from_target(model, num_queries=4, draft_len=3, context_window=4, seed=1)

    options = TrainingOptions(steps=40, batch_size=16, learning_rate=3e-3, save_every=20)
    unbroken = fresh()
    log = train_flash_head(unbroken, reloaded, tmp_path / "a", options)
    assert log[-1]["loss"] < log[0]["loss"]
    # an interrupted run: its checkpoint-40 is deleted, so resuming starts from checkpoint-20
    train_flash_head(fresh(), reloaded, tmp_path / "b", TrainingOptions(**{**options.__dict__, "steps": 40}))
    resumed = fresh()
    for path in sorted((tmp_path / "b").glob("checkpoint-40")):
        for item in path.iterdir():
            item.unlink()
        path.rmdir()
    train_flash_head(resumed, reloaded, tmp_path / "b", options, resume=True)
    for name, tensor in unbroken.head.state_dict().items():
        torch.testing.assert_close(resumed.head.state_dict()[name], tensor, rtol=0, atol=1e-6)
    # the trained head drafts for the target it was trained on, and output stays exact
    trained = FlashDrafter.from_pretrained(tmp_path / "a", model)
    inputs = llava_inputs(0)
    out = speculative_generate(model, trained, **inputs, max_new_tokens=12, do_sample=False)
    assert torch.equal(out.sequences, model.generate(**inputs, max_new_tokens=12, do_sample=False))
