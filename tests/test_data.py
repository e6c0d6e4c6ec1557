"""Dataset loaders: real Fashion-MNIST, IDX parsing, CIFAR binary layouts, imagefolder and resizing."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from mcuformer.data import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    DataError,
    ImageSet,
    load_dataset,
    read_idx,
    resize_images,
)
from mcuformer.errors import McuformerError

# ------------------------------------------------------------------------------------------ helpers


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding of a uint8 array (magic defaults to 0x0800 + ndim)."""
    magic = 0x0800 + array.ndim if magic is None else magic
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion(folder: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    prefix = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, data in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        payload = idx_bytes(data)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / stem).write_bytes(payload)


def cifar_records(images_hwc: np.ndarray, labels: np.ndarray, coarse: np.ndarray | None = None) -> bytes:
    """CIFAR binary records: [coarse byte,] label byte, 3072 bytes R plane, G plane, B plane (CHW)."""
    out = bytearray()
    for i in range(len(labels)):
        if coarse is not None:
            out.append(int(coarse[i]))
        out.append(int(labels[i]))
        out += np.ascontiguousarray(images_hwc[i].transpose(2, 0, 1)).tobytes()
    return bytes(out)


def random_images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize(("split", "count"), [("train", 60000), ("test", 10000)])
def test_real_fashion_mnist(split: str, count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCUFORMER_FASHION_MNIST_DIR", raising=False)
    data = load_dataset("fashion-mnist", split)
    assert data.images.shape == (count, 28, 28, 1)
    assert data.images.dtype == np.uint8
    assert data.labels.shape == (count,)
    assert data.labels.dtype == np.int64
    assert data.labels.min() == 0 and data.labels.max() == 9
    # Fashion-MNIST is balanced: every class has exactly a tenth of the split.
    assert np.bincount(data.labels, minlength=10).tolist() == [count // 10] * 10
    assert (len(data), data.height, data.width, data.channels, data.num_classes) == (count, 28, 28, 1, 10)
    assert data.classes == FASHION_MNIST_CLASSES
    assert data.mean == (0.2860,) and data.std == (0.3530,)
    assert data.images.max() == 255 and data.images.min() == 0


def test_real_fashion_mnist_stats_match_constants() -> None:
    data = load_dataset("fashion-mnist", "train")
    pixels = data.images[::10].astype(np.float64) / 255.0
    assert abs(pixels.mean() - data.mean[0]) < 0.01
    assert abs(pixels.std() - data.std[0]) < 0.01


def test_fashion_mnist_from_tmp_gz_and_raw(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 9, 8, 5], dtype=np.uint8)
    write_fashion(tmp_path / "gz", "train", images, labels, gz=True)
    write_fashion(tmp_path / "raw", "test", images, labels, gz=False)
    for folder, split in ((tmp_path / "gz", "train"), (tmp_path / "raw", "test")):
        data = load_dataset("fashion-mnist", split, root=folder)
        np.testing.assert_array_equal(data.images[..., 0], images)
        np.testing.assert_array_equal(data.labels, labels.astype(np.int64))
        assert data.images.flags.writeable


def test_fashion_mnist_env_var_overrides_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = np.full((3, 28, 28), 17, dtype=np.uint8)
    write_fashion(tmp_path, "test", images, np.array([4, 4, 4], dtype=np.uint8), gz=True)
    monkeypatch.setenv("MCUFORMER_FASHION_MNIST_DIR", str(tmp_path))
    data = load_dataset("fashion-mnist", "test")
    assert len(data) == 3 and int(data.images[0, 0, 0, 0]) == 17


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("MCUFORMER_FASHION_MNIST_DIR", str(missing))
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist")
    message = str(info.value)
    assert str(missing) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "MCUFORMER_FASHION_MNIST_DIR" in message
    assert "\n" not in message
    # A folder that exists but lacks a file names that file.
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_dataset("fashion-mnist", root=tmp_path / "empty")


def test_fashion_mnist_label_count_mismatch(tmp_path: Path) -> None:
    write_fashion(tmp_path, "train", np.zeros((4, 28, 28), np.uint8), np.zeros(3, np.uint8), gz=False)
    with pytest.raises(DataError, match="3 labels for 4 images"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_fashion_mnist_label_out_of_range(tmp_path: Path) -> None:
    write_fashion(tmp_path, "train", np.zeros((2, 28, 28), np.uint8), np.array([1, 10], np.uint8), gz=False)
    with pytest.raises(DataError, match="labels range"):
        load_dataset("fashion-mnist", root=tmp_path)


# --------------------------------------------------------------------------------------------- IDX


def test_read_idx_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    raw = tmp_path / "images"
    raw.write_bytes(idx_bytes(array))
    gz = tmp_path / "images.gz"
    gz.write_bytes(gzip.compress(idx_bytes(array)))
    for path in (raw, gz):
        parsed = read_idx(path, IDX_IMAGES_MAGIC)
        assert parsed.shape == (2, 3, 5) and parsed.dtype == np.uint8
        np.testing.assert_array_equal(parsed, array)
    labels = tmp_path / "labels"
    labels.write_bytes(idx_bytes(np.array([3, 1, 4], np.uint8)))
    assert read_idx(labels, IDX_LABELS_MAGIC).tolist() == [3, 1, 4]


def test_read_idx_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "labels-as-images"
    path.write_bytes(idx_bytes(np.array([1, 2, 3], np.uint8)))  # magic 2049
    with pytest.raises(DataError, match="magic number 2049, expected 2051") as info:
        read_idx(path, IDX_IMAGES_MAGIC)
    assert str(path) in str(info.value)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(DataError, match="magic number"):
        read_idx(garbage, IDX_LABELS_MAGIC)


def test_read_idx_truncated(tmp_path: Path) -> None:
    full = idx_bytes(np.zeros((4, 6, 6), np.uint8))
    cases = {
        "payload": full[:-1],
        "header": full[:9],
        "empty": b"",
        "oversized": full + b"\x00",
    }
    for stem, data in cases.items():
        path = tmp_path / stem
        path.write_bytes(data)
        with pytest.raises(DataError) as info:
            read_idx(path, IDX_IMAGES_MAGIC)
        assert str(path) in str(info.value)
    with pytest.raises(DataError, match="truncated IDX data"):
        read_idx(tmp_path / "payload", IDX_IMAGES_MAGIC)


def test_read_idx_truncated_gzip(tmp_path: Path) -> None:
    compressed = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 10, 10)))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match="cut.gz"):
        read_idx(path, IDX_IMAGES_MAGIC)


