"""Emoji glyphs captioned by their Unicode names: a captioning task with real text and real artwork.

Each glyph of `genaccel.data.emoji` (the Noto Color Emoji font) is captioned by the names of its code
points as Python's `unicodedata` gives them, in lower case, e.g. U+1F603 -> "smiling face with open
mouth", so captions are English phrases the model cannot know without looking at the picture.
Sequences join their code points' names with these rewrites, so every word is a word a person
would use:

- U+200D (zero width joiner) and U+FE0F (emoji presentation selector) are dropped;
- skin-tone modifiers read as Unicode's CLDR short names ("emoji modifier fitzpatrick type-4" ->
  "medium skin tone"), hair components lose their "emoji component" prefix ("red hair");
- U+20E3 (combining enclosing keycap) reads "keycap";
- flags: two regional indicators read "flag" and their two letters ("flag f r"); a tag sequence
  reads its base ("waving black flag") and its tag letters ("g b e n g"), the cancel tag dropped.

Glyphs with a code point that this Python's Unicode database cannot name (newer than its
`unicodedata.unidata_version`, e.g. Emoji 15.0 glyphs on Unicode 14.0) are left out, so the task is
a function of the font file and the Python version only. The train / held-out split is the
emoji module's (`split_emoji`, seeded by name); many held-out names combine words seen in training
in new ways (a skin tone of another person), and some hold words never seen in training.

The tokenizer is word-level (as `genaccel.data.captions`): special tokens, the prompt's words, then
every word of every glyph's caption (both splits, so ground truth is always representable), sorted.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from transformers import PreTrainedTokenizerFast

from genaccel.data.captions import PROMPT, SPECIAL_TOKENS, build_caption_tokenizer
from genaccel.data.emoji import Emoji, list_emoji, render_emoji, split_emoji

PROMPT_WORDS = tuple(dict.fromkeys(PROMPT.split() + ["user", "assistant", ":"]))
_SKIN_TONES = {0x1F3FB: "light skin tone", 0x1F3FC: "medium-light skin tone", 0x1F3FD: "medium skin tone",
               0x1F3FE: "medium-dark skin tone", 0x1F3FF: "dark skin tone"}
_DROPPED = {0x200D, 0xFE0F, 0xE007F}  # zero width joiner, variation selector 16, cancel tag
_REGIONAL = range(0x1F1E6, 0x1F200)
_TAGS = range(0xE0020, 0xE007F)


def _code_point_words(cp: int) -> str | None:
    if cp in _DROPPED:
        return ""
    if cp in _SKIN_TONES:
        return _SKIN_TONES[cp]
    if cp == 0x20E3:
        return "keycap"
    name = unicodedata.name(chr(cp), None)
    if name is None:
        return None
    if cp in _REGIONAL or cp in _TAGS:
        return name.rsplit(" ", 1)[1].lower()  # "REGIONAL INDICATOR SYMBOL LETTER F" / "TAG LATIN SMALL LETTER G"
    return name.lower().removeprefix("emoji component ")


def emoji_caption(emoji: Emoji | tuple[int, ...]) -> str | None:
    """The caption of a glyph (or of a code-point sequence), or None where a code point has no name here."""
    sequence = emoji.sequence if isinstance(emoji, Emoji) else tuple(emoji)
    parts = [_code_point_words(cp) for cp in sequence]
    if any(part is None for part in parts):
        return None
    if len(sequence) == 2 and all(cp in _REGIONAL for cp in sequence):
        parts.insert(0, "flag")
    return " ".join(part for part in parts if part)


@dataclass(frozen=True)
class EmojiCaption:
    emoji: Emoji
    caption: str

    def image(self, size: int = 64, background: str = "white") -> Image.Image:
        return render_emoji(self.emoji, size, background)


def emoji_captions(split: str = "train", seed: int = 0, heldout_fraction: float = 0.1,
                   font: str | Path | None = None) -> list[EmojiCaption]:
    """The named glyphs of `split` ('train', 'heldout' or 'all' of `split_emoji`), in the font's order."""
    chosen = split_emoji(list_emoji(font), seed, split, heldout_fraction)
    items = [EmojiCaption(e, caption) for e in chosen if (caption := emoji_caption(e)) is not None]
    if not items:
        raise ValueError(f"no glyph of split {split!r} has a name in this Python's Unicode database "
                         f"({unicodedata.unidata_version})")
    return items


def emoji_caption_vocabulary(font: str | Path | None = None) -> list[str]:
    """Special tokens, the prompt's words, then every caption word of every named glyph, sorted."""
    words = sorted({word for item in emoji_captions("all", font=font) for word in item.caption.split()})
    return list(dict.fromkeys([*SPECIAL_TOKENS, *PROMPT_WORDS, *words]))


def build_emoji_caption_tokenizer(font: str | Path | None = None) -> PreTrainedTokenizerFast:
    """Word-level tokenizer over `emoji_caption_vocabulary` (left padding, `<image>` token)."""
    return build_caption_tokenizer(emoji_caption_vocabulary(font))
