"""Classification metrics from predictions: confusion matrix, per-class precision/recall/F1."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """``cm[i, j]`` counts samples of true class ``i`` predicted as ``j``: (classes, classes)."""
    y_true = np.asarray(y_true, dtype=np.intp)
    y_pred = np.asarray(y_pred, dtype=np.intp)
    return np.bincount(y_true * classes + y_pred, minlength=classes * classes).reshape(
        classes, classes
    )


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    actual = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual}


def format_report(cm: np.ndarray, class_names) -> str:
    """A text table of per-class scores followed by the confusion matrix."""
    scores = per_class_scores(cm)
    names = [str(n) for n in class_names]
    width = max(len(n) for n in names + ["class"])
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for i, name in enumerate(names):
        lines.append(
            f"{name:<{width}}  {scores['precision'][i]:9.4f}  {scores['recall'][i]:6.4f}  "
            f"{scores['f1'][i]:.4f}  {scores['support'][i]:7d}"
        )
    macro = {k: float(np.mean(scores[k])) for k in ("precision", "recall", "f1")}
    lines.append(
        f"{'macro avg':<{width}}  {macro['precision']:9.4f}  {macro['recall']:6.4f}  "
        f"{macro['f1']:.4f}  {int(cm.sum()):7d}"
    )
    cell = max(5, len(str(int(cm.max()))) + 1)
    lines.append("")
    lines.append("confusion matrix (rows: true class, columns: predicted)")
    lines.append(" " * (width + 1) + "".join(f"{n[: cell - 1]:>{cell}}" for n in names))
    for i, name in enumerate(names):
        lines.append(f"{name:<{width}} " + "".join(f"{v:>{cell}d}" for v in cm[i]))
    return "\n".join(lines)


def top_classes(proba: np.ndarray, names, k: int) -> list[dict]:
    """The ``k`` likeliest classes of one probability row, as ``numlp predict --json`` and
    ``POST /predict`` both give them."""
    order = np.argsort(-proba)[:k]
    return [{"class": names[i], "id": int(i), "probability": float(proba[i])} for i in order]
