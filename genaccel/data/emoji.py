"""Colour emoji from the Noto Color Emoji font, labelled by Unicode emoji group: an image dataset of
real artwork that needs nothing beyond Debian's `fonts-noto-color-emoji` package.

The font (a CBDT/CBLC bitmap font: one 136x128 PNG per glyph at its only strike, 109 ppem) is read
with a small parser of its own (no fontTools):

- **Enumeration.** Single code points come from the `cmap` table (format 12); multi-code-point
  emoji (ZWJ sequences, flags, skin tones, keycaps, subdivision flags) from the `GSUB` ligature
  lookups: a ligature's component glyphs are mapped back to code points through the cmap. The
  font maps several sequences to many glyphs (its right-to-left aliases, malformed orders,
  private-use code points, regions sharing a flag): every glyph is one item, named by the emoji it
  draws (`_name_glyphs`), in Noto's own style without U+FE0F ('u1f3f3_200d_1f308'). Glyphs with no
  bitmap or a fully transparent one (space, ZWJ, tag characters) are skipped, and so are glyphs
  whose picture repeats an earlier one (the snowboarder's skin tones, a few families).
  Noto Color Emoji 2.042 (Debian 12): 3,916 glyphs, 1,424 single code points and 2,492 sequences.
- **Rendering.** The glyph's PNG is taken straight from the CBDT table, centred on a transparent
  136x136 square, composited over the background colour and downscaled with Lanczos. This is what
  Pillow's `draw.text(..., embedded_color=True)` draws at size 109 (tested), but sequences need no
  libraqm and the bytes depend only on the font file and Pillow's PNG decoder and resampler.
- **Groups.** `emoji_group` assigns one of the ten Unicode emoji groups from code points alone
  (`_GROUP_BREAKS`, see there); no emoji-test.txt is needed.
- **Split.** The held-out glyphs are a fixed, seeded permutation of the glyph list: glyphs sorted by
  sha256 of (seed, name), the first `round(N * heldout_fraction)` held out. A glyph's place depends
  on its own name only, so a newer or older font keeps (almost) every shared glyph on its side.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import io
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageColor
from torch.utils.data import Dataset

from genaccel.data.shapes import pil_to_tensor, write_labels

FONT_ENV = "GENACCEL_EMOJI_FONT"
FONT_PATHS: tuple[str, ...] = (
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",  # Debian / Ubuntu: fonts-noto-color-emoji
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",  # Arch: noto-fonts-emoji
    "/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf",  # Fedora: google-noto-emoji-color-fonts
    "/usr/local/share/fonts/NotoColorEmoji.ttf",
    "~/.local/share/fonts/NotoColorEmoji.ttf",
)
INSTALL_HINT = "apt-get install fonts-noto-color-emoji"
# Class indices: Unicode's emoji groups in emoji-test.txt's order, except that Component (skin
# tones and hair styles alone, 9 items) is last so that indices 0..8 are the picture groups.
GROUPS: tuple[str, ...] = (
    "Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places",
    "Activities", "Objects", "Symbols", "Flags", "Component",
)
SPLITS: tuple[str, ...] = ("train", "heldout", "all")
CANVAS = 136  # the font's bitmaps are 136x128 at 109 ppem; they are centred on a square of this side
MIN_SIZE, MAX_SIZE = 16, CANVAS
_GROUP_CODES = ("smileys", "people", "animals", "food", "travel", "activities", "objects", "symbols",
                "flags", "component")

# Group of a single code point: "START:group" means every code point from START (hex) up to the
# next entry's START belongs to `group`. Derived from the code-point runs of Unicode's
# emoji-test.txt 15.0 (Debian's `unicode-data` package, /usr/share/unicode/emoji/emoji-test.txt):
# every single-code-point emoji of Emoji 15.0 (and of 15.1, which added sequences only) gets its
# exact group; a code point that is not an emoji gets the group of the run before it (below U+00A9,
# i.e. '#', '*' and digits, and U+1F1E6-1F1FF, lone regional indicator letters: Symbols).
# Blocks, for orientation: 2000-2BFF symbols and dingbats (mixed), 1F000-1F2FF game tiles and
# enclosed letters, 1F300-1F5FF miscellaneous symbols and pictographs (mixed), 1F600-1F64F
# emoticons, 1F680-1F6FF transport and map, 1F7E0-1F7FF geometric shapes, 1F900-1F9FF and
# 1FA70-1FAFF supplemental symbols and pictographs (mixed). `group_breaks_from_emoji_test`
# rebuilds this table from an emoji-test.txt, and a test compares the two where the file exists.
_GROUP_BREAKS_TEXT = """
0:symbols 231A:travel 2328:objects 23CF:symbols 23F0:travel 23F8:symbols 2600:travel
260E:objects 2611:symbols 2614:travel 2615:food 2618:animals 261D:people 2620:smileys
2622:symbols 2639:smileys 2640:symbols 265F:activities 2668:travel 267B:symbols 2692:objects
2693:travel 2694:objects 2695:symbols 2696:objects 269B:symbols 26A1:travel 26A7:symbols
26B0:objects 26BD:activities 26C4:travel 26CE:symbols 26CF:objects 26D4:symbols 26E9:travel
26F3:activities 26F4:travel 26F7:people 26F8:activities 26F9:people 26FA:travel 2702:objects
2705:symbols 2708:travel 2709:objects 270A:people 270F:objects 2714:symbols 2728:activities
2733:symbols 2744:travel 2747:symbols 2763:smileys 2795:symbols 2B50:travel 2B55:symbols
1F004:activities 1F170:symbols 1F300:travel 1F32D:food 1F331:animals 1F336:food 1F337:animals
1F33D:food 1F33E:animals 1F345:food 1F380:activities 1F382:food 1F383:activities 1F385:people
1F386:activities 1F38C:flags 1F38D:activities 1F392:objects 1F396:activities 1F399:objects
1F39F:activities 1F3A0:travel 1F3A3:activities 1F3A4:objects 1F3A6:symbols 1F3A7:objects
1F3A8:activities 1F3A9:objects 1F3AA:travel 1F3AB:activities 1F3AC:objects 1F3AD:activities
1F3B5:objects 1F3BD:activities 1F3C1:flags 1F3C2:people 1F3C5:activities 1F3C7:people
1F3C8:activities 1F3CA:people 1F3CD:travel 1F3CF:activities 1F3D4:travel 1F3E7:symbols
1F3E8:travel 1F3EE:objects 1F3EF:travel 1F3F3:flags 1F3F5:animals 1F3F7:objects 1F3F8:activities
1F3F9:objects 1F3FA:food 1F3FB:component 1F400:animals 1F440:people 1F451:objects 1F463:people
1F479:smileys 1F47C:people 1F47D:smileys 1F481:people 1F484:objects 1F485:people 1F488:travel
1F489:objects 1F48B:smileys 1F48D:objects 1F48F:people 1F490:animals 1F491:people 1F492:travel
1F493:smileys 1F4A0:symbols 1F4A1:objects 1F4A2:smileys 1F4A3:objects 1F4A4:smileys 1F4A7:travel
1F4A8:smileys 1F4AA:people 1F4AB:smileys 1F4AE:animals 1F4AF:smileys 1F4B0:objects 1F4B1:symbols
1F4B3:objects 1F4BA:travel 1F4BB:objects 1F4DB:symbols 1F4DC:objects 1F4F3:symbols 1F4F7:objects
1F500:symbols 1F507:objects 1F518:symbols 1F525:travel 1F526:objects 1F52A:food 1F52B:activities
1F52C:objects 1F52E:activities 1F52F:symbols 1F54A:animals 1F54B:travel 1F54E:symbols
1F550:travel 1F56F:objects 1F570:travel 1F573:smileys 1F574:people 1F576:objects 1F577:animals
1F579:activities 1F57A:people 1F587:objects 1F590:people 1F5A4:smileys 1F5A5:objects
1F5BC:activities 1F5C2:objects 1F5E3:people 1F5E8:smileys 1F5F3:objects 1F5FA:travel
1F5FF:objects 1F600:smileys 1F645:people 1F648:smileys 1F64B:people 1F680:travel 1F6A3:people
1F6A4:travel 1F6A9:flags 1F6AA:objects 1F6AB:symbols 1F6AC:objects 1F6AD:symbols 1F6B2:travel
1F6B3:symbols 1F6B4:people 1F6B7:symbols 1F6BD:objects 1F6BE:symbols 1F6BF:objects 1F6C0:people
1F6C1:objects 1F6C2:symbols 1F6CB:objects 1F6CC:people 1F6CD:objects 1F6CE:travel 1F6CF:objects
1F6D0:symbols 1F6D1:travel 1F6D2:objects 1F6D5:travel 1F6D7:objects 1F6DC:symbols 1F6DD:travel
1F6E0:objects 1F6E2:travel 1F6F7:activities 1F6F8:travel 1F7E0:symbols 1F90C:people
1F90D:smileys 1F90F:people 1F910:smileys 1F918:people 1F920:smileys 1F926:people 1F927:smileys
1F930:people 1F93F:activities 1F940:animals 1F941:objects 1F942:food 1F945:activities 1F950:food
1F970:smileys 1F977:people 1F978:smileys 1F97B:objects 1F980:food 1F981:animals 1F990:food
1F992:animals 1F99E:food 1F99F:animals 1F9AA:food 1F9AB:animals 1F9AF:objects 1F9B0:component
1F9B4:people 1F9BA:objects 1F9BB:people 1F9BC:travel 1F9BE:people 1F9C0:food 1F9CC:people
1F9D0:smileys 1F9D1:people 1F9E1:smileys 1F9E2:objects 1F9E7:activities 1F9EA:objects
1F9ED:travel 1F9EE:objects 1F9F1:travel 1F9F2:objects 1F9F3:travel 1F9F4:objects
1F9F5:activities 1F9F7:objects 1F9F8:activities 1F9F9:objects 1FA75:smileys 1FA78:objects
1FA80:activities 1FA82:travel 1FA83:objects 1FA84:activities 1FA87:objects 1FA90:travel
1FA91:objects 1FAA1:activities 1FAA3:objects 1FAA8:travel 1FAA9:activities 1FAAA:objects
1FAAF:symbols 1FAB0:animals 1FAB5:travel 1FAB6:animals 1FAC0:people 1FACE:animals 1FAD0:food
1FAE0:smileys 1FAE6:people 1FAE7:objects 1FAE8:smileys 1FAF0:people
"""


@dataclass(frozen=True)
class Emoji:
    """One glyph of the font: its code-point sequence, glyph id and group (index into GROUPS)."""

    sequence: tuple[int, ...]
    glyph_id: int
    group: int

    @property
    def name(self) -> str:
        """File-name-safe name, e.g. 'u1f600' or 'u1f468_200d_1f469' (Noto's own naming)."""
        return "u" + "_".join(f"{cp:x}" for cp in self.sequence)

    @property
    def text(self) -> str:
        return "".join(map(chr, self.sequence))


# ---------------------------------------------------------------------------------------- groups


def _parse_breaks(text: str) -> tuple[list[int], list[int]]:
    starts, groups = [], []
    for token in text.split():
        start, code = token.split(":")
        starts.append(int(start, 16))
        groups.append(_GROUP_CODES.index(code))
    if starts != sorted(starts):
        raise AssertionError("_GROUP_BREAKS_TEXT must be sorted by code point")
    return starts, groups


_BREAK_STARTS, _BREAK_GROUPS = _parse_breaks(_GROUP_BREAKS_TEXT)
_REGIONAL = range(0x1F1E6, 0x1F200)
_TAGS = range(0xE0020, 0xE0080)
# The only emoji-test.txt 15.0 sequence whose group differs from its first code point's:
# eye in speech bubble (eye, U+1F441, is People & Body; the sequence is Smileys & Emotion).
_SEQUENCE_GROUPS = {(0x1F441, 0x200D, 0x1F5E8): GROUPS.index("Smileys & Emotion")}


def emoji_group(sequence: Sequence[int]) -> int:
    """Index into GROUPS of an emoji given as code points.

    Two regional indicators or a tag sequence: Flags; otherwise the group of the first code point
    (U+FE0F ignored) from `_GROUP_BREAKS_TEXT`, which puts keycaps ('#', '*', digits) in Symbols
    and ZWJ / skin-tone sequences with their base emoji. This agrees with emoji-test.txt 15.0 for
    every one of its sequences (tested where the file exists).
    """
    core = tuple(cp for cp in sequence if cp != 0xFE0F)
    if not core:
        raise ValueError("an emoji needs at least one code point other than U+FE0F")
    if core in _SEQUENCE_GROUPS:
        return _SEQUENCE_GROUPS[core]
    if len(core) == 2 and all(cp in _REGIONAL for cp in core) or any(cp in _TAGS for cp in core[1:]):
        return GROUPS.index("Flags")
    return _BREAK_GROUPS[bisect.bisect_right(_BREAK_STARTS, core[0]) - 1]


def read_emoji_test(path: str | Path) -> dict[tuple[int, ...], int]:
    """Fully-qualified and component entries of an emoji-test.txt: {code points: index into GROUPS}."""
    table, group = {}, None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = GROUPS.index(line.split(":", 1)[1].strip())
        elif line.strip() and not line.startswith("#"):
            points, status = (part.strip() for part in line.split("#", 1)[0].split(";"))
            if status in ("fully-qualified", "component"):
                table[tuple(int(cp, 16) for cp in points.split())] = group
    return table


def group_breaks_from_emoji_test(path: str | Path) -> list[tuple[int, int]]:
    """(start code point, group) runs of the single-code-point emoji of an emoji-test.txt."""
    single = {}
    for sequence, group in read_emoji_test(path).items():
        core = tuple(cp for cp in sequence if cp != 0xFE0F)
        if len(core) == 1:
            single[core[0]] = group
    breaks: list[tuple[int, int]] = []
    for cp in sorted(single):
        if not breaks or breaks[-1][1] != single[cp]:
            breaks.append((cp, single[cp]))
    return breaks


# ------------------------------------------------------------------------------------------ font


def find_font(path: str | Path | None = None) -> Path:
    """The emoji font: `path` if given, else $GENACCEL_EMOJI_FONT if set, else the first of FONT_PATHS.

    Raises FileNotFoundError, with one line naming every place looked in and how to install it.
    """
    if path is not None:
        candidates, source = [Path(path).expanduser()], "the given path"
    elif os.environ.get(FONT_ENV):
        candidates, source = [Path(os.environ[FONT_ENV]).expanduser()], f"${FONT_ENV}"
    else:
        candidates, source = [Path(p).expanduser() for p in FONT_PATHS], f"${FONT_ENV} (unset) and"
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"emoji font not found: looked in {source} {', '.join(map(str, candidates))}; install it with "
        f"`{INSTALL_HINT}` or set {FONT_ENV} to a copy of NotoColorEmoji.ttf")