def test_corrupt_fashion_file_through_loader(tmp_path: Path) -> None:
    write_fashion(tmp_path, "test", np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8), gz=False)
    images = tmp_path / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_dataset("fashion-mnist", "test", root=tmp_path)


# ------------------------------------------------------------------------------------------- CIFAR

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(folder: Path, rng: np.random.Generator, per_batch: int = 3) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_NAMES) + "\n\n")
    written: dict[str, np.ndarray] = {}
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for index, name in enumerate(names):
        images = random_images(rng, per_batch)
        labels = (np.arange(per_batch) + index) % 10
        (folder / name).write_bytes(cifar_records(images, labels))
        written[name + ":images"] = images
        written[name + ":labels"] = labels
    return written


def test_cifar10_pixel_order(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    rng = np.random.default_rng(1)
    written = write_cifar10(folder, rng)
    # Overwrite the test batch with a pattern whose channels/rows/columns are all distinguishable.
    h, w = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    pattern = np.stack([h * 4, w * 4, 255 - h - w], axis=-1).astype(np.uint8)[None]
    (folder / "test_batch.bin").write_bytes(cifar_records(pattern, np.array([7])))
    test = load_dataset("cifar10", "test", root=folder)
    assert test.images.shape == (1, 32, 32, 3) and test.images.dtype == np.uint8
    assert int(test.images[0, 5, 9, 0]) == 20  # red = 4 * row
    assert int(test.images[0, 5, 9, 1]) == 36  # green = 4 * column
    assert int(test.images[0, 5, 9, 2]) == 255 - 14  # blue
    np.testing.assert_array_equal(test.images, pattern)
    assert test.labels.tolist() == [7] and test.classes[7] == "horse"

    # root may also be the parent of cifar-10-batches-bin; train concatenates the 5 batches in order.
    train = load_dataset("cifar10", "train", root=tmp_path)
    expected = np.concatenate([written[f"data_batch_{i}.bin:images"] for i in range(1, 6)])
    np.testing.assert_array_equal(train.images, expected)
    expected_labels = np.concatenate([written[f"data_batch_{i}.bin:labels"] for i in range(1, 6)])
    np.testing.assert_array_equal(train.labels, expected_labels)
    assert train.labels.dtype == np.int64
    assert train.classes == tuple(CIFAR10_NAMES)
    assert train.mean == (0.4914, 0.4822, 0.4465) and train.std == (0.2470, 0.2435, 0.2616)
    assert train.name == "cifar10" and train.num_classes == 10


def test_cifar100_fine_labels_and_layout(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    names = [f"class_{i:02d}" for i in range(100)]
    (folder / "fine_label_names.txt").write_text("\n".join(names) + "\n")
    rng = np.random.default_rng(2)
    images = random_images(rng, 4)
    fine = np.array([99, 0, 42, 7])
    coarse = np.array([19, 3, 5, 11])
    (folder / "train.bin").write_bytes(cifar_records(images, fine, coarse))
    (folder / "test.bin").write_bytes(cifar_records(images[:2], fine[:2], coarse[:2]))
    train = load_dataset("cifar100", "train", root=tmp_path)
    assert train.labels.tolist() == [99, 0, 42, 7]  # fine, not coarse
    np.testing.assert_array_equal(train.images, images)
    assert train.num_classes == 100 and train.classes[42] == "class_42"
    assert train.mean == (0.5071, 0.4865, 0.4409) and train.std == (0.2673, 0.2564, 0.2762)
    test = load_dataset("cifar100", "test", root=folder)
    assert len(test) == 2 and test.labels.tolist() == [99, 0]


def test_cifar_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--data-dir") as info:
        load_dataset("cifar10")
    assert "binary" in str(info.value) and "cs.toronto.edu" in str(info.value)
    with pytest.raises(DataError, match="cifar-100-binary.tar.gz"):
        load_dataset("cifar100", root=tmp_path / "missing")
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar10(folder, np.random.default_rng(3))
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match="data_batch_3.bin"):
        load_dataset("cifar10", "train", root=tmp_path)
    (folder / "test_batch.bin").write_bytes(bytes(3073 + 5))
    with pytest.raises(DataError, match="test_batch.bin"):
        load_dataset("cifar10", "test", root=tmp_path)


# ------------------------------------------------------------------------------------- imagefolder


def write_png_tree(root: Path, mode: str) -> dict[Path, np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(4)
    written: dict[Path, np.ndarray] = {}
    for class_name in ("cat", "ant", "bee"):
        (root / class_name).mkdir(parents=True)
        for i in range(2):
            shape = (6, 8) if mode == "L" else (6, 8, 3)
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
            path = root / class_name / f"img{i}.png"
            Image.fromarray(pixels, mode=None).convert(mode).save(path)
            written[path] = pixels
    (root / "ant" / "notes.txt").write_text("not an image")
    return written


def test_imagefolder_rgb_with_split(tmp_path: Path) -> None:
    written = write_png_tree(tmp_path / "train", "RGB")
    data = load_dataset("imagefolder", "train", root=tmp_path)
    assert data.classes == ("ant", "bee", "cat")
    assert data.images.shape == (6, 6, 8, 3) and data.images.dtype == np.uint8
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2]
    order = [tmp_path / "train" / c / f"img{i}.png" for c in ("ant", "bee", "cat") for i in range(2)]
    np.testing.assert_array_equal(data.images, np.stack([written[p] for p in order]))
    pixels = data.images.astype(np.float64) / 255.0
    np.testing.assert_allclose(data.mean, pixels.mean(axis=(0, 1, 2)), atol=1e-9)
    np.testing.assert_allclose(data.std, pixels.std(axis=(0, 1, 2)), atol=1e-9)
    # Deterministic: a second load gives identical arrays.
    again = load_dataset("imagefolder", "train", root=tmp_path)
    np.testing.assert_array_equal(again.images, data.images)


def test_imagefolder_grey_without_split_and_mixed_sizes(tmp_path: Path) -> None:
    from PIL import Image

    write_png_tree(tmp_path, "L")
    # A bigger constant image gets resized to the first image's 6x8 and stays constant.
    Image.fromarray(np.full((12, 16), 200, np.uint8)).save(tmp_path / "cat" / "zbig.png")
    data = load_dataset("imagefolder", "test", root=tmp_path)  # no root/test: root itself is used
    assert data.images.shape == (7, 6, 8, 1)
    assert data.channels == 1 and len(data.mean) == 1 and len(data.std) == 1
    assert (data.images[-1] == 200).all()
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2, 2]


