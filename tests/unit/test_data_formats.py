"""Dataset formats: digits, CIFAR pickles, image folders, synthetic, the disk cache, errors."""

from __future__ import annotations

import os
import pickle
import re
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from recu_core.config import DatasetConfig
from recu_core.data import DatasetError, ImageDataset, load_dataset
from recu_core.settings import DataSettings

SHARED_ARCHIVE = Path(__file__).resolve().parents[2].parent / "shared/data/cifar10-jpeg.tar.gz"
CIFAR10_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@pytest.fixture
def settings(tmp_path: Path) -> DataSettings:
    return DataSettings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")


def load(settings: DataSettings, **fields: Any) -> ImageDataset:
    return load_dataset(DatasetConfig(**fields), settings=settings)


def assert_same(a: ImageDataset, b: ImageDataset) -> None:
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert (a.classes, a.mean, a.std) == (b.classes, b.mean, b.std)


def row_bytes(images: torch.Tensor, labels: torch.Tensor) -> list[bytes]:
    """Each sample as bytes (pixels + label), sorted: a multiset to compare sample sets."""
    return sorted(
        x.numpy().tobytes() + int(y).to_bytes(2, "little")
        for x, y in zip(images, labels, strict=True)
    )


# --- digits -----------------------------------------------------------------------------


def test_digits_shapes_and_types(settings: DataSettings) -> None:
    ds = load(settings, name="digits")
    assert ds.train_images.shape == (1437, 1, 8, 8)
    assert ds.test_images.shape == (360, 1, 8, 8)
    assert ds.train_images.dtype == ds.test_images.dtype == torch.uint8
    assert ds.train_labels.dtype == ds.test_labels.dtype == torch.int64
    assert ds.train_images.is_contiguous()
    assert (ds.num_classes, ds.in_channels, ds.image_size) == (10, 1, 8)
    assert ds.classes == tuple(str(i) for i in range(10))
    assert (ds.crop_padding, ds.flip) == (0, False)


def test_digits_pixels_are_the_scaled_sklearn_digits(settings: DataSettings) -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    expected = np.rint(bunch.images * 255 / 16).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    ds = load(settings, name="digits")
    assert int(ds.train_images.max()) == 255
    got = row_bytes(
        torch.cat([ds.train_images, ds.test_images]), torch.cat([ds.train_labels, ds.test_labels])
    )
    assert got == row_bytes(torch.from_numpy(expected), torch.from_numpy(bunch.target))


def test_digits_split_is_stratified_and_deterministic(settings: DataSettings) -> None:
    a, b = load(settings, name="digits"), load(settings, name="digits")
    assert_same(a, b)
    train_counts = torch.bincount(a.train_labels, minlength=10)
    test_counts = torch.bincount(a.test_labels, minlength=10)
    fraction = test_counts.double() / (train_counts + test_counts).double()
    assert torch.all((fraction - 0.2).abs() < 0.01), fraction


def test_mean_and_std_come_from_the_train_images(settings: DataSettings) -> None:
    ds = load(settings, name="digits")
    x = ds.train_images.double() / 255
    assert ds.mean == pytest.approx([x.mean().item()], abs=1e-12)
    assert ds.std == pytest.approx([x.std(unbiased=False).item()], abs=1e-12)


def test_subset_is_the_start_of_a_fixed_shuffle(settings: DataSettings) -> None:
    full = load(settings, name="digits")
    small = load(settings, name="digits", num_train=100, num_test=30)
    again = load(settings, name="digits", num_train=100, num_test=30)
    assert small.train_images.shape == (100, 1, 8, 8)
    assert small.test_images.shape == (30, 1, 8, 8)
    assert_same(small, again)
    assert len(set(small.train_labels.tolist())) >= 8  # shuffled, not the first class only
    assert not torch.equal(small.train_images, full.train_images[:100])
    assert set(row_bytes(small.train_images, small.train_labels)) <= set(
        row_bytes(full.train_images, full.train_labels)
    )
    bigger = load(settings, name="digits", num_train=200)
    assert torch.equal(bigger.train_images[:100], small.train_images)
    x = small.train_images.double() / 255
    assert small.mean == pytest.approx([x.mean().item()], abs=1e-12)
    assert small.mean != full.mean


