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
# # Reaching 99 %
#
# A plain MLP tops out near 98.5 % on MNIST: it learns the 60,000 training images too well. Three
# things take it past 99 %, all of them ways of not letting it memorise:
#
# 1. **distortions**: every training image is shifted, turned, zoomed and bent afresh each
#    epoch, so the network never sees the same picture twice (Simard et al. 2003);
# 2. **dropout**: each hidden unit is switched off at random during training, so no unit can
#    rely on another;
# 3. **weight decay** (AdamW's, decoupled from the gradient): weights shrink a little each step
#    unless the data keep them large.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import numlp

QUICK = os.environ.get("NUMLP_DOCS_QUICK") == "1"
places = [Path.cwd(), *Path.cwd().parents, *Path(numlp.__file__).resolve().parents]
DOCS = next(p / "docs" for p in places if (p / "docs" / "data").is_dir())

# %% [markdown]
# ## What the distortions look like
#
# `Augment` composes a random affine map (shift, rotation, zoom, shear) and a smooth random
# displacement field (the elastic part) into one field of source coordinates, and resamples
# each image once. The first column is the original; the others are what training sees in five
# different epochs.

# %%
from numlp.data import load_dataset
from numlp.data.augment import Augment

data = load_dataset("mnist")
augment = Augment(shift=2, rotation=10, scale=0.1, elastic_alpha=12, elastic_sigma=4)
originals = data.x_train[:6].astype(np.float32)
rng = np.random.default_rng(0)
fig, axes = plt.subplots(6, 6, figsize=(6, 6))
for row, image in enumerate(originals):
    views = [image] + [augment(image[None].copy(), rng)[0] for _ in range(5)]
    for col, view in enumerate(views):
        axes[row, col].imshow(view, cmap="gray_r")
        axes[row, col].axis("off")
axes[0, 0].set_title("original", fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## The `best` preset
#
# The recipe is a config file shipped with numlp; every choice in it was made on a validation
# split held out from the training data:

# %%
from numlp.config import preset_path

print(preset_path("best").read_text())

# %% [markdown]
# Its curves, from a real run of `numlp train --preset best --seed 0` (30 epochs, about 5 min
# on two cores). Training accuracy stays *below* validation accuracy all along: the training
# images are distorted and seen through dropout, the validation images are not. The cosine
# schedule brings the learning rate to zero at the end, where the last gains come.

# %%
import json

from numlp.report import plot_curves

records = [
    json.loads(line) for line in (DOCS / "data/best-seed0-metrics.jsonl").read_text().splitlines()
]
curves = Path(tempfile.mkdtemp()) / "best-curves.png"
plot_curves(records, curves, title="--preset best, seed 0")
best = records[-1]
print(f"after {best['epoch']} epochs: validation accuracy {best['val_accuracy']:.2%}")

from IPython.display import Image  # noqa: E402

Image(filename=curves)

# %% [markdown]
# ## 99 % in a minute: `quick99`
#
# `numlp sweep` searched the fast recipe's settings at 10 epochs for the best validation
# accuracy; the winner is the `quick99` preset: wider layers, almost no dropout, light
# distortions, a larger batch. Here it trains as `numlp train --preset quick99` would (one
# epoch only when this site is built quickly):

# %%
from numlp.config import load_config
from numlp.run import Console, run_training

config = load_config(preset_path("quick99"))
if QUICK:
    config = config.updated(epochs=1)
summary = run_training(config, Path(tempfile.mkdtemp()) / "quick99", console=Console(quiet=True))

# %% [markdown]
# Measured over three seeds, `quick99` gives 99.08 ± 0.02 % in about a minute and `best`
# 99.34 ± 0.04 % in about four (see [recipes](../../recipes/)). Past that, a committee of
# several `best` models averages away their individual mistakes: `numlp train --preset best
# --members 5`.
