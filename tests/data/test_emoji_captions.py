import unicodedata

import pytest

from genaccel.data.captions import SPECIAL_TOKENS, build_caption_tokenizer
from genaccel.data.emoji import find_font, list_emoji, split_emoji
from genaccel.data.emoji_captions import (PROMPT_WORDS, build_emoji_caption_tokenizer, emoji_caption,
                                          emoji_caption_vocabulary, emoji_captions)

try:
    find_font()
except FileNotFoundError:
    pytest.skip("fonts-noto-color-emoji is not installed (apt-get install fonts-noto-color-emoji)",
                allow_module_level=True)


@pytest.mark.parametrize("sequence, caption", [
    ((0x1F603,), "smiling face with open mouth"),
    ((0x31, 0xFE0F, 0x20E3), "digit one keycap"),
    ((0x1F1EB, 0x1F1F7), "flag f r"),
    ((0x1F3F4, 0xE0067, 0xE0062, 0xE0065, 0xE006E, 0xE0067, 0xE007F), "waving black flag g b e n g"),
    ((0x1F9D1, 0x200D, 0x1F9B0), "adult red hair"),
    ((0x1F44D, 0x1F3FD), "thumbs up sign medium skin tone"),
    ((0x1F469, 0x200D, 0x1F467), "woman girl"),
])
def test_captions_are_lower_case_unicode_names_with_readable_sequences(sequence, caption):
    assert emoji_caption(sequence) == caption


def test_a_code_point_without_a_name_leaves_the_glyph_out():
    assert emoji_caption((0x10FFFD,)) is None  # private use: no name in any Unicode version
    named = emoji_captions("all")
    skipped = [e for e in list_emoji() if emoji_caption(e) is None]
    assert len(named) + len(skipped) == len(list_emoji()) and len(skipped) < 0.02 * len(list_emoji())
    assert all(any(unicodedata.name(chr(cp), None) is None for cp in e.sequence) for e in skipped)


def test_splits_follow_the_emoji_split_and_are_deterministic():
    train, heldout = emoji_captions("train"), emoji_captions("heldout")
    assert {i.emoji.name for i in heldout} <= {e.name for e in split_emoji(list_emoji(), 0, "heldout")}
    assert not {i.emoji.name for i in train} & {i.emoji.name for i in heldout}
    assert len(heldout) > 300 and len(train) > 3000
    assert [i.caption for i in heldout] == [i.caption for i in emoji_captions("heldout")]
    # held-out glyphs are new pictures with new names, not repeats of training captions
    assert not {i.caption for i in train} & {i.caption for i in heldout}
    image = heldout[0].image(64)
    assert image.size == (64, 64) and image.mode == "RGB"


def test_tokenizer_covers_every_caption_and_round_trips():
    vocabulary = emoji_caption_vocabulary()
    assert vocabulary == emoji_caption_vocabulary()
    assert tuple(vocabulary[:len(SPECIAL_TOKENS)]) == SPECIAL_TOKENS
    assert set(PROMPT_WORDS) <= set(vocabulary) and len(set(vocabulary)) == len(vocabulary)
    tokenizer = build_emoji_caption_tokenizer()
    assert len(tokenizer) == len(vocabulary) and tokenizer.padding_side == "left"
    captions = [item.caption for item in emoji_captions("all")]
    ids = tokenizer(captions, add_special_tokens=False)["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)
    assert [tokenizer.decode(row) for row in ids[::50]] == captions[::50]
    with pytest.raises(ValueError, match="must start with"):
        build_caption_tokenizer(["a", "b"])
