"""``Committee``: several trained models that answer together by averaging their probabilities.

A committee (an ensemble) of MLPs trained from different seeds makes fewer mistakes than any
one of them: their errors differ, and the average of their class probabilities keeps what
they agree on (Ciresan et al. 2011 and Meier et al. 2011 reached MNIST's best MLP figures this
way). It behaves like a model where one is used, not trained: ``predict_proba``, ``predict``,
``evaluate``, ``summary``, ``input_shape``, ``classes``. Files: :func:`numlp.io.save_committee`.
"""

from __future__ import annotations

import html

import numpy as np

from numlp.checks import check_inputs
from numlp.layers import Softmax
from numlp.losses import Loss, check_labels
from numlp.registry import MODEL_FILES


class Committee:
    """Members that take the same input and name the same classes, answering by the mean of
    their class probabilities.

    Parameters
    ----------
    members : list of Sequential
        Two or more trained models (any architectures) with the same ``input_shape`` and
        number of classes, each giving a probability distribution over the classes (logits, or
        a softmax head; a sigmoid head's per-class probabilities do not sum to 1 and are
        refused).

    Raises
    ------
    ValueError
        Naming the member that does not fit.
    """

    def __init__(self, members):
        self.members = list(members)
        if len(self.members) < 2:
            raise ValueError(f"a committee needs at least 2 members, got {len(self.members)}")
        first = self.members[0]
        for i, member in enumerate(self.members):
            check_member(member, i)
            if tuple(member.input_shape) != tuple(first.input_shape):
                raise ValueError(
                    f"member {i} takes inputs of shape {tuple(member.input_shape)}, member 0 "
                    f"takes {tuple(first.input_shape)}: a committee's members see the same input"
                )
            if member.classes != first.classes:
                raise ValueError(
                    f"member {i} has {member.classes} classes, member 0 has {first.classes}: "
                    "a committee's members answer the same question"
                )
        self.input_shape = tuple(first.input_shape)
        self.classes = first.classes
        self.dtype = first.dtype

    def predict_proba(self, x, batch_size: int = 8192) -> np.ndarray:
        """The mean of the members' class probabilities, ``(batch, classes)``."""
        x = check_inputs(x, self.input_shape)
        total = self.members[0].predict_proba(x, batch_size).astype(np.float64)
        for member in self.members[1:]:
            total += member.predict_proba(x, batch_size)
        return (total / len(self.members)).astype(self.dtype)

    def predict(self, x, batch_size: int = 8192) -> np.ndarray:
        """Predicted class ids ``(batch,)``: the class with the highest mean probability."""
        return self.predict_proba(x, batch_size).argmax(axis=1)

    def evaluate(self, x, y, loss: Loss | None = None, batch_size: int = 8192) -> dict:
        """``{"loss": ..., "accuracy": ...}`` on ``(x, y)``, as :meth:`Sequential.evaluate
        <numlp.model.Sequential.evaluate>`: by default the cross-entropy of the mean
        probabilities (what the committee claims); a ``loss`` is given their logarithms as
        logits (``softmax(log p) = p``)."""
        x = check_inputs(x, self.input_shape)
        if len(x) == 0:
            raise ValueError("evaluate: got an empty dataset")
        y = check_labels(y, len(x), self.classes, "evaluate: y")
        proba = self.predict_proba(x, batch_size)
        accuracy = float(np.mean(proba.argmax(axis=1) == y))
        if loss is not None:
            log_p = np.log(np.clip(proba, 1e-12, None))
            loss.see_inputs(x)
            return {"loss": float(loss.forward(log_p, y)), "accuracy": accuracy}
        picked = np.clip(proba[np.arange(len(y)), y].astype(np.float64), 1e-12, None)
        return {"loss": float(-np.log(picked).mean()), "accuracy": accuracy}

    def default_loss(self):
        """None: :meth:`evaluate` scores the mean probabilities with the cross-entropy."""
        return None

    def describe(self) -> str:
        """One line for reports: ``a committee of 3 members (784-512-10, ...) averaging
        probabilities``."""
        widths = ", ".join(describe_widths(m) for m in self.members)
        return f"a committee of {len(self.members)} members ({widths}) averaging probabilities"

    def save(self, path, **metadata):
        """Write this committee to the model file ``path`` (see :meth:`Sequential.save
        <numlp.model.Sequential.save>`)."""
        return MODEL_FILES["npz"](path, self, **metadata)

    def count_parameters(self) -> int:
        return sum(member.count_parameters() for member in self.members)

    def summary(self) -> str:
        """One line per member (its layers' widths and parameters), then the whole."""
        lines = [f"Committee of {len(self.members)} members, averaging class probabilities"]
        for i, member in enumerate(self.members):
            lines.append(f"  member {i}: {describe_widths(member)}, "
                         f"{member.count_parameters():,} parameters")  # fmt: skip
        lines.append(
            f"input (batch, {', '.join(map(str, self.input_shape))}); "
            f"{self.classes} classes; {self.count_parameters():,} parameters, {self.dtype}"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Committee({len(self.members)} members)"

    def _repr_html_(self) -> str:
        """What Jupyter shows for a committee: its :meth:`summary`."""
        return f"<pre>{html.escape(self.summary())}</pre>"


def check_member(member, index: int) -> None:
    """A member must give a distribution over two or more classes, from a known input shape."""
    if member.input_shape is None:
        raise ValueError(f"member {index}: its input shape is unknown")
    if member.classes < 2:
        raise ValueError(f"member {index} has a single output; a committee averages 2+ classes")
    head = member.output_layer
    if head is not None and head.outputs_probabilities and not isinstance(head, Softmax):
        raise ValueError(
            f"member {index} ends with {type(head).__name__}: its per-class probabilities do "
            "not sum to 1, so averaging them with others would not give a distribution"
        )


def describe_widths(model) -> str:
    """``784-1024-1024-10``: the input size and every layer's output width where it changes."""
    widths = [int(np.prod(model.input_shape))]
    for shape in model.output_shapes():
        if shape and len(shape) == 1 and shape[0] != widths[-1]:
            widths.append(shape[0])
    return "-".join(map(str, widths))