def test_augmentation_defaults_can_be_overridden(settings: DataSettings) -> None:
    ds = load(settings, name="digits", crop_padding=0, flip=True)
    assert (ds.crop_padding, ds.flip) == (0, True)
    ds = load(settings, name="synthetic", num_train=8, num_test=8, crop_padding=2, flip=False)
    assert (ds.crop_padding, ds.flip) == (2, False)


# --- synthetic --------------------------------------------------------------------------


def test_synthetic_defaults_and_determinism(settings: DataSettings) -> None:
    ds = load(settings, name="synthetic")
    assert ds.train_images.shape == (5000, 3, 32, 32)
    assert ds.test_images.shape == (1000, 3, 32, 32)
    assert (ds.num_classes, ds.crop_padding, ds.flip) == (10, 4, True)
    assert sorted(set(ds.train_labels.tolist())) == list(range(10))
    assert ds.mean == pytest.approx([0.5] * 3, abs=0.01)
    small = load(settings, name="synthetic", num_train=64, num_test=16, image_size=8)
    assert small.train_images.shape == (64, 3, 8, 8)
    assert small.test_images.shape == (16, 3, 8, 8)
    assert_same(small, load(settings, name="synthetic", num_train=64, num_test=16, image_size=8))


# --- CIFAR ------------------------------------------------------------------------------


def cifar_pattern(first: int, n: int) -> np.ndarray:
    """(n, 3, 32, 32) uint8 where every (image, channel, row, column) has its own formula."""
    i, c, h, w = np.meshgrid(
        np.arange(first, first + n), np.arange(3), np.arange(32), np.arange(32), indexing="ij"
    )
    return ((i * 11 + c * 83 + h * 5 + w) % 256).astype(np.uint8)


def dump(path: Path, obj: object) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 3, n_test: int = 4) -> None:
    """The canonical cifar-10-batches-py layout with small batches of a known pattern."""
    root.mkdir(parents=True)
    for b in range(5):
        first = b * per_batch
        images = cifar_pattern(first, per_batch)
        dump(
            root / f"data_batch_{b + 1}",
            {
                b"batch_label": f"training batch {b + 1} of 5".encode(),
                b"labels": [(first + k) % 10 for k in range(per_batch)],
                b"data": images.reshape(per_batch, 3072),  # R plane, G plane, B plane
                b"filenames": [f"img_{first + k}.png".encode() for k in range(per_batch)],
            },
        )
    dump(
        root / "test_batch",
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": [9 - k for k in range(n_test)],
            b"data": cifar_pattern(1000, n_test).reshape(n_test, 3072),
            b"filenames": [f"test_{k}.png".encode() for k in range(n_test)],
        },
    )
    names = [n.encode() for n in CIFAR10_NAMES]
    dump(root / "batches.meta", {b"num_cases_per_batch": per_batch, b"label_names": names})


def write_cifar100(root: Path, n_train: int = 7, n_test: int = 3) -> None:
    root.mkdir(parents=True)
    for split, first, n in (("train", 0, n_train), ("test", 500, n_test)):
        dump(
            root / split,
            {
                b"filenames": [f"{split}_{k}.png".encode() for k in range(n)],
                b"fine_labels": [(first + 13 * k) % 100 for k in range(n)],
                b"coarse_labels": [k % 20 for k in range(n)],
                b"data": cifar_pattern(first, n).reshape(n, 3072),
            },
        )
    dump(
        root / "meta",
        {
            b"fine_label_names": [f"fine_{k}".encode() for k in range(100)],
            b"coarse_label_names": [f"coarse_{k}".encode() for k in range(20)],
        },
    )


