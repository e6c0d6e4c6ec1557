"""Dataset loaders behind one small interface: every loader returns an `ImageSet` of uint8 NHWC pixels.

Normalisation is not applied here (the model folds it into its first layer); each set reports the
per-channel mean/std of its pixels scaled to [0, 1] instead.

Supported datasets (see `DATASETS`):

* ``fashion-mnist``: the original IDX files (gzipped or not), by default from the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``); ``MCUFORMER_FASHION_MNIST_DIR``
  overrides that default.
* ``cifar10`` / ``cifar100``: the *binary* versions from https://www.cs.toronto.edu/~kriz/cifar.html.
* ``imagefolder``: ``root/<split>/<class>/*.png|jpg|jpeg|bmp`` (or ``root/<class>/...``).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mcuformer.errors import McuformerError

DATASETS: tuple[str, ...] = ("fashion-mnist", "cifar10", "cifar100", "imagefolder")
SPLITS: tuple[str, ...] = ("train", "test")

FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "MCUFORMER_FASHION_MNIST_DIR"
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_MEAN: tuple[float, ...] = (0.2860,)
FASHION_MNIST_STD: tuple[float, ...] = (0.3530,)

CIFAR10_MEAN: tuple[float, ...] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, ...] = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN: tuple[float, ...] = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: tuple[float, ...] = (0.2673, 0.2564, 0.2762)
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
_GREY_MODES = frozenset({"1", "L", "LA"})
_RESIZE_CHUNK = 4096  # images per interpolate call: bounds the float32 working memory


class DataError(McuformerError):
    """A dataset is missing, unreadable or malformed; the message says which path and how to fix it."""


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Images with integer labels and the metadata the model needs to fold in normalisation.

    `images` is uint8 [N, H, W, C] (C = 1 for greyscale), `labels` int64 [N] in [0, num_classes);
    `mean`/`std` are per channel, of pixels scaled to [0, 1].
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise DataError(
                f"{self.name}: images must be uint8 [N, H, W, C], got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.dtype != np.int64 or self.labels.shape != (self.images.shape[0],):
            raise DataError(
                f"{self.name}: labels must be int64 [{self.images.shape[0]}], "
                f"got {self.labels.dtype} {self.labels.shape}"
            )
        channels = self.images.shape[3]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DataError(
                f"{self.name}: mean/std need {channels} values (one per channel), got {len(self.mean)}/{len(self.std)}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.images.shape[2])

    @property
    def channels(self) -> int:
        """Channels per pixel: 1 (grey) or 3 (RGB)."""
        return int(self.images.shape[3])

    @property
    def num_classes(self) -> int:
        """Number of classes (labels lie in [0, num_classes))."""
        return len(self.classes)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        """The images at `indices` (integer indices or a boolean mask), with the same metadata."""
        idx = np.asarray(indices)
        if idx.dtype != np.bool_:
            idx = idx.astype(np.int64, copy=False).reshape(-1)
        return dataclasses.replace(self, images=self.images[idx], labels=self.labels[idx])

    def resized(self, size: tuple[int, int]) -> ImageSet:
        """The same set with images resized to (height, width) by `resize_images`; mean/std are kept."""
        images = resize_images(self.images, size)
        if images is self.images:
            return self
        return dataclasses.replace(self, images=images)


def pixels_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1] (the model's input)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def split_validation(
    full: ImageSet, val_size: int, seed: int, train_limit: int | None = None
) -> tuple[ImageSet, ImageSet]:
    """(train, validation): `val_size` images (at most a fifth) held out of a training set by a seeded permutation,
    so every tool tunes on the same held-out images and the test set only reports. `train_limit` keeps the first
    N of the rest (tests, quick runs)."""
    order = np.random.default_rng(seed).permutation(len(full))
    val_size = min(val_size, len(full) // 5)
    train_idx = np.sort(order[val_size:])
    if train_limit is not None:
        train_idx = train_idx[:train_limit]
    return full.subset(train_idx), full.subset(np.sort(order[:val_size]))


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 NHWC images to `size` = (height, width): bilinear, antialiased when downscaling.

    Uses `torch.nn.functional.interpolate` (align_corners=False), rounds and clips to uint8. Returns
    `images` itself (no copy) when it already has that size. Deterministic.
    """
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(f"resize_images needs uint8 [N, H, W, C] images, got {images.dtype} {images.shape}")
    height, width = (int(s) for s in size)
    if height <= 0 or width <= 0:
        raise DataError(f"image size must be positive, got {height}x{width}")
    n, in_h, in_w, channels = images.shape
    if (in_h, in_w) == (height, width):
        return images
    out = np.empty((n, height, width, channels), dtype=np.uint8)
    if n == 0:
        return out
    antialias = height < in_h or width < in_w
    for start in range(0, n, _RESIZE_CHUNK):
        part = np.ascontiguousarray(images[start : start + _RESIZE_CHUNK])
        chunk = torch.from_numpy(part if part.flags.writeable else part.copy())
        x = chunk.permute(0, 3, 1, 2).to(torch.float32)
        y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=antialias)
        y = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        out[start : start + _RESIZE_CHUNK] = y.numpy()
    return out


