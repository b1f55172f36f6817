# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Comparing runs
#
# Which of two recipes is better, and where does each one go wrong? Every run folder holds its
# per-epoch figures (`metrics.jsonl`), its settings (`config.toml`) and its model, so runs can
# be compared after the fact: `numlp compare` overlays their curves, and the model gives the
# confusion matrix and its most confident mistakes.

# %%
import io
import os
import tempfile
from pathlib import Path

from IPython.display import Image

from numlp.config import TrainConfig
from numlp.run import Console, run_training

QUICK = os.environ.get("NUMLP_DOCS_QUICK") == "1"
work = Path(tempfile.mkdtemp())
epochs = 2 if QUICK else 8

# %% [markdown]
# ## Three recipes
#
# The `fast` default, the same without dropout and label smoothing, and a narrow network:

# %%
recipes = {
    "fast": TrainConfig(epochs=epochs),
    "no-regularisation": TrainConfig(epochs=epochs, dropout=0.0, label_smoothing=0.0),
    "narrow": TrainConfig(epochs=epochs, hidden=(64,)),
}
for name, config in recipes.items():
    summary = run_training(config, work / name, console=Console(io.StringIO(), quiet=True))
    print(
        f"{name:<18} validation {summary['val_accuracy']:.2%}  test {summary['test_accuracy']:.2%}"
    )

# %% [markdown]
# ## `numlp compare`
#
# The command prints a table and writes the curves of every run into one picture (validation
# figures where the runs have them). Any command of numlp can be called from Python with
# `numlp.cli.main`:

# %%
from numlp.cli import main

main(["compare", *(str(work / name) for name in recipes), "--out", str(work / "compare.png")])
Image(filename=work / "compare.png")

# %% [markdown]
# ## Where a model goes wrong
#
# The confusion matrix counts, for each true digit (rows), what the model answered (columns).
# The most confident mistakes are the test images the model got wrong while being most sure:
# often digits a person would hesitate over too, sometimes a label that is wrong.

# %%
from numlp import preprocess
from numlp.data import load_dataset
from numlp.io import load_model
from numlp.metrics import confusion_matrix
from numlp.report import plot_confusion, plot_mistakes

model, header = load_model(work / "fast" / "model.npz")
data = load_dataset("mnist")
proba = model.predict_proba(preprocess.apply(data.x_test, header["preprocessing"]))
cm = confusion_matrix(data.y_test, proba.argmax(axis=1), 10)
names = header["class_names"]
plot_confusion(cm, names, work / "confusion.png")
Image(filename=work / "confusion.png")

# %%
plot_mistakes(data.x_test, data.y_test, proba, names, work / "mistakes.png", count=16)
Image(filename=work / "mistakes.png")

# %% [markdown]
# `numlp report RUN` puts all of this (settings, curves, confusion matrix, mistakes, the first
# layer's weights) into one self-contained HTML page.
