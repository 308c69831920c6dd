"""Fashion-MNIST's files on disk: the four IDX files (gzipped, as Debian's dataset-fashion-mnist package and the upstream release ship them,
or not), read with torchvision's MNIST-family reader, with clear messages; and a writer of the same format for small fixtures."""

import gzip
import tempfile
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets.mnist import read_image_file, read_label_file

from nadexp.errors import ConfigError

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"  # apt-get install dataset-fashion-mnist
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SIZES = {"train": 60_000, "test": 10_000}  # images per split, 28 x 28, as published
HOW_TO_GET = (
    "install them with `apt-get install dataset-fashion-mnist` (they go to /usr/share/datasets/fashion-mnist), or download "
    "the four files of https://github.com/zalandoresearch/fashion-mnist (data/fashion) into a folder and set dataset.data_dir"
)


def find(data_dir, name: str) -> Path | None:
    """``name`` or ``name.gz`` in ``data_dir``."""
    for candidate in (Path(data_dir) / name, Path(data_dir) / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def require_files(data_dir) -> None:
    missing = [name for pair in FILES.values() for name in pair if find(data_dir, name) is None]
    if missing:
        raise ConfigError(f"dataset.data_dir={str(data_dir)!r} lacks Fashion-MNIST's {', '.join(missing)} (or .gz): {HOW_TO_GET}")


def _read(path: Path, read):
    """torchvision's reader on ``path``, decompressed to a temporary file first when it is gzipped."""
    if path.suffix != ".gz":
        return read(str(path))
    with gzip.open(path, "rb") as packed, tempfile.NamedTemporaryFile(suffix=".idx") as plain:
        plain.write(packed.read())
        plain.flush()
        return read(plain.name)


def load_split(data_dir, train: bool, check_sizes: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 1, 28, 28) and int64 labels (N,) of one split; ConfigError naming dataset.data_dir when
    a file is missing, truncated, not IDX, or (``check_sizes``) not the published 60,000 / 10,000 images."""
    split, where = "train" if train else "test", f"dataset.data_dir={str(data_dir)!r}"
    require_files(data_dir)
    images_path, labels_path = (find(data_dir, name) for name in FILES[split])
    try:
        images, labels = _read(images_path, read_image_file), _read(labels_path, read_label_file)
    except (OSError, EOFError, AssertionError, ValueError, TypeError, RuntimeError, KeyError) as error:
        unreadable = f"{images_path.name} or {labels_path.name} is not a readable IDX file ({type(error).__name__}: {error}"
        raise ConfigError(f"{where}: {unreadable}; truncated or corrupt?): {HOW_TO_GET}") from None
    expected = SIZES[split] if check_sizes else len(labels)
    if images.shape[1:] != (28, 28) or len(images) != expected or len(labels) != expected or labels.min() < 0 or labels.max() > 9:
        found = f"the {split} files hold {len(images)} images of {tuple(images.shape[1:])} and {len(labels)} labels"
        published = f"Fashion-MNIST's are {SIZES[split]:,} of (28, 28) with labels 0..9"
        other = "dataset.check_md5=false accepts other counts, for files you built yourself"
        raise ConfigError(f"{where}: {found}; {published} ({other}): " + HOW_TO_GET)
    return images[:, None].contiguous(), labels


def write_fashion_mnist_files(root, train: tuple, test: tuple, gzipped: bool = True) -> Path:
    """uint8 images (N, 28, 28) and labels as Fashion-MNIST's IDX files in ``root``: fixtures read by the real loader."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in (("train", train), ("test", test)):
        images, labels = np.asarray(images, dtype=np.uint8).reshape(len(images), 28, 28), np.asarray(labels, dtype=np.uint8)
        for name, array, magic in ((FILES[split][0], images, 0x0803), (FILES[split][1], labels, 0x0801)):
            header = np.array([magic, *array.shape], dtype=">u4").tobytes()
            data = header + array.tobytes()
            path = root / (f"{name}.gz" if gzipped else name)
            path.write_bytes(gzip.compress(data) if gzipped else data)
    return root
