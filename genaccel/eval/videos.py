"""Reading videos for FVD: `.npy` (T, H, W, 3) uint8 arrays, folders of frame images, GIFs, and
.mp4 / .webm / .avi / .mov / .mkv where a decoder (imageio or PyAV) is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from genaccel.eval.images import IMAGE_EXTENSIONS, list_images, load_image

CONTAINER_EXTENSIONS = (".mp4", ".webm", ".avi", ".mov", ".mkv")
VIDEO_EXTENSIONS = (".npy", ".gif") + CONTAINER_EXTENSIONS


def list_videos(folder: str | Path) -> list[Path]:
    """Videos in `folder`: video files, and sub-folders of frame images (one video each)."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of videos (or a .npz stats file where accepted)")
    videos = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
            videos.append(path)
        elif path.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir()):
            videos.append(path)
    if not videos:
        raise ValueError(f"{folder} contains no videos (accepted: {', '.join(VIDEO_EXTENSIONS)} files, "
                         "or sub-folders of frame images)")
    return videos


def _frames_from_folder(folder: Path) -> np.ndarray:
    frames = [load_image(p) for p in list_images(folder)]
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise ValueError(f"frames in {folder} have different sizes {sorted(shapes)}; a video needs one size")
    return np.stack(frames)


def _frames_from_gif(path: Path) -> np.ndarray:
    with Image.open(path) as gif:
        return np.stack([np.asarray(frame.convert("RGB"), dtype=np.uint8) for frame in ImageSequence.Iterator(gif)])


def _frames_from_container(path: Path) -> np.ndarray:
    if importlib.util.find_spec("imageio") is not None:
        import imageio.v3 as iio

        return np.asarray(iio.imread(path, index=None))[..., :3]
    if importlib.util.find_spec("av") is not None:
        import av

        with av.open(str(path)) as container:
            return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    raise ValueError(f"cannot read {path.name}: no video decoder installed for {path.suffix} "
                     "(pip install 'imageio[ffmpeg]' or av), or convert it to .npy / frame images / .gif")


def load_video(path: str | Path) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of one video; errors name the file and what is accepted."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if path.is_dir():
            frames = _frames_from_folder(path)
        elif suffix == ".npy":
            frames = np.load(path, allow_pickle=False)
        elif suffix == ".gif":
            frames = _frames_from_gif(path)
        elif suffix in CONTAINER_EXTENSIONS:
            frames = _frames_from_container(path)
        else:
            raise ValueError(f"{path} is not a video (accepted: {', '.join(VIDEO_EXTENSIONS)}, or a folder of frames)")
    except (OSError, UnidentifiedImageError, EOFError) as error:
        raise ValueError(f"cannot read video {path}: {error}") from None
    except ValueError as error:
        if str(path.name) in str(error):
            raise
        raise ValueError(f"cannot read video {path}: {error}") from None
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"video {path} must be (T, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
    return frames


def first_clip(frames: np.ndarray, length: int, source: str | Path) -> np.ndarray:
    """The first `length` frames; a shorter video is an error (FVD's I3D protocol needs full clips)."""
    if frames.shape[0] < length:
        raise ValueError(f"video {source} has {frames.shape[0]} frames; FVD needs at least {length}")
    return frames[:length]
