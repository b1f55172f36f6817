"""A live progress bar per epoch (tqdm): images/s, ETA and the running loss.

Used by ``numlp train`` on a terminal, and in Jupyter as
``fit(..., callbacks=[ProgressBar()])`` (a notebook widget there when ipywidgets is installed);
in logs and CI (no TTY) only the one plain line per epoch of
:class:`numlp.train.EpochLogger` is written. tqdm is an optional extra
(``pip install numlp[progress]``); without it there is no bar, only the lines.
"""

from __future__ import annotations

from numlp.train import Callback


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel that can show widgets (ipywidgets installed)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def tqdm_class():
    """tqdm's notebook bar in Jupyter (a widget), its text bar elsewhere."""
    if in_notebook():
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm
    return tqdm


def tqdm_available() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class ProgressBar(Callback):
    """One tqdm bar per epoch, counting images, with the running mean loss as a postfix.

    The bar disappears when its epoch ends (``leave=False``), leaving the epoch's plain line.
    """

    def __init__(self, stream=None, refresh_steps: int = 20, mininterval: float = 0.1):
        self.stream = stream
        self.refresh_steps = refresh_steps
        self.mininterval = mininterval
        self.bar = None

    def on_train_begin(self, context):
        self.epochs = context.epochs
        self.samples = context.samples

    def on_epoch_begin(self, epoch):
        self.bar = tqdm_class()(
            total=self.samples,
            desc=f"epoch {epoch}/{self.epochs}",
            unit="img",
            unit_scale=True,
            leave=False,
            file=self.stream,
            dynamic_ncols=True,
            mininterval=self.mininterval,
        )
        self.loss_sum, self.seen, self.steps = 0.0, 0, 0

    def on_batch_end(self, step, logs):
        if self.bar is None:
            return
        self.loss_sum += logs["loss"] * logs["batch_size"]
        self.seen += logs["batch_size"]
        self.steps += 1
        self.bar.update(logs["batch_size"])
        if self.steps % self.refresh_steps == 0:
            self.bar.set_postfix(loss=f"{self.loss_sum / self.seen:.4f}", refresh=False)

    def on_epoch_end(self, epoch, logs):
        self._close()

    def on_interrupt(self, context):
        self._close()

    def on_train_end(self, history):
        self._close()

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
