"""CIFAR-10's files on disk: torchvision's reader with clear messages, and a writer of the same format."""

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10

from nadexp.data.cifar10 import CLASSES, SHAPE
from nadexp.errors import ConfigError

FILES_HELP = ("CIFAR-10 is not in {folder}. On a machine that is online, add dataset.download=true; otherwise download "
              "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and unpack it into {root} "
              "(which then holds cifar-10-batches-py/data_batch_1 ... test_batch, batches.meta), or set dataset.data_dir")


class CIFAR10Files(CIFAR10):
    """torchvision's CIFAR-10; ``check_md5=False`` accepts files of the same format with other contents
    (a subset, a test fixture): they must exist and unpickle, their checksums are not compared."""

    def __init__(self, root, train: bool, download: bool = False, check_md5: bool = True):
        if not check_md5:
            self.train_list = [[name, None] for name, _ in CIFAR10.train_list]
            self.test_list = [[name, None] for name, _ in CIFAR10.test_list]
            self.meta = {**CIFAR10.meta, "md5": None}
        super().__init__(root, train=train, download=download)


def require_files(data_dir) -> None:
    """ConfigError naming dataset.data_dir and how to get the files, unless every CIFAR-10 file is there."""
    root = Path(data_dir)
    folder = root / CIFAR10.base_folder
    names = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]
    if any(not (folder / name).is_file() for name in names):
        raise ConfigError(f"dataset.data_dir={str(root)!r}: " + FILES_HELP.format(folder=folder, root=root))


def load_split(data_dir, train: bool, download: bool = False, check_md5: bool = True):
    """uint8 images (N, 3, 32, 32) and int64 labels (N,) of one split; ConfigError when the files are
    missing, corrupt, or cannot be downloaded."""
    root = Path(data_dir)
    folder = root / CIFAR10.base_folder
    try:
        dataset = CIFAR10Files(root, train=train, download=download, check_md5=check_md5)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        require_files(root)
        raise ConfigError(f"dataset.data_dir={str(root)!r}: the files in {folder} do not match CIFAR-10's checksums "
                          "(corrupt or partial download?). Delete the folder and download again; set "
                          "dataset.check_md5=false only for files you built yourself") from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as error:
        raise ConfigError(f"dataset.data_dir={str(root)!r}: the files in {folder} are not readable CIFAR-10 batches "
                          f"({type(error).__name__}: {error}); delete the folder and download again") from None
    except OSError as error:  # the download itself failed (offline, proxy, disk full)
        raise ConfigError(f"dataset.download=true could not fetch CIFAR-10 into {root} ({error}). "
                          + FILES_HELP.format(folder=folder, root=root)) from None
    images = torch.from_numpy(np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2)))
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    if images.shape[1:] != SHAPE or labels.min() < 0 or labels.max() >= len(CLASSES) or len(images) != len(labels):
        raise ConfigError(f"dataset.data_dir={str(root)!r}: {folder} holds images of shape {tuple(images.shape[1:])} "
                          f"or labels outside 0..9; expected CIFAR-10's 3 x 32 x 32 images and 10 classes")
    return images, labels


def write_cifar10_files(root, train: tuple, test: tuple, batches: int = 5) -> Path:
    """Writes uint8 images (N, 3, 32, 32) and labels as CIFAR-10's own python pickle batches and meta file
    under ``root/cifar-10-batches-py``: small stand-ins for tests and benchmarks, read by the real loader."""
    folder = Path(root) / CIFAR10.base_folder
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name, images, labels, batch_label):
        entry = {"batch_label": batch_label, "labels": [int(t) for t in labels],
                 "data": np.asarray(images, dtype=np.uint8).reshape(len(images), -1),
                 "filenames": [f"image_{i}.png" for i in range(len(images))]}
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle, protocol=2)

    images, labels = train
    for i, (x, y) in enumerate(zip(np.array_split(np.asarray(images), batches), np.array_split(np.asarray(labels), batches))):
        dump(f"data_batch_{i + 1}", x, y, f"training batch {i + 1} of {batches}")
    dump("test_batch", *test, "testing batch 1 of 1")
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": list(CLASSES), "num_cases_per_batch": len(images) // batches, "num_vis": 3072},
                    handle, protocol=2)
    return folder
