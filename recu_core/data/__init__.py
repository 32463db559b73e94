"""Datasets by name, held in memory (decoded once into cached uint8 tensors, batched on
the device) or streamed from an image folder (decoded by worker processes per batch).

dataset = load_dataset(DatasetConfig(name="cifar10"))
loader = make_loader(dataset, "train", batch_size=256, seed=0, device="cuda")
for images, labels in loader.epoch(epoch): ...
"""

from recu_core.data.base import DatasetError, ImageDataset
from recu_core.data.batches import Dataset, Loader, has_split, make_loader
from recu_core.data.datasets import load_dataset
from recu_core.data.loader import DeviceLoader
from recu_core.data.streaming import StreamingDataset, StreamingLoader

__all__ = [
    "Dataset",
    "DatasetError",
    "DeviceLoader",
    "ImageDataset",
    "Loader",
    "StreamingDataset",
    "StreamingLoader",
    "has_split",
    "load_dataset",
    "make_loader",
]
