import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont, features

from genaccel.data import emoji as emoji_module
from genaccel.data.emoji import (FONT_ENV, GROUPS, EmojiDataset, EmojiFont, emoji_group, emoji_sprite, find_font,
                                 group_breaks_from_emoji_test, list_emoji, load_font, read_emoji_test, render_emoji,
                                 save_emoji, split_emoji)

try:
    FONT = find_font()
except FileNotFoundError:
    pytest.skip("fonts-noto-color-emoji is not installed (apt-get install fonts-noto-color-emoji)",
                allow_module_level=True)

EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")  # Debian's unicode-data package
# Noto Color Emoji 2.042 (Debian 12, fonts-noto-color-emoji 2.042-0+deb12u1) has 3,916 drawable,
# distinct glyphs; older releases have fewer, so only a lower bound is asserted.
MIN_GLYPHS = 3000


def _by_name():
    return {e.name: e for e in list_emoji()}


def test_enumeration_finds_thousands_of_named_glyphs_with_groups_in_range():
    emojis = list_emoji()
    assert len(emojis) > MIN_GLYPHS
    names = [e.name for e in emojis]
    assert len(set(names)) == len(names) and len({e.glyph_id for e in emojis}) == len(emojis)
    assert [e.sequence for e in emojis] == sorted(e.sequence for e in emojis)
    assert all(0 <= e.group < len(GROUPS) for e in emojis)
    assert {e.group for e in emojis} == set(range(len(GROUPS)))  # every group is populated
    assert sum(len(e.sequence) > 1 for e in emojis) > 1000  # ZWJ, flags, skin tones come from GSUB
    assert all(emoji_module._irregularity(e.sequence) == 0 for e in emojis)


@pytest.mark.parametrize("name, group", [
    ("u1f600", "Smileys & Emotion"), ("u2764_200d_1f525", "Smileys & Emotion"),
    ("u1f468_200d_1f469_200d_1f467", "People & Body"), ("u26f9_200d_2640", "People & Body"),
    ("u1f44d_1f3fd", "People & Body"), ("u1f436", "Animals & Nature"), ("u1f355", "Food & Drink"),
    ("u1f697", "Travel & Places"), ("u26bd", "Activities"), ("u1f4f1", "Objects"), ("u23_20e3", "Symbols"),
    ("u1f1eb_1f1f7", "Flags"), ("u1f3f3_200d_1f308", "Flags"), ("u1f3f4_e0067_e0062_e0065_e006e_e0067_e007f", "Flags"),
    ("u1f3fb", "Component"),
])
def test_known_glyphs_are_named_in_logical_order_and_grouped(name, group):
    by_name = _by_name()
    assert name in by_name
    assert GROUPS[by_name[name].group] == group


def test_right_to_left_aliases_are_not_used_as_names():
    names = set(_by_name())
    assert "u2640_200d_26f9" not in names and "u1f9b0_200d_1f9d1" not in names
    assert "u1f9d1_200d_1f9b0" in names  # person: red hair


def test_groups_of_sequences_follow_their_first_code_point():
    assert emoji_group((0x1F468, 0x200D, 0x1F4BB)) == GROUPS.index("People & Body")
    assert emoji_group((0x1F415, 0x200D, 0x1F9BA)) == GROUPS.index("Animals & Nature")
    assert emoji_group((0x1F441, 0xFE0F, 0x200D, 0x1F5E8, 0xFE0F)) == GROUPS.index("Smileys & Emotion")
    assert emoji_group((0x1F1E6,)) == GROUPS.index("Symbols")  # a lone regional indicator letter
    with pytest.raises(ValueError, match="at least one code point"):
        emoji_group((0xFE0F,))


