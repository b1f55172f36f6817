"""Datasets in MNIST's IDX format: reading, writing, finding, downloading and verifying them."""

from numlp.data.datasets import DATASETS, DataError, Dataset, load_dataset, locate
from numlp.data.idx import IDXError, read_idx, write_idx

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "IDXError",
    "load_dataset",
    "locate",
    "read_idx",
    "write_idx",
]