def load_dataset(name: str, split: str = "train", root: str | Path | None = None) -> ImageSet:
    """Load split "train" or "test" of dataset `name` (one of `DATASETS`) from `root`.

    `root` may be None only for fashion-mnist (then $MCUFORMER_FASHION_MNIST_DIR or the Debian path).
    """
    key = name.strip().lower()
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: supported are {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for {key}: use one of {', '.join(SPLITS)}")
    root_path = Path(root).expanduser() if root is not None else None
    if key == "fashion-mnist":
        return _load_fashion_mnist(split, root_path)
    if key == "cifar10":
        return _load_cifar(split, root_path, hundred=False)
    if key == "cifar100":
        return _load_cifar(split, root_path, hundred=True)
    return _load_imagefolder(split, root_path)


# --------------------------------------------------------------------------------------------- IDX


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzipped or not) whose magic number must be `magic`.

    Returns a uint8 array shaped by the header's dimensions; a wrong magic number, a truncated or
    oversized payload or a corrupt gzip stream raises DataError naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: not an IDX file of the expected kind (magic number {found}, expected {magic})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(raw) - header
    if payload != expected:
        kind = "truncated" if payload < expected else "oversized"
        raise DataError(f"{path}: {kind} IDX data ({payload} bytes for shape {dims}, expected {expected})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


# ----------------------------------------------------------------------------------- Fashion-MNIST


def _fashion_mnist_hint() -> str:
    return (
        f"install it with `apt-get install dataset-fashion-mnist` or set {FASHION_MNIST_ENV} "
        "(or pass --data-dir) to a folder with the original IDX files"
    )


def _fashion_mnist_root(root: Path | None) -> Path:
    if root is not None:
        return root
    env = os.environ.get(FASHION_MNIST_ENV, "").strip()
    return Path(env).expanduser() if env else FASHION_MNIST_DEFAULT_DIR


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"Fashion-MNIST file {folder / stem}[.gz] not found: {_fashion_mnist_hint()}")


def _load_fashion_mnist(split: str, root: Path | None) -> ImageSet:
    folder = _fashion_mnist_root(root)
    if not folder.is_dir():
        raise DataError(f"Fashion-MNIST folder {folder} not found: {_fashion_mnist_hint()}")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find_idx(folder, f"{prefix}-images-idx3-ubyte"), IDX_IMAGES_MAGIC)
    labels_path = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
    labels = read_idx(labels_path, IDX_LABELS_MAGIC).astype(np.int64)
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images")
    _check_labels(labels, len(FASHION_MNIST_CLASSES), labels_path)
    return ImageSet(
        images=images[..., None],
        labels=labels,
        classes=FASHION_MNIST_CLASSES,
        name="fashion-mnist",
        mean=FASHION_MNIST_MEAN,
        std=FASHION_MNIST_STD,
    )


def _check_labels(labels: np.ndarray, num_classes: int, source: Path) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{source}: labels range {labels.min()}..{labels.max()} exceeds the {num_classes} classes")


# ------------------------------------------------------------------------------------------- CIFAR

_CIFAR_PIXELS = 3 * 32 * 32