@pytest.mark.skipif(not EMOJI_TEST.exists(), reason="unicode-data is not installed (no emoji-test.txt)")
def test_groups_and_names_agree_with_emoji_test_txt():
    table = read_emoji_test(EMOJI_TEST)
    assert all(emoji_group(sequence) == group for sequence, group in table.items())
    assert group_breaks_from_emoji_test(EMOJI_TEST)[1:] == list(zip(emoji_module._BREAK_STARTS,
                                                                    emoji_module._BREAK_GROUPS))[1:]
    official = {tuple(cp for cp in sequence if cp != 0xFE0F): group for sequence, group in table.items()}
    sequences = load_font()[0].sequences()
    for emoji in list_emoji():  # a glyph emoji-test.txt knows by any of its sequences has its name there
        if any(sequence in official for sequence in sequences[emoji.glyph_id]):
            assert official.get(emoji.sequence) == emoji.group, emoji.name


def test_reader_agrees_with_fonttools_where_installed():
    ttlib = pytest.importorskip("fontTools.ttLib")
    font = load_font()[0]
    reference = ttlib.TTFont(str(font.path), lazy=True)
    order = {name: k for k, name in enumerate(reference.getGlyphOrder())}
    assert font.cmap == {cp: order[name] for cp, name in reference.getBestCmap().items()}
    ligatures = set()
    for lookup in reference["GSUB"].table.LookupList.Lookup:
        if lookup.LookupType == 4:
            for subtable in lookup.SubTable:
                for first, entries in subtable.ligatures.items():
                    ligatures |= {((order[first], *map(order.get, e.Component)), order[e.LigGlyph]) for e in entries}
    assert set(font.ligatures) == ligatures


def test_rendering_matches_pillow_text_drawing():
    font = load_font()[0]
    by_name = _by_name()
    cases = [("u1f600", ImageFont.Layout.BASIC)]
    if features.check("raqm"):  # sequences need a shaping layout engine in Pillow
        cases.append(("u1f468_200d_1f469_200d_1f467", ImageFont.Layout.RAQM))
    for name, layout in cases:
        pil_font = ImageFont.truetype(str(font.path), 109, layout_engine=layout)
        drawn = Image.new("RGBA", (136, 128), "white")
        ImageDraw.Draw(drawn).text((0, 0), by_name[name].text, font=pil_font, embedded_color=True)
        ours = Image.new("RGBA", (136, 128), "white")
        ours.alpha_composite(font.bitmap(by_name[name].glyph_id))
        assert np.abs(np.asarray(drawn, dtype=int) - np.asarray(ours, dtype=int)).max() <= 1


def test_rendering_is_deterministic_rgb_of_requested_size_and_not_blank():
    emojis = list_emoji()[::400]
    assert [render_emoji(e, 64).tobytes() for e in emojis] == [render_emoji(e, 64).tobytes() for e in emojis]
    cached, fresh = load_font()[0], EmojiFont(FONT)  # parsing the file again gives the same pixels
    assert all(cached.bitmap(e.glyph_id).tobytes() == fresh.bitmap(e.glyph_id).tobytes() for e in emojis)
    image = render_emoji(emojis[3], 32, background="#102030")
    assert image.mode == "RGB" and image.size == (32, 32)
    assert image.getpixel((0, 0)) == (16, 32, 48)  # the background shows in the margin
    assert all(np.asarray(render_emoji(e, 32)).std() > 5 for e in emojis)
    assert emoji_sprite(emojis[0]).size == (136, 136)
    with pytest.raises(ValueError, match="size must be an int in"):
        render_emoji(emojis[0], 8)
    with pytest.raises(ValueError, match="background"):
        render_emoji(emojis[0], 32, background="not-a-colour")