def test_cifar10_round_trips_pixels_labels_and_classes(settings: DataSettings) -> None:
    write_cifar10(settings.data_dir / "cifar-10-batches-py")
    ds = load(settings, name="cifar10")
    assert torch.equal(ds.train_images, torch.from_numpy(cifar_pattern(0, 15)))
    assert torch.equal(ds.test_images, torch.from_numpy(cifar_pattern(1000, 4)))
    assert int(ds.train_images[1, 2, 3, 4]) == (1 * 11 + 2 * 83 + 3 * 5 + 4) % 256
    assert ds.train_labels.tolist() == [k % 10 for k in range(15)]
    assert ds.test_labels.tolist() == [9, 8, 7, 6]
    assert ds.classes == tuple(CIFAR10_NAMES)
    assert (ds.num_classes, ds.in_channels, ds.image_size) == (10, 3, 32)
    assert (ds.crop_padding, ds.flip) == (4, True)


def test_cifar100_uses_fine_labels(settings: DataSettings) -> None:
    write_cifar100(settings.data_dir / "cifar-100-python")
    ds = load(settings, name="cifar100")
    assert torch.equal(ds.train_images, torch.from_numpy(cifar_pattern(0, 7)))
    assert torch.equal(ds.test_images, torch.from_numpy(cifar_pattern(500, 3)))
    assert ds.train_labels.tolist() == [(13 * k) % 100 for k in range(7)]
    assert ds.test_labels.tolist() == [(500 + 13 * k) % 100 for k in range(3)]
    assert ds.classes == tuple(f"fine_{k}" for k in range(100))


def test_cifar_pickles_written_by_numpy_1_load(settings: DataSettings) -> None:
    root = settings.data_dir / "cifar-10-batches-py"
    write_cifar10(root)
    for path in root.glob("*_batch*"):
        data = path.read_bytes()
        assert b"numpy._core.multiarray" in data
        path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    ds = load(settings, name="cifar10")
    assert torch.equal(ds.train_images, torch.from_numpy(cifar_pattern(0, 15)))


def test_cifar_root_is_relative_to_data_dir_or_absolute(
    settings: DataSettings, tmp_path: Path
) -> None:
    write_cifar10(settings.data_dir / "mine")
    relative = load(settings, name="cifar10", root="mine")
    write_cifar10(tmp_path / "elsewhere", per_batch=2)
    absolute = load(settings, name="cifar10", root=str(tmp_path / "elsewhere"))
    assert relative.train_images.shape[0] == 15
    assert absolute.train_images.shape[0] == 10