class _Reader:
    """Big-endian struct reads into the font's bytes with bounds checks."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, fmt: str, offset: int) -> tuple:
        size = struct.calcsize(">" + fmt)
        if offset < 0 or offset + size > len(self.data):
            raise ValueError(f"a table points past the end of the file (offset {offset})")
        return struct.unpack_from(">" + fmt, self.data, offset)

    def u16(self, offset: int) -> int:
        return self.read("H", offset)[0]

    def u32(self, offset: int) -> int:
        return self.read("I", offset)[0]


class EmojiFont:
    """The parsed font: cmap, GSUB ligatures and the CBDT bitmap locations of its largest strike."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        data = self.path.read_bytes()
        self.sha256 = hashlib.sha256(data).hexdigest()
        try:
            self._parse(_Reader(data))
        except (ValueError, struct.error, KeyError, IndexError) as error:
            raise ValueError(f"{self.path} is not a readable colour-emoji (CBDT) font: {error}") from None

    def _parse(self, reader: _Reader) -> None:
        version, num_tables = reader.read("IH", 0)
        if version not in (0x00010000, 0x74727565):  # TrueType outlines / 'true'
            raise ValueError(f"not a TrueType font file (sfnt version 0x{version:08x})")
        tables = {}
        for k in range(num_tables):
            tag, _, offset, length = reader.read("4sIII", 12 + 16 * k)
            tables[tag.decode("latin-1")] = (offset, length)
        missing = [tag for tag in ("cmap", "CBLC", "CBDT") if tag not in tables]
        if missing:
            raise ValueError(f"no {'/'.join(missing)} table (only CBDT bitmap colour fonts are supported)")
        self.cmap = self._read_cmap(reader, tables["cmap"][0])
        self.ligatures = self._read_ligatures(reader, tables["GSUB"][0]) if "GSUB" in tables else []
        self.bitmaps = self._read_bitmap_locations(reader, tables["CBLC"][0], tables["CBDT"][0])
        self._data = reader.data

    @staticmethod
    def _read_cmap(reader: _Reader, base: int) -> dict[int, int]:
        """{code point: glyph id} from the format 12 (full Unicode) subtable."""
        _, count = reader.read("HH", base)
        for k in range(count):
            platform, encoding, offset = reader.read("HHI", base + 4 + 8 * k)
            if (platform, encoding) in ((3, 10), (0, 4), (0, 6)) and reader.u16(base + offset) == 12:
                start = base + offset
                num_groups = reader.u32(start + 12)
                cmap = {}
                for g in range(num_groups):
                    first, last, glyph = reader.read("III", start + 16 + 12 * g)
                    for cp in range(first, last + 1):
                        cmap[cp] = glyph + cp - first
                return cmap
        raise ValueError("no format 12 (full Unicode) cmap subtable")

    @staticmethod
    def _read_ligatures(reader: _Reader, base: int) -> list[tuple[tuple[int, ...], int]]:
        """(component glyph ids, ligature glyph id) of every LigatureSubst (type 4) lookup."""
        lookup_list = base + reader.u16(base + 8)
        ligatures = []
        for k in range(reader.u16(lookup_list)):
            lookup = lookup_list + reader.u16(lookup_list + 2 + 2 * k)
            kind, _, num_subtables = reader.read("HHH", lookup)
            for s in range(num_subtables):
                subtable = lookup + reader.u16(lookup + 6 + 2 * s)
                sub_kind = kind
                if kind == 7:  # extension: the real subtable sits at a 32-bit offset
                    _, sub_kind, extension = reader.read("HHI", subtable)
                    subtable += extension
                if sub_kind != 4:
                    continue
                coverage = EmojiFont._read_coverage(reader, subtable + reader.u16(subtable + 2))
                for first, set_offset in zip(coverage, reader.read(f"{reader.u16(subtable + 4)}H", subtable + 6)):
                    ligature_set = subtable + set_offset
                    for lig_offset in reader.read(f"{reader.u16(ligature_set)}H", ligature_set + 2):
                        glyph, count = reader.read("HH", ligature_set + lig_offset)
                        rest = reader.read(f"{count - 1}H", ligature_set + lig_offset + 4)
                        ligatures.append(((first, *rest), glyph))
        return ligatures

    @staticmethod
    def _read_coverage(reader: _Reader, offset: int) -> list[int]:
        fmt, count = reader.read("HH", offset)
        if fmt == 1:
            return list(reader.read(f"{count}H", offset + 4))
        if fmt == 2:
            glyphs = []
            for r in range(count):
                start, end, _ = reader.read("HHH", offset + 4 + 6 * r)
                glyphs.extend(range(start, end + 1))
            return glyphs
        raise ValueError(f"unknown coverage format {fmt}")

    @staticmethod
    def _read_bitmap_locations(reader: _Reader, cblc: int, cbdt: int) -> dict[int, tuple[int, int, int]]:
        """{glyph id: (image format, start, end) of its glyph data in the file} for the largest strike."""
        num_sizes = reader.u32(cblc + 4)
        if num_sizes == 0:
            raise ValueError("CBLC has no bitmap strike")
        strikes = [cblc + 8 + 48 * k for k in range(num_sizes)]
        strike = max(strikes, key=lambda record: reader.read("B", record + 45)[0])  # ppemY
        array_offset, _, num_subtables = reader.read("III", strike)
        array = cblc + array_offset
        locations = {}
        for k in range(num_subtables):
            first, last, extra = reader.read("HHI", array + 8 * k)
            index_format, image_format, data_offset = reader.read("HHI", array + extra)
            if index_format not in (1, 3) or image_format not in (17, 18):
                raise ValueError(f"unsupported CBLC index format {index_format} / image format {image_format} "
                                 "(supported: index 1 or 3, image 17 or 18: PNG with metrics)")
            width = "I" if index_format == 1 else "H"
            offsets = reader.read(f"{last - first + 2}{width}", array + extra + 8)
            for glyph in range(first, last + 1):
                start, end = offsets[glyph - first], offsets[glyph - first + 1]
                if end > start:
                    locations[glyph] = (image_format, cbdt + data_offset + start, cbdt + data_offset + end)
        return locations

    def bitmap(self, glyph_id: int) -> Image.Image | None:
        """The glyph's RGBA bitmap (136x128 for Noto), or None where the glyph has none."""
        if glyph_id not in self.bitmaps:
            return None
        image_format, start, end = self.bitmaps[glyph_id]
        header = 5 if image_format == 17 else 8  # small / big glyph metrics
        (length,) = struct.unpack_from(">I", self._data, start + header)
        png = self._data[start + header + 4:min(end, start + header + 4 + length)]
        try:
            with Image.open(io.BytesIO(png)) as image:
                return image.convert("RGBA")
        except OSError as error:
            raise ValueError(f"{self.path}: the bitmap of glyph {glyph_id} cannot be decoded: {error}") from None

    def sequences(self) -> dict[int, list[tuple[int, ...]]]:
        """{glyph id: every code-point sequence (single code points and ligatures) that gives it}."""
        code_points: dict[int, int] = {}
        for cp, glyph in sorted(self.cmap.items(), reverse=True):
            code_points[glyph] = cp  # a glyph of several code points reads as the lowest
        by_glyph: dict[int, list[tuple[int, ...]]] = {}
        for cp, glyph in self.cmap.items():
            by_glyph.setdefault(glyph, []).append((cp,))
        for components, glyph in self.ligatures:
            if all(component in code_points for component in components):
                by_glyph.setdefault(glyph, []).append(tuple(code_points[c] for c in components))
        return by_glyph


