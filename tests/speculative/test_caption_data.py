"""The generated captioning task: deterministic images, captions that describe them, a closed vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from genaccel.data.captions import (COLORS, ShapeSpec, build_caption_tokenizer, caption_for, image_to_array,
                                    make_sample)


def test_samples_are_deterministic_per_seed():
    a, b, c = make_sample(7), make_sample(7), make_sample(8)
    assert a.caption == b.caption and np.array_equal(image_to_array(a.image), image_to_array(b.image))
    assert a.caption != c.caption or not np.array_equal(image_to_array(a.image), image_to_array(c.image))


def test_caption_golden_value_and_reading_order():
    shapes = (ShapeSpec("circle", "red", "small", row=2, column=0), ShapeSpec("square", "blue", "large", row=0, column=1))
    assert caption_for(shapes, "white") == (
        "the image shows two shapes . there is a large blue square at the top center . "
        "there is a small red circle at the bottom left . the background is white .")


def test_image_shows_the_background_and_shape_colours():
    sample = make_sample(3, image_size=48)
    pixels = image_to_array(sample.image)
    assert tuple(pixels[0, 0]) == COLORS[sample.background] or any(s.row == 0 and s.column == 0 for s in sample.shapes)
    for spec in sample.shapes:
        cell = 48 // 3
        centre = pixels[spec.row * cell + cell // 2, spec.column * cell + cell // 2]
        assert tuple(centre) == COLORS[spec.color]


def test_tokenizer_covers_every_caption_without_unknown_tokens():
    tokenizer = build_caption_tokenizer()
    unk = tokenizer.unk_token_id
    for seed in range(200):
        caption = make_sample(seed).caption
        ids = tokenizer(caption, add_special_tokens=False)["input_ids"]
        assert unk not in ids
        assert tokenizer.decode(ids) == caption


def test_bad_shape_count_is_rejected():
    with pytest.raises(ValueError, match="max_shapes"):
        make_sample(0, max_shapes=4)
