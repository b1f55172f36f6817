"""Losses on raw model outputs (logits), averaged over the batch, each with its gradient.

``loss.forward(outputs, targets)`` returns the mean loss as a Python float and caches what
``loss.backward()`` needs; ``backward()`` returns the gradient of that mean with respect to
``outputs`` (same shape as ``outputs``), ready for ``model.backward``.

A model may end with the activation a loss has built in (``Softmax`` for the cross-entropy,
``Sigmoid`` for the binary cross-entropy): ``loss.fuses(last_layer)`` says so, and training
then feeds the loss that layer's input, the logits, rather than its probabilities (the fused
form never takes the log of a probability that rounded to 0). MSE and BCE take class ids as
well as arrays of targets: class ``k`` of ``C`` outputs is the one-hot row ``e_k``.
"""

from __future__ import annotations

import numpy as np

from numlp.layers import Sigmoid, Softmax, sigmoid
from numlp.registry import Registry


class Loss:
    """Base class: subclasses implement ``forward`` and ``backward``."""

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, outputs, targets) -> float:
        return self.forward(outputs, targets)

    def config(self) -> dict:
        return {}

    def fuses(self, layer) -> bool:
        """Whether this loss has ``layer`` (a model's last) built in, and takes its input."""
        return False

    def see_inputs(self, x: np.ndarray) -> None:
        """Called with each batch's inputs before ``forward`` (by training and ``evaluate``).
        A loss whose targets depend on the inputs (:class:`Distillation` asks its teacher)
        takes them here; the others need nothing."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def check_labels(labels: np.ndarray, batch: int, classes: int, who: str = "labels") -> np.ndarray:
    """Validate integer class labels ``(batch,)`` in ``[0, classes)`` and return them as intp."""
    labels = np.asarray(labels)
    if labels.shape != (batch,):
        raise ValueError(f"{who}: expected shape ({batch},) of class ids, got {labels.shape}")
    if labels.dtype.kind not in "iu":
        if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels % 1 == 0):
            labels = labels.astype(np.intp)
        else:
            raise ValueError(f"{who}: expected integer class ids, got dtype {labels.dtype}")
    if batch and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)][0]
        raise ValueError(
            f"{who}: class id {bad} is outside [0, {classes}); the model has {classes} outputs"
        )
    return labels.astype(np.intp, copy=False)


def is_class_ids(targets: np.ndarray, outputs_width: int) -> bool:
    """Whether ``targets`` are class ids ``(batch,)`` for ``outputs_width`` >= 2 outputs (and
    not one target value per sample)."""
    targets = np.asarray(targets)
    return targets.ndim == 1 and outputs_width >= 2 and targets.dtype.kind in "iu"


def one_hot_targets(targets, outputs: np.ndarray, who: str) -> np.ndarray:
    """``targets`` as an array shaped like ``outputs``: class ids become one-hot rows."""
    targets = np.asarray(targets)
    if outputs.ndim == 2 and is_class_ids(targets, outputs.shape[1]):
        ids = check_labels(targets, len(outputs), outputs.shape[1], f"{who} targets")
        hot = np.zeros(outputs.shape, dtype=outputs.dtype)
        hot[np.arange(len(ids)), ids] = 1
        return hot
    return targets


def _check_2d(outputs: np.ndarray, who: str) -> None:
    if outputs.ndim != 2:
        raise ValueError(f"{who}: expected outputs of shape (batch, classes), got {outputs.shape}")


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, fused, on logits ``(batch, classes)`` and integer labels.

    With ``log p = z - logsumexp(z)`` (the row max subtracted first, so logits of 1e4 stay
    finite) the loss is ``-mean(log p[i, y_i])``. With label smoothing ``s`` the target puts
    ``1 - s`` on the true class and spreads ``s`` evenly over all classes.

    The gradient with respect to the logits is ``(softmax(z) - target) / batch``, written into
    the probabilities in place: no one-hot matrix is ever built.
    """

    def __init__(self, label_smoothing: float = 0.0):
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def fuses(self, layer) -> bool:
        return isinstance(layer, Softmax)

    def forward(self, outputs, targets):
        _check_2d(outputs, "SoftmaxCrossEntropy")
        n, k = outputs.shape
        labels = check_labels(targets, n, k)
        rows = np.arange(n)
        # The ufuncs' own reductions: the same sums as max/sum/mean, without the Python
        # wrappers around them (5-8 us each, on every training step).
        shifted = outputs - np.maximum.reduce(outputs, axis=1, keepdims=True)
        lse = np.log(np.add.reduce(np.exp(shifted), axis=1))
        true_logp = shifted[rows, labels] - lse
        s = self.label_smoothing
        per_sample = -(1 - s) * true_logp
        if s:
            mean_logp = np.add.reduce(shifted, axis=1) / k - lse
            per_sample -= s * mean_logp
        self._cache = (shifted, lse, labels)
        return float(np.add.reduce(per_sample) / n)

    def backward(self):
        shifted, lse, labels = self._cache
        n, k = shifted.shape
        grad = np.exp(shifted - lse[:, None])  # softmax
        s = self.label_smoothing
        if s:
            grad -= s / k
        grad[np.arange(n), labels] -= 1 - s
        grad /= n
        return grad

    def config(self):
        return {"label_smoothing": self.label_smoothing}


class MSE(Loss):
    """Mean squared error ``mean((outputs - targets)**2)`` over every element (batch and features).

    Gradient: ``2 * (outputs - targets) / outputs.size``.
    """

    def forward(self, outputs, targets):
        targets = np.asarray(one_hot_targets(targets, outputs, "MSE"), dtype=outputs.dtype)
        if targets.shape != outputs.shape:
            raise ValueError(
                f"MSE: targets have shape {targets.shape} but outputs have {outputs.shape}; "
                "they must match (for class labels use SoftmaxCrossEntropy)"
            )
        self._diff = outputs - targets
        return float(np.mean(self._diff * self._diff))

    def backward(self):
        return self._diff * (2 / self._diff.size)


