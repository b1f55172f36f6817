"""Where a ``fit`` is, as a small named object that goes to and from a checkpoint.

The loop's position (epoch, batch within it, the running sums of the epoch so far, the time
spent in it) together with the random generators' states, the history and the optimizer's
step count is everything needed to continue a run exactly: the same batches in the same order,
the same dropout masks and distortions, bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class TrainState:
    """The loop's position and what it has counted in the current epoch."""

    epoch: int = 0  # epochs finished
    batch: int = 0  # batches finished in the current epoch
    loss_sum: float = 0.0  # sum over the epoch's samples so far of the batch loss
    correct: int = 0  # training predictions right so far this epoch
    seen: int = 0  # samples trained so far this epoch
    epoch_seconds: float = 0.0  # time spent in the current epoch before an interruption
    rng_epoch_start: dict | None = None  # the loop generator's state when the epoch began
    history: list[dict] = field(default_factory=list)
    augment_key: int | None = None  # seeds the distortions (kept for an exact resume)
    threads: int | None = None  # BLAS threads chosen for the run (kept: results depend on it)

    def count_batch(self, loss: float, size: int, correct: int) -> None:
        self.loss_sum += loss * size
        self.seen += size
        self.correct += correct
        self.batch += 1

    def finish_epoch(self, epoch: int, logs: dict, rng: np.random.Generator) -> None:
        self.history.append(dict(logs))
        self.epoch, self.batch = epoch, 0
        self.loss_sum, self.correct, self.seen, self.epoch_seconds = 0.0, 0, 0, 0.0
        self.rng_epoch_start = rng.bit_generator.state

    def to_dict(self, rng: np.random.Generator, generators, optimizer_steps: int) -> dict:
        """JSON-ready, with the live generators' states (the checkpoint header's ``state``)."""
        return {
            **asdict(self),
            "rng": rng.bit_generator.state,
            "layer_rngs": [g.bit_generator.state for g in generators],
            "optimizer_steps": optimizer_steps,
        }

    @classmethod
    def from_dict(cls, state: dict, rng, generators, steps_per_epoch: int) -> TrainState:
        """The state saved by :meth:`to_dict`, with ``rng`` and the layers' ``generators`` put
        back where they were; ValueError (nothing changed) if it does not fit this run."""
        try:
            # "threads": absent from checkpoints written before the count was kept
            fields = [name for name in cls.__dataclass_fields__ if name != "threads"]
            position = cls(**{name: state[name] for name in fields})
            threads = state.get("threads")
            if not (threads is None or (type(threads) is int and threads > 0)):
                raise ValueError(f"its thread count {threads!r} is not a positive integer")
            position.threads = threads
            # "dropout_rngs": the name in checkpoints written before layers had generators()
            layer_rngs = list(state.get("layer_rngs", state.get("dropout_rngs")))
            if len(layer_rngs) != len(generators):
                raise ValueError(
                    f"the checkpoint has {len(layer_rngs)} layer generators, the model "
                    f"{len(generators)}"
                )
            if not 0 <= position.batch <= steps_per_epoch:
                raise ValueError("its batch position does not fit this data")
            saved_rng = state["rng"]
            position.history = [dict(record) for record in position.history]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"cannot resume from this training state: {err}") from None
        rng.bit_generator.state = saved_rng
        for generator, saved in zip(generators, layer_rngs):
            generator.bit_generator.state = saved
        return position
