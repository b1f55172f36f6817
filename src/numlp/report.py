"""Pictures of a run: learning curves, confusion matrix, confident mistakes, first-layer weights,
per-class accuracy, sample grids, run comparisons, and a self-contained HTML report.

Uses matplotlib with the Agg backend (files only, no window); it is an optional extra
(``pip install numlp[plots]``): without it, training works and :func:`require_matplotlib`
says how to get the plots.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from numlp.atomic import atomic_write_bytes, atomic_write_text

PLOT_FILES = {
    "curves": "curves.png",
    "confusion": "confusion.png",
    "mistakes": "mistakes.png",
    "weights": "first_layer.png",
    "per_class": "per_class.png",
}


class PlotsUnavailable(ImportError):
    """matplotlib is not installed."""


def require_matplotlib():
    """Import matplotlib with the Agg backend, or raise PlotsUnavailable saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable(
            "plots need matplotlib: pip install matplotlib (numlp's plots extra; training "
            "works without it)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Save a figure as PNG atomically (a temp name in the same folder, then rename)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def _is_epoch_record(record) -> bool:
    """An epoch number from 1 and finite numbers for every figure (a file edited by hand or
    damaged may hold anything)."""
    if not isinstance(record, dict) or type(record.get("epoch")) is not int:
        return False
    numbers = all(
        type(v) in (int, float) and math.isfinite(v) for k, v in record.items() if k != "epoch"
    )
    return numbers and 0 < record["epoch"] <= 1_000_000


def read_metrics(run: Path) -> list[dict]:
    """The per-epoch records of a run folder's ``metrics.jsonl``."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{run} has no metrics.jsonl: is it a numlp run folder?")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                raise ValueError(f"{path}: line {number} is not JSON") from None
            if not _is_epoch_record(record):
                raise ValueError(
                    f"{path}: line {number} is not a JSON object of metrics (one epoch's numbers)"
                )
            records.append(record)
    return records


def plot_curves(records: list[dict], path, title: str = "") -> Path:
    """Loss and accuracy per epoch, training vs validation (and the test set, dashed, when the
    run watched it: ``watch_test``)."""
    plt = require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [r["epoch"] for r in records]
    lines = (
        ("", "train", "-"),
        ("val_", "validation", "-"),
        ("watched_test_", "test (watched)", "--"),
    )
    for key, label, ax in (("loss", "loss", ax_loss), ("accuracy", "accuracy", ax_acc)):
        for prefix, name, style in lines:
            values = [r.get(prefix + key) for r in records]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
        else:  # a loss without classes (regression targets) has no accuracy to show
            ax.text(0.5, 0.5, f"no {label} for this loss", ha="center", transform=ax.transAxes)
    fig.suptitle(title or "learning curves")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion(cm: np.ndarray, class_names, path) -> Path:
    """The confusion matrix with counts; rows are true classes, columns predictions."""
    plt = require_matplotlib()
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * k, 1 + 0.6 * k))
    # log colour scale so that the few errors are visible next to the large diagonal
    ax.imshow(np.log1p(cm), cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if i == j else "black",
            )
    ax.set_xticks(range(k), [str(n) for n in class_names], rotation=45, ha="right")
    ax.set_yticks(range(k), [str(n) for n in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (test set)")
    fig.tight_layout()
    return save_figure(fig, path)


def as_picture(image) -> np.ndarray | None:
    """One stored input as a picture to show: ``(h, w)`` or ``(h, w, 3)`` as it is, 784 values
    as 28x28; None for a table's row, which is no picture."""
    image = np.asarray(image)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        return image
    if image.ndim == 1 and image.size == 784:
        return image.reshape(28, 28)
    return None


def plot_mistakes(images, y_true, proba, class_names, path, count: int = 25) -> Path:
    """The ``count`` test images the model got wrong with the highest confidence."""
    plt = require_matplotlib()
    y_pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    order = wrong[np.argsort(-proba[wrong, y_pred[wrong]])][:count]
    side = max(1, math.ceil(math.sqrt(max(len(order), 1))))
    fig, axes = plt.subplots(side, side, figsize=(1.6 * side, 1.9 * side), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, order):
        ax.imshow(as_picture(images[i]), cmap="gray_r")
        ax.set_title(
            f"true {class_names[y_true[i]]}\npred {class_names[y_pred[i]]} "
            f"{proba[i, y_pred[i]]:.0%}",
            fontsize=7,
        )
    fig.suptitle(f"most confident mistakes ({len(wrong)} in all)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_first_layer(weights: np.ndarray, path, count: int = 64) -> Path:
    """The first Dense layer's weights, one 28x28 image per hidden unit (blue -, red +)."""
    plt = require_matplotlib()
    count = min(count, weights.shape[1])
    side = math.ceil(math.sqrt(count))
    fig, axes = plt.subplots(side, side, figsize=(side, side), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for unit, ax in enumerate(axes.flat[:count]):
        w = weights[:, unit].reshape(28, 28)
        limit = np.abs(w).max() or 1.0
        ax.imshow(w, cmap="bwr", vmin=-limit, vmax=limit)
    fig.suptitle(f"first-layer weights ({count} of {weights.shape[1]} units)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_per_class(cm: np.ndarray, class_names, path) -> Path:
    """Accuracy (recall) of each class on the test set."""
    plt = require_matplotlib()
    accuracy = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(class_names)), 4))
    bars = ax.bar([str(n) for n in class_names], accuracy * 100, color="tab:blue")
    ax.bar_label(bars, labels=[f"{a:.1%}" for a in accuracy], fontsize=7)
    low = max(0.0, accuracy.min() * 100 - 5)
    ax.set_ylim(low, 100.5)
    ax.set_ylabel("accuracy %")
    ax.set_title("per-class accuracy (test set)")
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_samples(images, labels, class_names, path, count: int = 36, title: str = "") -> Path:
    """A grid of the first ``count`` images with their labels."""
    plt = require_matplotlib()
    count = min(count, len(images))
    side = math.ceil(math.sqrt(count))
    fig, axes = plt.subplots(side, side, figsize=(1.5 * side, 1.7 * side), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:count]):
        ax.imshow(images[i], cmap="gray_r")
        ax.set_title(str(class_names[labels[i]]), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_comparison(runs: dict[str, list[dict]], path) -> Path:
    """Validation (else training) loss and accuracy of several runs, overlaid."""
    plt = require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, records in runs.items():
        epochs = [r["epoch"] for r in records]
        for key, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
            prefix = "val_" if any(f"val_{key}" in r for r in records) else ""
            ax.plot(
                epochs,
                [r.get(prefix + key) for r in records],
                marker="o",
                label=f"{name} ({'validation' if prefix else 'train'})",
            )
    for ax, label in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def make_run_plots(run, data_dir=None, download: bool = True) -> dict[str, Path]:
    """Every plot of a run folder, written into it (its model and test set loaded for the
    purpose); returns name -> path."""
    from numlp.data.datasets import DataSource
    from numlp.io import load_model

    run = Path(run)
    require_matplotlib()
    model, header = load_model(run / "model.npz")
    data, x, y = DataSource(data_dir, download).test_split(header)
    names = header.get("class_names") or list(data.class_names)
    return plot_run(run, model, names, data.x_test, x, y)


def plot_run(run, model, names, images, x, y) -> dict[str, Path]:
    """Every plot of a run folder from its trained ``model`` and test set (``images`` as stored,
    ``x`` as the model sees them, labels ``y``); returns name -> path."""
    from numlp.metrics import confusion_matrix

    run = Path(run)
    require_matplotlib()
    proba = model.predict_proba(x)
    cm = confusion_matrix(y, proba.argmax(axis=1), len(names))
    paths = {}
    if len(model.members) > 1:  # a committee: its members' curves, where their folders are
        members = {f.parent.name: read_metrics(f.parent)
                   for f in sorted(run.glob("members/*/metrics.jsonl"))}  # fmt: skip
        if members:
            paths["curves"] = plot_comparison(members, run / PLOT_FILES["curves"])
    else:
        paths["curves"] = plot_curves(read_metrics(run), run / PLOT_FILES["curves"], run.name)
    paths |= {
        "confusion": plot_confusion(cm, names, run / PLOT_FILES["confusion"]),
        "per_class": plot_per_class(cm, names, run / PLOT_FILES["per_class"]),
    }
    if len(images) and as_picture(images[0]) is not None:  # a table's rows are no pictures
        paths["mistakes"] = plot_mistakes(images, y, proba, names, run / PLOT_FILES["mistakes"])
    first = next((layer for layer in model.members[0].layers if layer.parameters()), None)
    weights = first.parameters()[0].value if first is not None else None
    if weights is not None and weights.ndim == 2 and weights.shape[0] == 784:
        paths["weights"] = plot_first_layer(weights, run / PLOT_FILES["weights"])
    return paths


def html_report(run, out=None) -> Path:
    """One self-contained HTML page (images embedded as data URIs) with the run's settings,
    figures and plots. Plots must exist already (see :func:`make_run_plots`)."""
    from numlp.io import load_model

    run = Path(run)
    model, header = load_model(run / "model.npz")  # every part of the header checked
    training = header.get("training", {})
    config_text = (run / "config.toml").read_text() if (run / "config.toml").exists() else ""
    records = read_metrics(run) if len(model.members) == 1 else []
    # the figures as the command line gives them: accuracies in percent, and the loss
    # `numlp evaluate` reports first, the training loss (label smoothing...) named as such
    rows = "".join(
        f"<tr><th>{html.escape(label)}</th>"
        f"<td>{html.escape(_fmt(training.get(key), key))}</td></tr>"
        for key, label in (
            ("dataset", "dataset"),
            ("epochs", "epochs"),
            ("seconds", "training seconds"),
            ("members", "committee members"),
            ("test_accuracy", "test accuracy"),
            ("test_cross_entropy", "test cross-entropy (as numlp evaluate reports it)"),
            ("test_loss", "test loss as trained (label smoothing or distillation included)"),
            ("val_accuracy", "validation accuracy"),
            ("train_accuracy", "training accuracy"),
        )
        if key in training or key in ("dataset", "epochs")
    )
    epoch_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(_fmt(r.get(k), k))}</td>"
            for k in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")
        )
        + "</tr>"
        for r in records
    )
    figures = []
    for name, file in PLOT_FILES.items():
        path = run / file
        if path.exists():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            figures.append(
                f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(name.replace('_', ' '))}</figcaption></figure>"
            )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>numlp run {html.escape(run.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th {{ background: #f4f4f4; text-align: left; }}
pre {{ background: #f8f8f8; padding: 1em; overflow-x: auto; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; border: 1px solid #eee; }}
</style></head>
<body data-images="{len(figures)}">
<h1>numlp run <code>{html.escape(run.name)}</code></h1>
<p>numlp {html.escape(str(header.get("numlp_version")))}; model
{html.escape(model.describe())}</p>
<h2>Results</h2><table>{rows}</table>
{_members_table(header) if len(model.members) > 1 else _epoch_table(epoch_rows)}
<h2>Plots</h2>{"".join(figures) or "<p>No plots in this run folder (run numlp plot).</p>"}
<h2>Configuration</h2><pre>{html.escape(config_text)}</pre>
<script>
// Lets a headless browser check that every embedded image decoded.
window.addEventListener("load", () => {{
  const loaded = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.loaded = String(loaded);
}});
</script>
</body></html>
"""
    out = Path(out) if out else run / "report.html"
    atomic_write_text(out, page)
    return out


def _epoch_table(epoch_rows: str) -> str:
    return (
        "<h2>Per epoch</h2><table><tr><th>epoch</th><th>loss</th><th>accuracy</th>"
        "<th>val loss</th><th>val accuracy</th><th>lr</th><th>seconds</th></tr>"
        f"{epoch_rows}</table>"
    )


def _members_table(header: dict) -> str:
    rows = "".join(
        f"<tr><td>{i}</td>"
        + "".join(
            f"<td>{html.escape(_fmt(member.get('training', {}).get(key)))}</td>"
            for key in ("epochs", "seconds", "val_accuracy", "test_accuracy")
        )
        + "</tr>"
        for i, member in enumerate(header["members"])
    )
    return (
        "<h2>Members</h2><table><tr><th>member</th><th>epochs</th><th>seconds</th>"
        f"<th>val accuracy</th><th>test accuracy</th></tr>{rows}</table>"
    )


def _fmt(value, key: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and key.endswith("accuracy"):
        return f"{value:.2%}"  # as the command line prints them
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