class BCEWithLogits(Loss):
    """Binary cross-entropy on logits ``z`` with targets ``y`` in [0, 1], fused with the sigmoid.

    ``loss = mean(max(z, 0) - z * y + log1p(exp(-|z|)))`` is the textbook
    ``-y log s(z) - (1 - y) log(1 - s(z))`` rearranged so that nothing overflows, even for
    ``|z|`` in the thousands (seed 002 got the sign wrong and trained to NaN). Gradient:
    ``(sigmoid(z) - y) / z.size``.
    """

    def fuses(self, layer) -> bool:
        return isinstance(layer, Sigmoid)

    def forward(self, outputs, targets):
        targets = one_hot_targets(targets, outputs, "BCEWithLogits")
        if outputs.ndim == 2 and outputs.shape[1] == 1 and targets.shape == outputs.shape[:1]:
            targets = targets.reshape(outputs.shape)  # (batch,) labels for a (batch, 1) head
        if targets.shape != outputs.shape:
            raise ValueError(
                f"BCEWithLogits: targets have shape {targets.shape}, outputs {outputs.shape}"
            )
        targets = targets.astype(outputs.dtype, copy=False)
        if targets.size and (targets.min() < 0 or targets.max() > 1):
            raise ValueError("BCEWithLogits: targets must be probabilities in [0, 1]")
        z = outputs
        self._cache = (z, targets)
        loss = np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))
        return float(loss.mean())

    def backward(self):
        z, targets = self._cache
        return (sigmoid(z) - targets) / z.size


class Distillation(Loss):
    """Knowledge distillation (Hinton et al. 2015): learn a teacher's probabilities besides
    the labels, on logits ``(batch, classes)`` and class ids.

    ``loss = (1 - w) * CE(z, y) + w * T**2 * KL(q || softmax(z / T))`` where ``CE`` is the
    cross-entropy with label smoothing, ``q = softmax(log p / T)`` the teacher's probabilities
    ``p`` at temperature ``T``, and ``w`` the ``soft_weight``. ``T > 1`` softens both sides so
    that the teacher's view of the wrong classes (a 4 that looks a little like a 9) carries
    weight; the ``T**2`` keeps that term's gradient on the scale of the labels' term. The
    gradient is ``(1 - w) * dCE + w * T * (softmax(z / T) - q) / batch``. With ``w = 0`` it
    is the cross-entropy.

    ``teacher(x)`` gives the probabilities for the batch inputs ``x`` (e.g. a committee's
    ``predict_proba``): it is asked in :meth:`see_inputs`, so on the very images the model
    is trained on, distortions included.
    """

    def __init__(
        self,
        teacher,
        temperature: float = 4.0,
        soft_weight: float = 0.5,
        label_smoothing: float = 0.0,
    ):
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0 <= soft_weight <= 1:
            raise ValueError(f"soft_weight must be in [0, 1], got {soft_weight}")
        self.teacher = teacher
        self.temperature = float(temperature)
        self.soft_weight = float(soft_weight)
        self.hard = SoftmaxCrossEntropy(label_smoothing)
        self._soft_targets = None

    def see_inputs(self, x):
        p = np.asarray(self.teacher(x), dtype=np.float64)
        if p.ndim != 2 or len(p) != len(x):
            raise ValueError(f"Distillation: the teacher gave shape {p.shape} for {len(x)} inputs")
        log_p = np.log(np.clip(p, 1e-30, None)) / self.temperature
        q = np.exp(log_p - log_p.max(axis=1, keepdims=True))
        self._soft_targets = q / q.sum(axis=1, keepdims=True)

    def forward(self, outputs, targets):
        _check_2d(outputs, "Distillation")
        q = self._soft_targets
        if q is None or q.shape != outputs.shape:
            raise ValueError(
                "Distillation: no teacher probabilities for these outputs; call "
                "see_inputs(x) with the batch first"
            )
        hard = self.hard.forward(outputs, targets)
        t = self.temperature
        scaled = outputs / t
        shifted = scaled - scaled.max(axis=1, keepdims=True)
        lse = np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
        log_s = shifted - lse
        q_log_q = np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0.0)
        kl = np.sum(q_log_q - q * log_s, axis=1)
        self._cache = (np.exp(log_s), q, outputs.dtype)
        w = self.soft_weight
        return float((1 - w) * hard + w * t * t * kl.mean())

    def backward(self):
        s, q, dtype = self._cache
        w, t = self.soft_weight, self.temperature
        grad = (1 - w) * self.hard.backward() + (w * t / len(s)) * (s - q)
        return grad.astype(dtype, copy=False)

    def config(self):
        return {
            "temperature": self.temperature,
            "soft_weight": self.soft_weight,
            "label_smoothing": self.hard.label_smoothing,
        }


# The losses a config names. ``settings``: the run settings each takes; ``words``: how a
# report names it; ``outputs``: the model outputs (TrainConfig.output) it goes with;
# ``reported``: a report's loss for a model trained with it (its own, without smoothing).
LOSSES = Registry("loss")
LOSSES.register(
    "cross_entropy", SoftmaxCrossEntropy, settings=("label_smoothing",), words="cross-entropy",
    outputs=("logits", "softmax"),
)  # fmt: skip
LOSSES.register("mse", MSE, words="MSE", outputs=("logits", "softmax", "sigmoid"))
LOSSES.register("bce", BCEWithLogits, words="binary cross-entropy", outputs=("logits", "sigmoid"))