def test_imagefolder_mixed_modes_become_rgb(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(np.full((4, 4), 50, np.uint8)).save(tmp_path / "a" / "grey.png")
    Image.fromarray(np.full((4, 4, 3), (10, 20, 30), np.uint8)).save(tmp_path / "b" / "colour.bmp")
    data = load_dataset("imagefolder", root=tmp_path)
    assert data.images.shape == (2, 4, 4, 3)
    assert data.images[0, 0, 0].tolist() == [50, 50, 50]
    assert data.images[1, 0, 0].tolist() == [10, 20, 30]


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("imagefolder")
    with pytest.raises(DataError, match="nope"):
        load_dataset("imagefolder", root=tmp_path / "nope")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_dataset("imagefolder", root=tmp_path)
    (tmp_path / "empty_class" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png"):
        load_dataset("imagefolder", root=tmp_path)


# ----------------------------------------------------------------------------------- name / split


def test_unknown_name_and_split() -> None:
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    for name in DATASETS:
        assert name in str(info.value)
    assert set(DATASETS) == {"fashion-mnist", "cifar10", "cifar100", "imagefolder"}
    with pytest.raises(DataError, match="split"):
        load_dataset("fashion-mnist", "val")
    assert issubclass(DataError, McuformerError)


# ------------------------------------------------------------------------------------------ resize


def test_resize_identity_returns_same_object() -> None:
    images = np.random.default_rng(5).integers(0, 256, size=(3, 10, 12, 1), dtype=np.uint8)
    assert resize_images(images, (10, 12)) is images


@pytest.mark.parametrize("size", [(5, 7), (20, 24), (10, 30), (1, 1)])
def test_resize_constant_shape_dtype(size: tuple[int, int]) -> None:
    images = np.empty((4, 10, 12, 3), dtype=np.uint8)
    images[..., 0], images[..., 1], images[..., 2] = 0, 137, 255
    out = resize_images(images, size)
    assert out.shape == (4, *size, 3) and out.dtype == np.uint8
    assert (out[..., 0] == 0).all() and (out[..., 1] == 137).all() and (out[..., 2] == 255).all()


def test_resize_values_and_determinism() -> None:
    # A 2x antialiased downscale of a periodic 2x2 pattern averages it away (away from the borders,
    # where the triangle filter is renormalised); plain bilinear would alias to the pattern's samples.
    block = np.array([[0, 100], [200, 60]], dtype=np.uint8)
    images = np.tile(block, (4, 4))[None, :, :, None]
    out = resize_images(images, (4, 4))
    assert (out[0, 1:3, 1:3] == 90).all()
    # Upscaling keeps values within the input range, and results are bit-identical across calls.
    rng = np.random.default_rng(6)
    many = rng.integers(0, 256, size=(5000, 8, 8, 1), dtype=np.uint8)  # more than one internal chunk
    a = resize_images(many, (13, 11))
    b = resize_images(many, (13, 11))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(resize_images(many[4500:], (13, 11)), a[4500:])
    assert a.min() >= many.min() and a.max() <= many.max()


def test_resize_matches_pillow_bilinear() -> None:
    from PIL import Image

    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=(40, 52, 3), dtype=np.uint8)
    for size in ((17, 23), (80, 90)):
        ours = resize_images(image[None], size)[0].astype(np.int16)
        pillow = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR))
        assert np.abs(ours - pillow.astype(np.int16)).max() <= 1