def _load_cifar(split: str, root: Path | None, *, hundred: bool) -> ImageSet:
    name = "cifar100" if hundred else "cifar10"
    folder_name = "cifar-100-binary" if hundred else "cifar-10-batches-bin"
    archive = "cifar-100-binary.tar.gz" if hundred else "cifar-10-binary.tar.gz"
    hint = f"download the binary version ({archive}) from {CIFAR_URL}, extract it and pass --data-dir"
    if root is None:
        raise DataError(f"{name} needs a data folder: {hint}")
    folder = root / folder_name if (root / folder_name).is_dir() else root
    if not folder.is_dir():
        raise DataError(f"{name} folder {root} not found: {hint}")
    if hundred:
        files = ["train.bin"] if split == "train" else ["test.bin"]
        meta, label_offset, header = "fine_label_names.txt", 1, 2
    else:
        files = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
        meta, label_offset, header = "batches.meta.txt", 0, 1
    for file in [*files, meta]:
        if not (folder / file).is_file():
            raise DataError(f"{name} file {folder / file} not found: {hint}")
    classes = _read_class_names(folder / meta)
    record = header + _CIFAR_PIXELS
    image_parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    for file in files:
        path = folder / file
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc})") from exc
        if len(raw) == 0 or len(raw) % record:
            raise DataError(f"{path}: {len(raw)} bytes is not a whole number of {record}-byte {name} records")
        rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
        labels = rows[:, label_offset].astype(np.int64)
        _check_labels(labels, len(classes), path)
        chw = rows[:, header:].reshape(-1, 3, 32, 32)
        image_parts.append(np.ascontiguousarray(chw.transpose(0, 2, 3, 1)))
        label_parts.append(labels)
    return ImageSet(
        images=np.concatenate(image_parts) if len(image_parts) > 1 else image_parts[0],
        labels=np.concatenate(label_parts) if len(label_parts) > 1 else label_parts[0],
        classes=classes,
        name=name,
        mean=CIFAR100_MEAN if hundred else CIFAR10_MEAN,
        std=CIFAR100_STD if hundred else CIFAR10_STD,
    )


def _read_class_names(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise DataError(f"{path}: no class names")
    return names


# ------------------------------------------------------------------------------------- imagefolder


def _load_imagefolder(split: str, root: Path | None) -> ImageSet:
    from PIL import Image, UnidentifiedImageError

    hint = "expected <data-dir>/[train|test/]<class>/*.png|jpg|jpeg|bmp"
    if root is None:
        raise DataError(f"imagefolder needs a data folder (pass --data-dir): {hint}")
    if not root.is_dir():
        raise DataError(f"imagefolder folder {root} not found: {hint}")
    folder = root / split if (root / split).is_dir() else root
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"imagefolder {folder} has no class subfolders: {hint}")
    files: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(path)
                labels.append(label)
    if not files:
        raise DataError(f"imagefolder {folder} has no images: {hint}")

    def _open(path: Path) -> Image.Image:
        try:
            return Image.open(path)
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{path}: cannot read image ({exc})") from exc

    modes = []
    for path in files:
        with _open(path) as im:
            modes.append(im.mode)
    mode = "L" if all(m in _GREY_MODES for m in modes) else "RGB"
    arrays: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    for path in files:
        try:
            with _open(path) as im:
                pixels = np.asarray(im.convert(mode), dtype=np.uint8)
        except OSError as exc:
            raise DataError(f"{path}: cannot read image ({exc})") from exc
        pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)[None]
        if size is None:
            size = (pixels.shape[1], pixels.shape[2])
        arrays.append(resize_images(pixels, size))
    images = np.concatenate(arrays)
    mean, std = channel_stats(images)
    return ImageSet(
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        classes=tuple(p.name for p in class_dirs),
        name="imagefolder",
        mean=mean,
        std=std,
    )


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 NHWC pixels scaled to [0, 1].

    The std is floored at one grey level (1/255) so that dividing by it is always safe.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise DataError(f"channel statistics need a non-empty [N, H, W, C] array, got {images.shape}")
    channels = images.shape[3]
    total = np.zeros(channels, dtype=np.float64)
    squares = np.zeros(channels, dtype=np.float64)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].reshape(-1, channels).astype(np.float64) / 255.0
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
    count = images.shape[0] * images.shape[1] * images.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    std = np.maximum(std, 1.0 / 255.0)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
