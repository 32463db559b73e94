"""Datasets by name, decoded once into cached uint8 tensors, and a device-resident loader.

dataset = load_dataset(DatasetConfig(name="cifar10"))
loader = DeviceLoader(dataset.train_images, dataset.train_labels, batch_size=256,
                      mean=dataset.mean, std=dataset.std, train=True,
                      crop_padding=dataset.crop_padding, flip=dataset.flip, device="cuda")
for images, labels in loader.epoch(epoch): ...
"""

from recu_core.data.base import DatasetError, ImageDataset
from recu_core.data.datasets import load_dataset
from recu_core.data.loader import DeviceLoader

__all__ = ["DatasetError", "DeviceLoader", "ImageDataset", "load_dataset"]
