"""Datasets held as tensors on the device, and the samplers that batch them by index."""
from sgdexp.data.datasets import DATASETS, Dataset, load_dataset
from sgdexp.data.samplers import SAMPLERS, Sampler, make_sampler, random_batches

__all__ = ["DATASETS", "Dataset", "load_dataset", "SAMPLERS", "Sampler", "make_sampler", "random_batches"]
