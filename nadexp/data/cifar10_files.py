"""CIFAR-10's and CIFAR-100's files on disk: torchvision's readers with clear messages, and writers of the same formats."""

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100

from nadexp.data.settings import CLASSES, NUM_CLASSES, SHAPE
from nadexp.errors import ConfigError

TORCHVISION = {"cifar10": CIFAR10, "cifar100": CIFAR100}
DISPLAY = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
FILES_HELP = (
    "{source} is not in {folder}. On a machine that is online, add dataset.download=true; otherwise download "
    "{url} and unpack it into {root} (which then holds {files}), or set dataset.data_dir"
)


def reader(source: str, root, train: bool, download: bool = False, check_md5: bool = True):
    """torchvision's CIFAR-10 or CIFAR-100 dataset; ``check_md5=False`` accepts files of the same format with
    other contents (a subset, a test fixture): they must exist and unpickle, their checksums are not compared."""
    base = TORCHVISION[source]

    class Files(base):
        def __init__(self):
            if not check_md5:
                self.train_list = [[name, None] for name, _ in base.train_list]
                self.test_list = [[name, None] for name, _ in base.test_list]
                self.meta = {**base.meta, "md5": None}
            super().__init__(root, train=train, download=download)

    return Files()


def file_names(source: str) -> list[str]:
    """The files torchvision reads, inside the data set's folder."""
    base = TORCHVISION[source]
    return [name for name, _ in base.train_list + base.test_list] + [base.meta["filename"]]


def files_present(data_dir, source: str = "cifar10") -> bool:
    folder = Path(data_dir) / TORCHVISION[source].base_folder
    return all((folder / name).is_file() for name in file_names(source))


def files_help(source: str, root: Path) -> str:
    base = TORCHVISION[source]
    files = f"{base.base_folder}/{', '.join(file_names(source))}"
    return FILES_HELP.format(source=DISPLAY[source], folder=root / base.base_folder, url=base.url, root=root, files=files)


def require_files(data_dir, source: str = "cifar10") -> None:
    """ConfigError naming dataset.data_dir and how to get the files, unless every file is there."""
    if not files_present(data_dir, source):
        raise ConfigError(f"dataset.data_dir={str(data_dir)!r}: " + files_help(source, Path(data_dir)))


def load_split(data_dir, train: bool, download: bool = False, check_md5: bool = True, source: str = "cifar10"):
    """uint8 images (N, 3, 32, 32) and int64 labels (N,) of one split; ConfigError when files are missing, corrupt or not downloadable."""
    root = Path(data_dir)
    folder, where = root / TORCHVISION[source].base_folder, f"dataset.data_dir={str(root)!r}"
    try:
        dataset = reader(source, root, train, download, check_md5)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        require_files(root, source)
        fix = "Delete the folder and download again; set dataset.check_md5=false only for files you built yourself"
        mismatch = f"the files in {folder} do not match {DISPLAY[source]}'s checksums (corrupt or partial download?)"
        raise ConfigError(f"{where}: {mismatch}. {fix}") from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as error:
        unreadable = f"the files in {folder} are not readable {DISPLAY[source]} batches ({type(error).__name__}: {error})"
        raise ConfigError(f"{where}: {unreadable}; delete the folder and download again") from None
    except OSError as error:  # the download itself failed (offline, proxy, disk full)
        failed = f"dataset.download=true could not fetch {DISPLAY[source]} into {root} ({error})"
        raise ConfigError(f"{failed}. " + files_help(source, root)) from None
    images = torch.from_numpy(np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2)))
    labels, classes = torch.as_tensor(dataset.targets, dtype=torch.int64), NUM_CLASSES[source]
    if images.shape[1:] != SHAPE or labels.min() < 0 or labels.max() >= classes or len(images) != len(labels):
        found = f"{folder} holds images of shape {tuple(images.shape[1:])} or labels outside 0..{classes - 1}"
        raise ConfigError(f"{where}: {found}; expected {DISPLAY[source]}'s 3 x 32 x 32 images and {classes} classes")
    return images, labels


def write_cifar100_files(root, train: tuple, test: tuple) -> Path:
    """CIFAR-100's own format under ``root/cifar-100-python`` (train, test, meta; fine labels 0..99,
    coarse labels fine // 5): small stand-ins for tests, read by the real loader."""
    folder = Path(root) / CIFAR100.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in (("train", train), ("test", test)):
        entry = {"data": np.asarray(images, dtype=np.uint8).reshape(len(images), -1), "fine_labels": [int(t) for t in labels]}
        entry.update(coarse_labels=[int(t) // 5 for t in labels], filenames=[f"image_{i}.png" for i in range(len(images))])
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle, protocol=2)
    names = {"fine_label_names": [f"class_{i}" for i in range(100)], "coarse_label_names": [f"superclass_{i}" for i in range(20)]}
    with open(folder / "meta", "wb") as handle:
        pickle.dump(names, handle, protocol=2)
    return folder


def write_cifar10_files(root, train: tuple, test: tuple, batches: int = 5) -> Path:
    """Writes uint8 images (N, 3, 32, 32) and labels as CIFAR-10's own python pickle batches and meta file
    under ``root/cifar-10-batches-py``: small stand-ins for tests and benchmarks, read by the real loader."""
    folder = Path(root) / CIFAR10.base_folder
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name, images, labels, batch_label):
        data = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
        entry = {"batch_label": batch_label, "labels": [int(t) for t in labels], "data": data}
        entry["filenames"] = [f"image_{i}.png" for i in range(len(images))]
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle, protocol=2)

    images, labels = train
    for i, (x, y) in enumerate(zip(np.array_split(np.asarray(images), batches), np.array_split(np.asarray(labels), batches))):
        dump(f"data_batch_{i + 1}", x, y, f"training batch {i + 1} of {batches}")
    dump("test_batch", *test, "testing batch 1 of 1")
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": list(CLASSES), "num_cases_per_batch": len(images) // batches, "num_vis": 3072}, handle, protocol=2)
    return folder
