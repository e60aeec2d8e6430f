"""Offline photographs and random crops of them: training and evaluation data for estimators.

Nothing is downloaded. Photos come from installed packages (scikit-image, scikit-learn,
matplotlib) and, when present, Debian's wallpaper packages (:data:`WALLPAPER_DIRS`). A fixed set of package
photos is held out whole for evaluation, so every machine has the same held-out set.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

#: package photos (RGB, natural scenes) held out whole from every training corpus
HELD_OUT = ("chelsea.png", "coffee.png", "rocket.jpg", "china.jpg", "grace_hopper.jpg")
#: package photos used for training
TRAIN_PACKAGE = (
    "astronaut.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png", "retina.jpg", "flower.jpg",
    # grayscale textures, used as RGB
    "camera.png", "coins.png", "brick.png", "grass.png", "gravel.png",
)
#: wallpapers whose crops cost fewer bits than this under the analytic coder (its pure Laplace,
#: ``uniform_weight=0``, with which the rule was set) are smooth digital
#: renders rather than photographs; they would teach a model that the world is smooth
MIN_PHOTO_BPD = 2.7
#: where Debian's wallpaper packages put their pictures: ``plasma-workspace-wallpapers`` in the first,
#: ``gnome-backgrounds``, ``sway-backgrounds`` and ``lomiri-wallpapers`` in the second
WALLPAPER_DIRS = (Path("/usr/share/wallpapers"), Path("/usr/share/backgrounds"))

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def _package_photo_dirs() -> list[Path]:
    import matplotlib
    import skimage
    import sklearn

    return [
        Path(skimage.__file__).parent / "data",
        Path(sklearn.__file__).parent / "datasets" / "images",
        Path(matplotlib.get_data_path()) / "sample_data",
    ]


def package_photos(names: tuple[str, ...]) -> list[Path]:
    """Paths of the named photos shipped inside installed packages."""
    found = {p.name: p for d in _package_photo_dirs() if d.is_dir() for p in d.iterdir()}
    missing = [n for n in names if n not in found]
    if missing:
        raise FileNotFoundError(f"package photos not found: {missing}")
    return [found[n] for n in names]


def held_out_photos() -> list[Path]:
    """The evaluation photos (present on every machine with the package installed)."""
    return package_photos(HELD_OUT)


def wallpaper_photos(roots: tuple[Path, ...] = WALLPAPER_DIRS) -> list[Path]:
    """Debian's installed wallpapers (empty when none of the packages is installed).

    One file per wallpaper: the largest of each theme folder (plasma's ``<theme>/contents/images``
    holds one picture at several resolutions; so do the ``gnome`` and ``sway`` folders), and every
    image file lying directly in a root (``/usr/share/backgrounds``: the lomiri and Ubuntu photos).
    """
    photos = []
    for root in roots:
        if not root.is_dir():
            continue
        photos += sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
        for theme in sorted(p for p in root.iterdir() if p.is_dir()):
            files = [p for p in theme.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and "screenshot" not in p.name]
            if files:
                photos.append(max(files, key=lambda p: p.stat().st_size))
    return photos


def photo_id(path: Path) -> str:
    """A readable identifier: ``wallpapers/<theme>`` for Debian wallpapers, else the file name."""
    path = Path(path)
    for root in WALLPAPER_DIRS:
        if root in path.parents:
            return f"{root.name}/{path.relative_to(root).parts[0]}"
    return path.name


def training_photos(min_bpd: float = MIN_PHOTO_BPD) -> list[Path]:
    """Default training corpus: package photos not held out plus the installed wallpapers that are
    photographs (crops costing at least ``min_bpd`` under the analytic coder)."""
    from .estimators.analytic import AnalyticCoder

    coder = AnalyticCoder(uniform_weight=0)  # the rule that chose the corpus, kept so the corpus stays the same
    natural = [
        p for p in wallpaper_photos() if float(coder.bpd(CropSampler([load_rgb(p)], seed=0, n_scales=4).sample(64)).mean()) >= min_bpd
    ]
    return package_photos(TRAIN_PACKAGE) + natural


def image_files(directory: str | Path) -> list[Path]:
    """Image files (by suffix) anywhere under ``directory``, sorted."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"image_dir: {str(directory)!r} is not a directory")
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())


