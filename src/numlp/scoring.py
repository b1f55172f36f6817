"""How a model's outputs meet a loss and the targets: which outputs the loss takes (a
probability head the loss has built in is skipped, see :meth:`numlp.losses.Loss.fuses`) and
how many predictions are right, for every loss on class ids and for a single 0/1 output."""

from __future__ import annotations

import numpy as np

from numlp.losses import BCEWithLogits, SoftmaxCrossEntropy, check_labels, is_class_ids


class Scorer:
    """Scoring of ``model`` under ``loss`` for targets like ``y``.

    ``forward_options`` go to ``model.forward``/``backward`` (``head=False`` when the loss has
    the model's last layer built in). ``scores`` says whether accuracy means something: the
    targets are class ids (the top output is the prediction, whatever the loss), or a single
    output is trained with the binary cross-entropy (above 0.5 is class 1).
    """

    def __init__(self, model, loss, y):
        head = getattr(model, "output_layer", None)
        self.fused = head is not None and loss.fuses(head)
        self.forward_options = {"head": False} if self.fused else {}
        self.classes = model.classes
        self.class_ids = isinstance(loss, SoftmaxCrossEntropy) or is_class_ids(y, self.classes)
        self.binary = not self.class_ids and self.classes == 1 and isinstance(loss, BCEWithLogits)
        probabilities = head is not None and head.outputs_probabilities and not self.fused
        self.threshold = 0.5 if probabilities else 0.0  # a logit of 0 is a probability of 0.5
        self.scores = self.class_ids or self.binary

    def checked(self, y, who: str) -> np.ndarray:
        """``y``, checked to be class ids in range when they are meant as such."""
        if self.class_ids:
            return check_labels(y, len(y), self.classes, who)
        return np.asarray(y)

    def correct(self, outputs: np.ndarray, y: np.ndarray) -> int:
        if self.class_ids:
            return int(np.count_nonzero(outputs.argmax(axis=1) == y))
        if self.binary:
            predicted = outputs[:, 0] > self.threshold
            return int(np.count_nonzero(predicted == (np.reshape(y, -1) > 0.5)))
        return 0