def test_load_dataset_defaults_to_the_environment_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_cifar10(tmp_path / "env-data" / "cifar-10-batches-py")
    monkeypatch.setenv("RECU_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("RECU_CACHE_DIR", str(tmp_path / "env-cache"))
    ds = load_dataset(DatasetConfig(name="cifar10"))
    assert ds.train_images.shape == (15, 3, 32, 32)
    assert len(list((tmp_path / "env-cache").glob("cifar10-*.safetensors"))) == 1


class _MkdirOnLoad:
    """Unpickling this calls os.mkdir(path): the evidence a forbidden global ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


class _ExecOnLoad(_MkdirOnLoad):
    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"import os; os.mkdir({str(self.path)!r})",))


@pytest.mark.parametrize("payload", [_MkdirOnLoad, _ExecOnLoad])
def test_cifar_pickle_with_a_forbidden_global_is_refused(
    settings: DataSettings, tmp_path: Path, payload: type[_MkdirOnLoad]
) -> None:
    root = settings.data_dir / "cifar-10-batches-py"
    write_cifar10(root)
    evidence = tmp_path / "pwned"
    dump(root / "test_batch", {b"data": payload(evidence), b"labels": [0]})
    with pytest.raises(DatasetError, match=r"test_batch.*refusing to load"):
        load(settings, name="cifar10")
    assert not evidence.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "3072"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, r"labels must lie"),
        ({b"labels": [0]}, "b'data'"),
        ([1, 2, 3], "expected a pickled dict"),
    ],
)
def test_malformed_cifar_batch_is_a_dataset_error(
    settings: DataSettings, content: object, message: str
) -> None:
    root = settings.data_dir / "cifar-10-batches-py"
    write_cifar10(root)
    dump(root / "data_batch_3", content)
    with pytest.raises(DatasetError, match=message) as info:
        load(settings, name="cifar10")
    assert str(root / "data_batch_3") in str(info.value)


def test_truncated_cifar_batch_is_a_dataset_error(settings: DataSettings) -> None:
    root = settings.data_dir / "cifar-10-batches-py"
    write_cifar10(root)
    data = (root / "data_batch_2").read_bytes()
    (root / "data_batch_2").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=re.escape(str(root / "data_batch_2"))):
        load(settings, name="cifar10")


def test_missing_cifar_folder_names_the_path_and_the_layout(settings: DataSettings) -> None:
    expected = (settings.data_dir / "cifar-10-batches-py").resolve()
    with pytest.raises(DatasetError) as info:
        load(settings, name="cifar10")
    message = str(info.value)
    assert f"no dataset at {expected};" in message
    assert "data_batch_1..5 and test_batch" in message
    assert "RECU_DATA_DIR or dataset.root" in message
    with pytest.raises(DatasetError, match=r"cifar-100-python.*train, test and meta"):
        load(settings, name="cifar100")


def test_missing_cifar_file_is_named(settings: DataSettings) -> None:
    root = settings.data_dir / "cifar-10-batches-py"
    write_cifar10(root)
    (root / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match=r"lacks data_batch_4; expected"):
        load(settings, name="cifar10")


# --- image folders ----------------------------------------------------------------------


def rng_image(seed: int, size: tuple[int, int], channels: int) -> np.ndarray:
    """Random (H, W, 3) or (H, W) uint8 pixels for a (width, height) image."""
    shape = (size[1], size[0], channels) if channels == 3 else (size[1], size[0])
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def smooth_image(seed: int, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) gradients, one per channel: JPEG keeps them within a few levels."""
    w, h = size
    x = np.broadcast_to(np.linspace(0, 255, w), (h, w))
    y = np.broadcast_to(np.linspace(0, 255, h)[:, None], (h, w))
    b = np.full((h, w), (seed * 37) % 256)
    return np.rint(np.stack([x, y, b], axis=-1)).astype(np.uint8)


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(array).save(path, format="JPEG", quality=95, subsampling=0)
    else:
        Image.fromarray(array).save(path, format="PNG")


def make_folder(
    root: Path,
    *,
    test_split: str = "test",
    classes: tuple[str, ...] = ("dog", "cat"),
    per_class: int = 3,
    channels: int = 3,
    size: tuple[int, int] = (12, 12),
    suffix: str = ".png",
) -> dict[str, list[np.ndarray]]:
    """Random images under root/train and root/<test_split>; returns them in the loader's order."""
    expected: dict[str, list[np.ndarray]] = {"train": [], test_split: []}
    seed = 0
    for split in ("train", test_split):
        for name in sorted(classes):
            for k in range(per_class if split == "train" else 2):
                seed += 1
                jpeg = suffix in (".jpg", ".jpeg") and channels == 3
                array = smooth_image(seed, size) if jpeg else rng_image(seed, size, channels)
                save(root / split / name / f"{k:04d}{suffix}", array)
                expected[split].append(array)
    return expected


def chw(arrays: list[np.ndarray]) -> torch.Tensor:
    """HWC / HW arrays -> (N, C, H, W) tensor."""
    stacked = np.stack([a if a.ndim == 3 else a[..., None] for a in arrays])
    return torch.from_numpy(stacked).permute(0, 3, 1, 2)


def test_imagefolder_png_rgb_round_trips_exactly(settings: DataSettings, tmp_path: Path) -> None:
    expected = make_folder(tmp_path / "folder")
    ds = load(settings, name="imagefolder", root=str(tmp_path / "folder"))
    assert ds.classes == ("cat", "dog")
    assert torch.equal(ds.train_images, chw(expected["train"]))
    assert torch.equal(ds.test_images, chw(expected["test"]))
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.test_labels.tolist() == [0, 0, 1, 1]
    assert (ds.in_channels, ds.image_size, ds.crop_padding, ds.flip) == (3, 12, 1, True)


def test_imagefolder_val_split_and_jpeg(settings: DataSettings) -> None:
    expected = make_folder(
        settings.data_dir / "jpegs", test_split="val", suffix=".jpg", size=(16, 16)
    )
    ds = load(settings, name="imagefolder", root="jpegs")
    assert ds.test_images.shape == (4, 3, 16, 16)
    for split, images in (("train", ds.train_images), ("val", ds.test_images)):
        error = (images.double() - chw(expected[split]).double()).abs().max()
        assert error <= 4, split  # JPEG is lossy; a wrong channel order would be off by ~100


def test_imagefolder_grayscale_gives_one_channel(settings: DataSettings, tmp_path: Path) -> None:
    expected = make_folder(tmp_path / "gray", channels=1)
    ds = load(settings, name="imagefolder", root=str(tmp_path / "gray"))
    assert ds.in_channels == 1
    assert torch.equal(ds.train_images, chw(expected["train"]))
    assert torch.equal(ds.test_images, chw(expected["test"]))
    assert len(ds.mean) == len(ds.std) == 1


def test_imagefolder_mixed_modes_become_rgb(settings: DataSettings, tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    expected = make_folder(root, channels=1)
    rgb = rng_image(99, (12, 12), 3)
    save(root / "train" / "dog" / "9999.png", rgb)
    ds = load(settings, name="imagefolder", root=str(root))
    assert ds.in_channels == 3
    gray = torch.from_numpy(expected["train"][0])
    assert all(torch.equal(ds.train_images[0, c], gray) for c in range(3))
    assert torch.equal(ds.train_images[-1], chw([rgb])[0])


def test_imagefolder_gray_train_converts_rgb_test_images(
    settings: DataSettings, tmp_path: Path
) -> None:
    root = tmp_path / "gray-train"
    make_folder(root, channels=1)
    rgb = rng_image(7, (12, 12), 3)
    save(root / "test" / "cat" / "0000.png", rgb)
    ds = load(settings, name="imagefolder", root=str(root))
    assert ds.in_channels == 1
    luma = np.array(Image.fromarray(rgb).convert("L"))
    assert torch.equal(ds.test_images[0, 0], torch.from_numpy(luma))


def test_imagefolder_sixteen_bit_gray_is_rescaled(settings: DataSettings, tmp_path: Path) -> None:
    root = tmp_path / "deep"
    make_folder(root, channels=1, size=(2, 2))
    values = np.array([[0, 257 * 100], [65535, 257 * 3]], dtype=np.uint16)
    Image.fromarray(values).save(root / "train" / "cat" / "0000.png")
    ds = load(settings, name="imagefolder", root=str(root))
    assert ds.train_images[0, 0].tolist() == [[0, 100], [255, 3]]


def test_imagefolder_ignores_other_files_and_accepts_any_case(
    settings: DataSettings, tmp_path: Path
) -> None:
    root = tmp_path / "cases"
    make_folder(root, classes=("a",), per_class=1, size=(8, 8))
    save(root / "train" / "a" / "upper.PNG", rng_image(1, (8, 8), 3))
    save(root / "train" / "a" / "mixed.JpEg", rng_image(2, (8, 8), 3))
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    (root / "train" / ".hidden").mkdir()
    ds = load(settings, name="imagefolder", root=str(root))
    assert ds.train_images.shape == (3, 3, 8, 8)
    assert ds.classes == ("a",)


def test_imagefolder_sizes_must_match_without_image_size(
    settings: DataSettings, tmp_path: Path
) -> None:
    root = tmp_path / "sizes"
    make_folder(root, size=(12, 12))
    save(root / "train" / "dog" / "0001.png", rng_image(5, (10, 14), 3))
    with pytest.raises(DatasetError, match="image_size") as info:
        load(settings, name="imagefolder", root=str(root))
    message = str(info.value)
    assert str(root / "train" / "cat" / "0000.png") in message
    assert str(root / "train" / "dog" / "0001.png") in message
    assert "10x14" in message


def test_imagefolder_non_square_needs_image_size(settings: DataSettings, tmp_path: Path) -> None:
    make_folder(tmp_path / "wide", size=(16, 8))
    with pytest.raises(DatasetError, match="not square"):
        load(settings, name="imagefolder", root=str(tmp_path / "wide"))


def test_imagefolder_image_size_resizes_bilinear(settings: DataSettings, tmp_path: Path) -> None:
    root = tmp_path / "resize"
    make_folder(root, size=(20, 20))
    odd = rng_image(5, (30, 18), 3)
    save(root / "train" / "dog" / "0001.png", odd)
    ds = load(settings, name="imagefolder", root=str(root), image_size=16)
    assert ds.train_images.shape == (6, 3, 16, 16)
    assert (ds.image_size, ds.crop_padding) == (16, 2)
    reference = np.asarray(Image.fromarray(odd).resize((16, 16), Image.Resampling.BILINEAR))
    assert torch.equal(ds.train_images[4], chw([reference])[0])


@pytest.mark.parametrize(
    ("build", "where", "message"),
    [
        (lambda root: None, "", "no dataset at"),
        (lambda root: root.mkdir(), "", "has no train/ folder"),
        (lambda root: (root / "train" / "cat").mkdir(parents=True), "", "no test/ or val/"),
        (
            lambda root: [(root / s).mkdir(parents=True) for s in ("train", "test")],
            "train",
            "has no class folders",
        ),
        (
            lambda root: [(root / s / "cat").mkdir(parents=True) for s in ("train", "test")],
            "train/cat",
            "holds no .jpg/.jpeg/.png images",
        ),
    ],
)
def test_imagefolder_layout_errors_name_the_path(
    settings: DataSettings, tmp_path: Path, build: Any, where: str, message: str
) -> None:
    root = tmp_path / "layout"
    build(root)
    with pytest.raises(DatasetError, match=re.escape(message)) as info:
        load(settings, name="imagefolder", root=str(root))
    text = str(info.value)
    assert str(root / where).rstrip("/") in text
    assert "<root>/train/<class>/*.jpg|png and <root>/test|val/<class>/" in text


def test_imagefolder_empty_test_split_is_an_error(settings: DataSettings, tmp_path: Path) -> None:
    root = tmp_path / "empty-test"
    make_folder(root)
    for path in (root / "test").rglob("*.png"):
        path.unlink()
    with pytest.raises(DatasetError, match=re.escape(f"{root / 'test'} holds no")):
        load(settings, name="imagefolder", root=str(root))


def test_imagefolder_classes_must_match_between_splits(
    settings: DataSettings, tmp_path: Path
) -> None:
    root = tmp_path / "classes"
    make_folder(root)
    save(root / "test" / "bird" / "0000.png", rng_image(1, (12, 12), 3))
    with pytest.raises(DatasetError, match=r"class folders differ.*\['bird'\]"):
        load(settings, name="imagefolder", root=str(root))


def test_imagefolder_unreadable_image_is_named(settings: DataSettings, tmp_path: Path) -> None:
    root = tmp_path / "broken"
    make_folder(root)
    bad = root / "test" / "dog" / "0001.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=re.escape(f"cannot read image {bad}")):
        load(settings, name="imagefolder", root=str(root))


def test_imagefolder_requires_a_root(settings: DataSettings) -> None:
    """Refused by the config itself (so at submit, by the API), naming the field."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"dataset\.root is required"):
        load(settings, name="imagefolder")


# --- the disk cache ---------------------------------------------------------------------


def scramble_keeping_stat(path: Path) -> None:
    """Overwrite with garbage of the same size and restore the mtime: only decoding notices."""
    st = path.stat()
    path.write_bytes(b"\xff" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_imagefolder_second_load_reads_the_cache(settings: DataSettings, tmp_path: Path) -> None:
    root = tmp_path / "cached"
    make_folder(root)
    first = load(settings, name="imagefolder", root=str(root))
    cache_files = [p.name for p in settings.cache_dir.iterdir()]
    assert len(cache_files) == 1
    assert re.fullmatch(r"imagefolder-[0-9a-f]{16}\.safetensors", cache_files[0])
    sources = sorted(root.rglob("*.png"))
    for path in sources:
        scramble_keeping_stat(path)
    assert_same(first, load(settings, name="imagefolder", root=str(root)))
    os.utime(sources[0], ns=(0, 10**18))  # a changed source invalidates the cache
    with pytest.raises(DatasetError, match="cannot read image"):
        load(settings, name="imagefolder", root=str(root))


def test_cache_key_includes_image_size(settings: DataSettings, tmp_path: Path) -> None:
    make_folder(tmp_path / "f", size=(16, 16))
    load(settings, name="imagefolder", root=str(tmp_path / "f"))
    load(settings, name="imagefolder", root=str(tmp_path / "f"), image_size=8)
    assert len(list(settings.cache_dir.glob("imagefolder-*.safetensors"))) == 2


def test_cifar_second_load_reads_the_cache(settings: DataSettings) -> None:
    root = settings.data_dir / "cifar-10-batches-py"
    write_cifar10(root)
    first = load(settings, name="cifar10")
    assert len(list(settings.cache_dir.glob("cifar10-*.safetensors"))) == 1
    for path in root.iterdir():
        scramble_keeping_stat(path)
    assert_same(first, load(settings, name="cifar10"))


def test_corrupt_cache_is_rebuilt(settings: DataSettings, tmp_path: Path) -> None:
    make_folder(tmp_path / "f")
    first = load(settings, name="imagefolder", root=str(tmp_path / "f"))
    (cache_file,) = settings.cache_dir.iterdir()
    size = cache_file.stat().st_size
    cache_file.write_bytes(b"garbage")
    assert_same(first, load(settings, name="imagefolder", root=str(tmp_path / "f")))
    assert [p.name for p in settings.cache_dir.iterdir()] == [cache_file.name]  # no temp files
    assert cache_file.stat().st_size == size


# --- the real CIFAR-10 archive ----------------------------------------------------------


def extract_subset(archive: Path, dest: Path, per_class: int) -> None:
    """Stream the archive once, writing the first ``per_class`` files of each class and split."""
    counts: dict[tuple[str, str], int] = {}
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 4 or parts[1] not in ("train", "test"):
                continue
            key = (parts[1], parts[2])
            if counts.get(key, 0) >= per_class or not parts[3].endswith(".jpg"):
                continue
            counts[key] = counts.get(key, 0) + 1
            source = tar.extractfile(member)
            assert source is not None
            target = dest.joinpath(*parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
            if len(counts) == 20 and all(n >= per_class for n in counts.values()):
                break


@pytest.mark.shared_data
def test_real_cifar10_subset_as_imagefolder(settings: DataSettings, tmp_path: Path) -> None:
    if not SHARED_ARCHIVE.is_file():
        pytest.skip(f"shared CIFAR-10 archive not found at {SHARED_ARCHIVE}")
    extract_subset(SHARED_ARCHIVE, tmp_path / "cifar10", per_class=20)
    ds = load(settings, name="imagefolder", root=str(tmp_path / "cifar10"))
    assert ds.classes == tuple(CIFAR10_NAMES)
    assert ds.train_images.shape == (200, 3, 32, 32)
    assert ds.test_images.shape == (200, 3, 32, 32)
    assert torch.bincount(ds.train_labels).tolist() == [20] * 10
    assert ds.mean == pytest.approx((0.49, 0.48, 0.45), abs=0.1)
    assert (ds.crop_padding, ds.flip) == (4, True)
