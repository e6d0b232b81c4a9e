import numpy as np
import pytest

from genaccel.data.shapes import SHAPE_CLASSES
from genaccel.data.videos import render_video, save_videos


def test_clip_shape_dtype_label_and_determinism():
    frames, label = render_video(5, 9, size=32, num_frames=16)
    assert frames.shape == (16, 32, 32, 3) and frames.dtype == np.uint8
    assert label == 9 % len(SHAPE_CLASSES)
    again, _ = render_video(5, 9, size=32, num_frames=16)
    assert np.array_equal(frames, again)
    assert not np.array_equal(frames, render_video(6, 9, size=32, num_frames=16)[0])


def test_frames_move_but_stay_correlated():
    frames, _ = render_video(0, 3, size=32, num_frames=16)
    steps = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert (steps > 0).all()  # every frame differs from the previous one
    far = np.abs(frames[-1].astype(np.int16) - frames[0].astype(np.int16)).mean()
    assert steps.mean() < far  # neighbouring frames are closer than the first and last


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_frames"):
        render_video(0, 0, num_frames=1)
    with pytest.raises(ValueError, match="size"):
        render_video(0, 0, size=100)


def test_save_videos_roundtrip(tmp_path):
    counts = save_videos(tmp_path, num_videos=10, size=16, num_frames=4, seed=1, progress=False)
    assert counts == {"train": 9, "heldout": 1}
    files = sorted((tmp_path / "heldout").glob("*.npy"))
    index = int(files[0].stem)
    assert np.array_equal(np.load(files[0], allow_pickle=False), render_video(1, index, 16, 4)[0])


def test_on_the_fly_dataset_matches_rendering():
    from genaccel.data.videos import ShapeVideosDataset

    dataset = ShapeVideosDataset(num_videos=20, size=16, num_frames=4, seed=3, split="heldout")
    assert len(dataset) == 2
    clip, label = dataset[1]
    frames, expected = render_video(3, dataset.indices[1], 16, 4)
    assert clip.shape == (4, 3, 16, 16) and label == expected
    assert np.array_equal(((clip + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy(), frames)
    with pytest.raises(ValueError, match="num_frames"):
        ShapeVideosDataset(num_frames=1)