def test_resize_rejects_bad_input() -> None:
    with pytest.raises(DataError):
        resize_images(np.zeros((2, 4, 4, 1), np.float32), (2, 2))
    with pytest.raises(DataError):
        resize_images(np.zeros((2, 4, 4, 1), np.uint8), (0, 2))
    assert resize_images(np.zeros((0, 4, 4, 1), np.uint8), (2, 3)).shape == (0, 2, 3, 1)


# ---------------------------------------------------------------------------------------- ImageSet


def make_set(n: int = 5) -> ImageSet:
    images = np.arange(n * 4 * 6 * 3, dtype=np.int64).reshape(n, 4, 6, 3).astype(np.uint8)
    return ImageSet(
        images=images,
        labels=np.arange(n, dtype=np.int64) % 2,
        classes=("a", "b"),
        name="toy",
        mean=(0.1, 0.2, 0.3),
        std=(0.4, 0.5, 0.6),
    )


def test_imageset_properties_subset_resized() -> None:
    data = make_set()
    assert (len(data), data.height, data.width, data.channels, data.num_classes) == (5, 4, 6, 3, 2)
    sub = data.subset([4, 0])
    np.testing.assert_array_equal(sub.images, data.images[[4, 0]])
    assert sub.labels.tolist() == [0, 0]
    assert (sub.classes, sub.name, sub.mean, sub.std) == (data.classes, data.name, data.mean, data.std)
    masked = data.subset(data.labels == 1)
    assert len(masked) == 2 and masked.labels.tolist() == [1, 1]
    big = data.resized((8, 12))
    assert (big.height, big.width, len(big)) == (8, 12, 5)
    assert big.labels is data.labels and big.mean == data.mean
    assert data.resized((4, 6)) is data


def test_imageset_validates() -> None:
    data = make_set()
    with pytest.raises(DataError):
        ImageSet(data.images.astype(np.float32), data.labels, data.classes, "x", data.mean, data.std)
    with pytest.raises(DataError):
        ImageSet(data.images, data.labels[:3], data.classes, "x", data.mean, data.std)
    with pytest.raises(DataError):
        ImageSet(data.images, data.labels, data.classes, "x", (0.5,), (0.5,))