_MODIFIERS = range(0x1F3FB, 0x1F400)  # skin tones
_COMPONENTS = (*_MODIFIERS, 0x1F9B0, 0x1F9B1, 0x1F9B2, 0x1F9B3)  # skin tones and hair styles
_ZWJ = 0x200D


def _irregularity(sequence: tuple[int, ...]) -> int:
    """How far a sequence is from a well-formed emoji: the font also maps private-use code points
    and malformed orders (hair + ZWJ + person, ZWJ + skin tone, trailing tag first) to glyphs."""
    count = sum(0xE000 <= cp <= 0xF8FF or cp >= 0xF0000 for cp in sequence)  # private use
    if len(sequence) > 1:
        count += sequence[0] in _COMPONENTS or sequence[0] in (_ZWJ, 0xFE0F, 0x20E3) or sequence[0] in _TAGS
        count += sum(a == _ZWJ and b in _MODIFIERS for a, b in zip(sequence, sequence[1:]))
    return count


def _rtl_alias(sequence: tuple[int, ...]) -> tuple[int, ...]:
    """The right-to-left alias Noto's build adds for a ZWJ sequence (its `get_rtl_seq`): the code
    points reversed, then each skin tone moved one place right as the list is walked (the move
    cascades, so a tone can travel past its base: the aliases are Noto's, malformed or not)."""
    if _ZWJ not in sequence:
        return ()
    points = list(reversed(sequence))
    for k in range(1, len(points)):
        if points[k - 1] in _MODIFIERS:
            points[k - 1], points[k] = points[k], points[k - 1]
    return tuple(points)


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _name_glyphs(by_glyph: dict[int, list[tuple[int, ...]]]) -> dict[int, tuple[int, ...]]:
    """One code-point sequence per glyph: the emoji it draws, not one of the font's aliases.

    Besides a glyph's real sequence(s), the cmap and ligatures hold private-use code points,
    malformed orders and, for every ZWJ sequence S, its right-to-left alias R(S) (`_rtl_alias`).
    Steps: keep the most regular sequences; drop each one that is the alias R(S) of another S
    unless the two are each other's alias; where such a pair is left (about 240 glyphs: 2-part
    sequences like U+26F9 ZWJ U+2640, families without skin tones), take the one that lies between
    the sequences of the nearest decided glyphs before and after it in glyph-id order (Noto stores
    its glyphs sorted by sequence), then the one sharing the longer prefix with them, then the
    longest and lowest. On Noto Color Emoji 2.042 this names every glyph that emoji-test.txt 15.0
    lists exactly as it does (tested where the file exists).
    """
    candidates = {}
    for glyph, sequences in by_glyph.items():
        least = min(map(_irregularity, sequences))
        kept = set(s for s in sequences if _irregularity(s) == least)
        aliases = {_rtl_alias(s): s for s in kept if _rtl_alias(s) in kept and _rtl_alias(s) != s}
        dropped = {a for a, s in aliases.items() if _rtl_alias(a) != s}  # one-way aliases
        kept -= dropped
        candidates[glyph] = sorted(kept, key=lambda s: (-len(s), s))
    decided = {g: c[0] for g, c in candidates.items() if len(c) == 1}
    order = sorted(decided)
    names = dict(decided)
    for glyph, choice in candidates.items():
        if len(choice) == 1:
            continue
        k = bisect.bisect_left(order, glyph)
        before = decided[order[k - 1]] if k > 0 else ()
        after = decided[order[k]] if k < len(order) else (0x110000,)
        inside = [s for s in choice if before <= s <= after] or choice
        names[glyph] = max(inside, key=lambda s: (max(_common_prefix(s, before), _common_prefix(s, after)),
                                                  len(s), [-cp for cp in s]))
    return names


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int) -> tuple[EmojiFont, tuple[Emoji, ...]]:
    font = EmojiFont(path)
    drawable, pictures, seen = {}, {}, set()
    for glyph, sequences in sorted(font.sequences().items()):
        bitmap = font.bitmap(glyph)
        if bitmap is None or bitmap.getchannel("A").getextrema()[1] == 0:
            continue  # nothing to draw: space, joiners, tag characters
        drawable[glyph] = sequences
        pictures[glyph] = hashlib.sha256(bitmap.tobytes()).digest()
    emojis = []
    for glyph, sequence in sorted(_name_glyphs(drawable).items(), key=lambda item: item[1]):
        pixels = pictures[glyph]
        if pixels in seen:
            continue  # the same picture as a glyph already kept (e.g. snowboarder with skin tones)
        seen.add(pixels)
        emojis.append(Emoji(sequence, glyph, emoji_group(sequence)))
    if not emojis:
        raise ValueError(f"{path} has no colour glyphs")
    return font, tuple(emojis)


