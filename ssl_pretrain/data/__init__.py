"""Data: uint8 image sources, seeded batch order, conversion on the device; datasets by name."""

from .loader import EpochBatchSampler, make_loader, to_device_float
from .sources import Batch, FolderImages, TensorImages
from .spec import DataInfo, DatasetSpec, data_info, dataset_spec, open_split

__all__ = [
    "Batch",
    "DataInfo",
    "DatasetSpec",
    "EpochBatchSampler",
    "FolderImages",
    "TensorImages",
    "data_info",
    "dataset_spec",
    "make_loader",
    "open_split",
    "to_device_float",
]