def test_split_is_disjoint_covers_everything_and_depends_on_the_seed():
    emojis = list_emoji()
    train, heldout = split_emoji(emojis, 0, "train"), split_emoji(emojis, 0, "heldout")
    assert len(heldout) == round(len(emojis) * 0.1)
    assert not {e.name for e in train} & {e.name for e in heldout}
    assert sorted(train + heldout, key=lambda e: e.sequence) == list(emojis)
    assert split_emoji(emojis, 0, "all") == list(emojis)
    assert heldout == split_emoji(emojis, 0, "heldout")
    assert heldout != split_emoji(emojis, 1, "heldout")
    # a glyph's side depends on its own name: dropping glyphs keeps the others' sides (almost all)
    half = emojis[::2]
    before = {e.name for e in heldout} & {e.name for e in half}
    after = {e.name for e in split_emoji(half, 0, "heldout")}
    assert len(before ^ after) <= 0.05 * len(after)
    with pytest.raises(ValueError, match="split must be"):
        split_emoji(emojis, 0, "test")
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_emoji(emojis, 0, "train", 1.0)


def test_make_data_cli_writes_the_layout_and_datasets_read_it_back(tmp_path, capsys):
    from genaccel.cli import main
    from genaccel.data.image_folder import ImageFolderDataset

    out = tmp_path / "emoji"
    assert main(["make-data", "emoji", str(out), "--limit", "6", "--size", "32"]) == 0
    assert '"train": 6, "heldout": 6' in capsys.readouterr().out
    heldout_names = {e.name for e in split_emoji(list_emoji(), 0, "heldout")}
    for split in ("train", "heldout"):
        folder = out / split
        assert len(list(folder.glob("*.png"))) == 6
        assert (folder / "classes.txt").read_text().splitlines() == list(GROUPS)
        with (folder / "glyphs.csv").open(encoding="utf-8") as handle:
            names = [row["sequence"] for row in csv.DictReader(handle)]
        assert all((name in heldout_names) == (split == "heldout") for name in names)
        images = ImageFolderDataset(folder)  # what `genaccel train --data OUT/train` reads
        assert images.size == (32, 32) and images.classes == list(GROUPS)
    by_name = _by_name()
    dataset = EmojiDataset(out, "train")
    assert len(dataset) == 6 and dataset.size == 32
    tensor, label = dataset[0]
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32 and -1 <= tensor.min() <= tensor.max() <= 1
    name = dataset.images.files[0].stem.split("_", 1)[1]
    assert label == by_name[name].group
    expected = torch.from_numpy(np.array(render_emoji(by_name[name], 32))).permute(2, 0, 1).float()
    assert torch.equal(((tensor + 1) * 127.5).round(), expected)
    assert EmojiDataset(out, "heldout", size=16)[0][0].shape == (3, 16, 16)


def test_augmentation_is_seeded_per_epoch_small_and_train_only(tmp_path):
    save_emoji(tmp_path, size=32, limit=3, progress=False)
    dataset = EmojiDataset(tmp_path, "train", augment=True, seed=5)
    plain = EmojiDataset(tmp_path, "train")[1][0]
    first = dataset[1][0]
    assert torch.equal(first, EmojiDataset(tmp_path, "train", augment=True, seed=5)[1][0])
    assert not torch.equal(first, plain)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[1][0], first)
    assert (first - plain).abs().mean() < (plain.flip(-1) - plain).abs().mean()  # a nudge, not a mirror
    with pytest.raises(ValueError, match="train split only"):
        EmojiDataset(tmp_path, "heldout", augment=True)