def load_font(font: str | Path | None = None) -> tuple[EmojiFont, tuple[Emoji, ...]]:
    """The parsed font and its drawable glyphs sorted by code points (cached per file)."""
    path = find_font(font).resolve()
    stat = path.stat()
    return _load(str(path), stat.st_mtime_ns, stat.st_size)


def list_emoji(font: str | Path | None = None) -> tuple[Emoji, ...]:
    """Every drawable glyph of the font, sorted by code-point sequence."""
    return load_font(font)[1]


# ------------------------------------------------------------------------------- render and split


def _check_size(size: int, low: int = MIN_SIZE, high: int = MAX_SIZE) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or not low <= size <= high:
        raise ValueError(f"size must be an int in [{low}, {high}] pixels, got {size!r}")


def parse_colour(colour: str | Sequence[int]) -> tuple[int, int, int]:
    """An RGB triple from a Pillow colour name / '#rrggbb' string or a 3-sequence of 0..255 ints."""
    if isinstance(colour, str):
        try:
            return ImageColor.getrgb(colour)[:3]
        except ValueError:
            raise ValueError(f"background must be a colour name or '#rrggbb', got {colour!r}") from None
    rgb = tuple(colour)
    if len(rgb) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in rgb):
        raise ValueError(f"background must be 3 ints in [0, 255], got {colour!r}")
    return rgb