def load_rgb(path: str | Path, max_side: int | None = 1024) -> np.ndarray:
    """An image as uint8 RGB (H, W, 3), downscaled so its longer side is at most ``max_side``."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if max_side and max(im.size) > max_side:
            im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return np.asarray(im)


def split_held_out(paths: list[Path], fraction: float = 0.15) -> tuple[list[Path], list[Path]]:
    """Split whole images into (train, held-out) by a stable hash of the file name."""
    def bucket(p: Path) -> float:
        return int(hashlib.sha1(p.name.encode()).hexdigest()[:8], 16) / 16**8

    held = [p for p in paths if bucket(p) < fraction]
    if not held and len(paths) > 1:
        held = [min(paths, key=bucket)]
    return [p for p in paths if p not in held], held


class CropSampler:
    """Random multi-scale square crops with horizontal flips from a list of photos.

    Each photo is resized once to ``n_scales`` scales (log-spaced in ``scales``, Pillow's
    antialiasing, as a camera at another distance would see it); a crop picks a photo, a scale,
    a position and a flip, and is a plain array slice, so sampling thousands is cheap.
    """

    def __init__(
        self, photos: list[np.ndarray], size: int = 32, scales: tuple[float, float] = (0.125, 1.0), seed: int = 0, n_scales: int = 7
    ) -> None:
        if not photos:
            raise ValueError("photos: need at least one photo to sample crops from")
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.pyramid: list[np.ndarray] = []
        for photo in photos:
            im = Image.fromarray(photo)
            for scale in np.geomspace(scales[0], scales[1], n_scales):
                w, h = round(im.width * scale), round(im.height * scale)
                if min(w, h) >= size:
                    self.pyramid.append(np.asarray(im.resize((w, h), Image.Resampling.LANCZOS) if scale != 1 else im))
        if not self.pyramid:
            raise ValueError(f"photos: every photo is smaller than the crop size {size}")

    def sample_uint8(self, n: int) -> np.ndarray:
        """``n`` crops as uint8 (n, size, size, 3)."""
        out = np.empty((n, self.size, self.size, 3), dtype=np.uint8)
        for i in range(n):
            im = self.pyramid[self.rng.integers(len(self.pyramid))]
            y0 = self.rng.integers(0, im.shape[0] - self.size + 1)
            x0 = self.rng.integers(0, im.shape[1] - self.size + 1)
            crop = im[y0 : y0 + self.size, x0 : x0 + self.size]
            out[i] = crop[:, ::-1] if self.rng.random() < 0.5 else crop
        return out

    def sample(self, n: int) -> torch.Tensor:
        """``n`` crops as a float tensor (n, 3, size, size) in [0, 1] (8-bit values)."""
        return torch.from_numpy(self.sample_uint8(n)).permute(0, 3, 1, 2).float().div(255)


def held_out_crops(n: int = 256, size: int = 32, seed: int = 1234) -> torch.Tensor:
    """A fixed set of multi-scale crops of the held-out photos, for benchmarks and model cards."""
    photos = [load_rgb(p) for p in held_out_photos()]
    return CropSampler(photos, size=size, seed=seed).sample(n)


@cache
def _split_pool(split: str) -> tuple[np.ndarray, ...]:
    paths = held_out_photos() if split == "test" else package_photos(TRAIN_PACKAGE)
    return tuple(load_rgb(p, max_side=512) for p in paths)


def split_photos(split: str) -> list[np.ndarray]:
    """The testbeds' photos of a split (loaded once per process): ``"test"`` uses only the
    held-out photos, ``"train"`` the others, so test backgrounds are never seen in training."""
    return list(_split_pool(split))


@cache
def _split_sampler(split: str, size: int, scales: tuple[float, float]) -> CropSampler:
    return CropSampler(list(_split_pool(split)), size, scales=scales, seed=0)


def split_crop_sampler(split: str, size: int, scales: tuple[float, float], seed: int) -> CropSampler:
    """A crop sampler over :func:`split_photos` (its image pyramid is built once per process), reseeded."""
    sampler = _split_sampler(split, size, scales)
    sampler.rng = np.random.default_rng(seed)
    return sampler
