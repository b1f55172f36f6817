"""Mini-batches for the training loop: the validation hold-out and one pass over the data in a
fresh random order, gathered a block at a time (and distorted, with augmentation, on a
background thread)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def validation_indices(n: int, fraction: float, rng: np.random.Generator):
    """Random disjoint sorted ``(train_index, val_index)``, holding out ``fraction`` of ``n``."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_split must be in (0, 1), got {fraction}")
    n_val = int(round(n * fraction))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"validation_split {fraction} of {n} samples leaves an empty part")
    order = rng.permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def split_validation(x, y, fraction: float, rng: np.random.Generator):
    """Hold out a random ``fraction`` of ``(x, y)``: ``(x_train, y_train), (x_val, y_val)``."""
    train, val = validation_indices(len(x), fraction, rng)
    return (x[train], y[train]), (x[val], y[val])


class BatchStream:
    """Mini-batches of ``(x[index], y[index])`` in a fresh random order each epoch.

    The order is drawn once per epoch; rows are then gathered a block of batches at a time
    (about ``block_bytes``) into buffers allocated once, and batches are views of them. This
    keeps the gather large and contiguous (no per-batch fancy indexing) without a full-size
    shuffled copy of the data. Each batch is valid until the next one is requested.

    With ``augment`` (a callable ``augment(images, rng, out=images)``, such as
    :class:`numlp.data.augment.Augment`), every block is distorted after it is gathered, on a
    background thread that prepares the next block while the current one trains (two buffers
    take turns). Each block's random draws come from its own generator, seeded by
    ``(augment_key, epoch, first row)``, so the images are the same whatever the thread timing
    and an epoch resumed half-way sees exactly what it would have seen. ``background=False``
    augments on the calling thread instead (the same images): measured on two cores, where
    BLAS keeps both busy, the thread hides none of the augmentation's cost but costs no more.
    """

    def __init__(
        self,
        x,
        y,
        index,
        batch_size,
        rng,
        shuffle=True,
        block_bytes=16 << 20,
        augment=None,
        augment_key: int = 0,
        background: bool = True,
    ):
        self.x, self.y, self.index = x, y, index
        self.background = background
        self.batch_size, self.rng, self.shuffle = batch_size, rng, shuffle
        self.augment, self.augment_key = augment, augment_key
        self.contiguous = not shuffle and len(index) == len(x) and augment is None
        if augment is not None:
            block_bytes = min(block_bytes, 2 << 20)  # small blocks: little wait at epoch start
        row_bytes = max(x[0].nbytes if len(x) else 1, 1)
        per_block = max(1, block_bytes // (row_bytes * batch_size)) * batch_size
        self.block = min(per_block, len(index))
        if not self.contiguous:
            slots = 2 if augment is not None else 1
            self.x_buffers = [
                np.empty((self.block, *x.shape[1:]), dtype=x.dtype) for _ in range(slots)
            ]
            self.y_buffers = [
                np.empty((self.block, *y.shape[1:]), dtype=y.dtype) for _ in range(slots)
            ]

    def __len__(self) -> int:
        return math.ceil(len(self.index) / self.batch_size)

    def epoch(self, skip: int = 0, epoch: int = 0):
        """Yield ``(xb, yb)`` for one pass over the data, leaving out the first ``skip`` batches
        (to resume an epoch: the order is drawn as usual, so what follows is the same).
        ``epoch`` (1, 2, ...) seeds the augmentation."""
        first_row = skip * self.batch_size
        if self.contiguous:
            for start in range(first_row, len(self.x), self.batch_size):
                yield (
                    self.x[start : start + self.batch_size],
                    self.y[start : start + self.batch_size],
                )
            return
        order = self.index[self.rng.permutation(len(self.index))] if self.shuffle else self.index
        starts = range(first_row - first_row % self.block, len(order), self.block)

        def prepare(number: int):
            block_start = starts[number]
            rows = order[block_start : block_start + self.block]
            slot = number % len(self.x_buffers)
            xs, ys = self.x_buffers[slot][: len(rows)], self.y_buffers[slot][: len(rows)]
            # mode="clip" matters: with the default "raise", np.take buffers `out` (30x slower).
            np.take(self.x, rows, axis=0, out=xs, mode="clip")
            np.take(self.y, rows, axis=0, out=ys, mode="clip")
            if self.augment is not None:
                seed = np.random.SeedSequence([self.augment_key, epoch, block_start])
                self.augment(xs, np.random.default_rng(seed), out=xs)
            return block_start, xs, ys

        def batches_of(block_start, xs, ys):
            for start in range(max(first_row - block_start, 0), len(xs), self.batch_size):
                yield xs[start : start + self.batch_size], ys[start : start + self.batch_size]

        if self.augment is None or not self.background:
            for number in range(len(starts)):
                yield from batches_of(*prepare(number))
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="numlp-augment") as worker:
            pending = worker.submit(prepare, 0)
            for number in range(len(starts)):
                block = pending.result()
                if number + 1 < len(starts):  # the other buffer, while this one trains
                    pending = worker.submit(prepare, number + 1)
                yield from batches_of(*block)