def test_missing_or_corrupt_font_is_one_clear_line(tmp_path, monkeypatch, capsys):
    from genaccel.cli import main

    monkeypatch.setenv(FONT_ENV, str(tmp_path / "nope.ttf"))
    assert main(["make-data", "emoji", str(tmp_path / "a"), "--limit", "2"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "nope.ttf" in error and "apt-get install fonts-noto-color-emoji" in error
    monkeypatch.delenv(FONT_ENV)
    monkeypatch.setattr(emoji_module, "FONT_PATHS", (str(tmp_path / "x.ttf"), str(tmp_path / "y.ttf")))
    with pytest.raises(FileNotFoundError, match=r"\(unset\).*x\.ttf, .*y\.ttf; install it with"):
        find_font()
    monkeypatch.setenv(FONT_ENV, str(FONT))  # the variable picks another copy
    assert find_font() == FONT
    garbage = tmp_path / "garbage.ttf"
    garbage.write_bytes(b"\x00\x01\x00\x00" + bytes(200))
    truncated = tmp_path / "truncated.ttf"
    truncated.write_bytes(FONT.read_bytes()[:65536])
    for bad in (garbage, truncated):
        assert main(["make-data", "emoji", str(tmp_path / "b"), "--font", str(bad)]) == 2
        error = capsys.readouterr().err.strip()
        assert "\n" not in error and f"{bad} is not a readable colour-emoji (CBDT) font" in error
    with pytest.raises(ValueError, match="CBDT"):
        EmojiFont(garbage)


def test_make_data_rejects_options_of_other_kinds(tmp_path, capsys):
    from genaccel.cli import main

    assert main(["make-data", "emoji", str(tmp_path), "--num", "10"]) == 2
    assert "--limit" in capsys.readouterr().err
    assert main(["make-data", "shapes", str(tmp_path), "--background", "red"]) == 2
    assert "--background applies to emoji only" in capsys.readouterr().err


def test_emoji_clips_move_have_the_frame_count_and_heldout_clips_use_heldout_glyphs(tmp_path):
    from genaccel.data.emoji_videos import EmojiVideoDataset, render_emoji_video, save_emoji_videos

    frames, label, glyphs = render_emoji_video(0, "train", 1, size=32, num_frames=16)
    assert frames.shape == (16, 32, 32, 3) and frames.dtype == np.uint8
    assert label == glyphs[0].group and 1 <= len(glyphs) <= 2
    assert np.array_equal(frames, render_emoji_video(0, "train", 1, size=32, num_frames=16)[0])
    steps = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert (steps > 0).all()  # every frame differs from the one before
    assert steps.mean() < np.abs(frames[-1].astype(np.int16) - frames[0].astype(np.int16)).mean()  # smoothly
    counts = save_emoji_videos(tmp_path, num_videos=10, size=16, num_frames=16, seed=3, progress=False)
    assert counts == {"train": 9, "heldout": 1}
    heldout = {e.name for e in split_emoji(list_emoji(), 3, "heldout")}
    for split in ("train", "heldout"):
        with (tmp_path / split / "glyphs.csv").open() as handle:
            used = [name for row in csv.DictReader(handle) for name in row["glyphs"].split()]
        assert used and all((name in heldout) == (split == "heldout") for name in used)
    assert all(not (name in heldout) for index in range(20)
               for name in (e.name for e in render_emoji_video(3, "train", index, 16, 2)[2]))
    assert all(name in heldout for index in range(20)
               for name in (e.name for e in render_emoji_video(3, "heldout", index, 16, 2)[2]))
    clips = EmojiVideoDataset(tmp_path, "heldout")
    clip, clip_label = clips[0]
    assert clip.shape == (16, 3, 16, 16) and clip_label == render_emoji_video(3, "heldout", 0, 16, 16)[1]
    stored = np.load(tmp_path / "heldout" / "000000.npy", allow_pickle=False)
    assert hashlib.sha256(stored.tobytes()).digest() == hashlib.sha256(
        render_emoji_video(3, "heldout", 0, 16, 16)[0].tobytes()).digest()
    with pytest.raises(ValueError, match="num_frames"):
        render_emoji_video(0, "train", 0, num_frames=1)


def test_emoji_videos_cli(tmp_path):
    from genaccel.cli import main

    assert main(["make-data", "emoji-videos", str(tmp_path), "--num", "4", "--size", "16", "--frames", "16"]) == 0
    clip = np.load(next((tmp_path / "heldout").glob("*.npy")), allow_pickle=False)
    assert clip.shape == (16, 16, 16, 3)
    assert main(["make-data", "emoji-videos", str(tmp_path), "--size", "200"]) == 2