def emoji_sprite(emoji: Emoji, font: str | Path | None = None) -> Image.Image:
    """The glyph as an RGBA image centred on a transparent CANVAS x CANVAS square."""
    bitmap = load_font(font)[0].bitmap(emoji.glyph_id)
    if bitmap is None:
        raise ValueError(f"glyph {emoji.glyph_id} ({emoji.name}) has no bitmap")
    side = max(CANVAS, *bitmap.size)
    sprite = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    sprite.paste(bitmap, ((side - bitmap.width) // 2, (side - bitmap.height) // 2))
    return sprite


def render_emoji(emoji: Emoji, size: int = 64, background: str | Sequence[int] = "white",
                 font: str | Path | None = None) -> Image.Image:
    """The glyph as a size x size RGB image over `background` (Lanczos downscale from 136 px)."""
    _check_size(size)
    sprite = emoji_sprite(emoji, font)
    image = Image.new("RGBA", sprite.size, parse_colour(background) + (255,))
    image.alpha_composite(sprite)
    image = image.convert("RGB")
    return image if image.size == (size, size) else image.resize((size, size), Image.Resampling.LANCZOS)


def split_emoji(emojis: Sequence[Emoji], seed: int = 0, split: str = "train",
                heldout_fraction: float = 0.1) -> list[Emoji]:
    """The glyphs of `split`, in the order given: the first round(N * fraction) of the glyphs sorted
    by sha256(seed, name) are held out, the rest are train ('all': every glyph)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction!r}")
    if len(emojis) < 2:
        raise ValueError(f"need at least 2 glyphs so both splits are non-empty, got {len(emojis)}")
    if split == "all":
        return list(emojis)
    order = sorted(emojis, key=lambda e: hashlib.sha256(f"{seed}:{e.name}".encode()).digest())
    heldout = {e.name for e in order[:max(1, round(len(emojis) * heldout_fraction))]}
    return [e for e in emojis if (e.name in heldout) == (split == "heldout")]


# ----------------------------------------------------------------------------------------- files


def write_metadata(out_dir: Path, font: EmojiFont, **settings) -> None:
    """`emoji.json`: the font file (path, sha256) and settings a folder was made with."""
    info = {"font": str(font.path), "font_sha256": font.sha256, **settings}
    (out_dir / "emoji.json").write_text(json.dumps(info, indent=1) + "\n")


def save_emoji(out_dir: str | Path, size: int = 64, seed: int = 0, heldout_fraction: float = 0.1,
               background: str | Sequence[int] = "white", limit: int | None = None,
               font: str | Path | None = None, progress: bool = True) -> dict[str, int]:
    """Render every glyph into `out_dir/train` and `out_dir/heldout`: PNGs named `NNNN_<name>.png`
    (NNNN: place in the sorted glyph list), labels.csv, classes.txt (GROUPS) and glyphs.csv
    (file,sequence,text), plus `out_dir/emoji.json`. `limit` keeps the first `limit` of each split.

    Returns the number of images written per split.
    """
    from tqdm.auto import tqdm

    _check_size(size)
    background = parse_colour(background)
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    parsed, emojis = load_font(font)
    place = {e.name: k for k, e in enumerate(emojis)}
    out_dir = Path(out_dir)
    counts = {}
    for split in ("train", "heldout"):
        chosen = split_emoji(emojis, seed, split, heldout_fraction)[:limit]
        folder = out_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        files, labels, rows = [], [], ["file,sequence,text"]
        for emoji in tqdm(chosen, desc=f"emoji/{split}", disable=not progress):
            name = f"{place[emoji.name]:04d}_{emoji.name}.png"
            render_emoji(emoji, size, background, parsed.path).save(folder / name)
            files.append(name)
            labels.append(emoji.group)
            rows.append(f"{name},{emoji.name},{emoji.text}")
        write_labels(folder, files, labels, GROUPS)
        (folder / "glyphs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        counts[split] = len(files)
    write_metadata(out_dir, parsed, kind="emoji", size=size, seed=seed, heldout_fraction=heldout_fraction,
                   background="#%02x%02x%02x" % background, limit=limit, glyphs=len(emojis), **counts)
    return counts


class EmojiDataset(Dataset):
    """A split folder written by `save_emoji`: items are (float32 tensor (3, size, size) in [-1, 1], group).

    `size` None keeps the stored size; another size resizes with Lanczos. `augment` (train split
    only) shifts each image by up to size/16 px and scales it by 0.9..1.1 around its centre, filling
    with the background; nothing is flipped or rotated (emoji with text, arrows and flags are not
    mirror-symmetric). The augmentation of item i is drawn from (seed, epoch, i); call `set_epoch`.
    """

    classes: tuple[str, ...] = GROUPS

    def __init__(self, root: str | Path, split: str = "train", size: int | None = None,
                 augment: bool = False, seed: int = 0) -> None:
        from genaccel.data.image_folder import ImageFolderDataset

        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        if augment and split != "train":
            raise ValueError("augment is for the train split only; the held-out split is used as is")
        if size is not None:
            _check_size(size)
        self.root, self.split, self.augment, self.seed, self.epoch = Path(root), split, augment, seed, 0
        self.images = ImageFolderDataset(self.root / split)
        stored = self.images.size[0]
        self.size = stored if size is None else size
        info = self.root / "emoji.json"
        colour = json.loads(info.read_text()).get("background", "white") if info.exists() else "white"
        self.background = parse_colour(colour)

    @property
    def labels(self) -> list[int]:
        return self.images.labels

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def image(self, item: int) -> tuple[Image.Image, int]:
        """The (possibly resized and augmented) PIL image and label of item `item`."""
        image = self.images.image(item)
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.LANCZOS)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, item])
            scale = rng.uniform(0.9, 1.1)
            dx, dy = rng.uniform(-1, 1, size=2) * self.size / 16
            centre = self.size / 2
            # output pixel (x, y) samples input ((x - centre - dx) / scale + centre, ...)
            matrix = (1 / scale, 0, centre - (centre + dx) / scale, 0, 1 / scale, centre - (centre + dy) / scale)
            image = image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.BICUBIC,
                                    fillcolor=self.background)
        return image, self.images.labels[item]

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        image, label = self.image(item)
        return pil_to_tensor(image), label
