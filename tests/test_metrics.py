"""Confusion matrix and per-class scores against hand-counted values."""

import numpy as np

from numlp.metrics import confusion_matrix, format_report, per_class_scores


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_precision_recall_f1_by_hand():
    cm = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    scores = per_class_scores(cm)
    np.testing.assert_allclose(scores["precision"], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(scores["recall"], [0.5, 1.0, 2 / 3])
    np.testing.assert_allclose(scores["f1"], [0.5, 2 / 3, 0.8])
    assert scores["support"].tolist() == [2, 1, 3]


def test_a_class_never_predicted_scores_zero_not_nan():
    scores = per_class_scores(np.array([[2, 0], [1, 0]]))
    assert scores["precision"][1] == 0 and scores["f1"][1] == 0


def test_report_names_every_class():
    text = format_report(np.array([[5, 1], [0, 4]]), ["cat", "dog"])
    assert "cat" in text and "dog" in text and "confusion matrix" in text
