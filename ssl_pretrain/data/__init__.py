"""Data: uint8 image sources, seeded batch order, conversion on the device."""

from .datasets import DataInfo, data_info, open_split
from .loader import EpochBatchSampler, make_loader, to_device_float
from .sources import Batch

__all__ = ["Batch", "DataInfo", "EpochBatchSampler", "data_info", "make_loader", "open_split", "to_device_float"]
