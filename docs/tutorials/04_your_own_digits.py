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
# # Your own digits
#
# A model trained on MNIST expects MNIST's pictures: white ink on black, the digit fitted into
# a 20x20 box and centred by its centre of mass in 28x28. A photo of a digit on paper is none
# of that. `numlp.data.images.to_mnist` prepares any picture the way MNIST was made; then the
# model can read it.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

QUICK = os.environ.get("NUMLP_DOCS_QUICK") == "1"
work = Path(tempfile.mkdtemp())

# %% [markdown]
# ## A "photo"
#
# Instead of a camera, we draw one: dark ink on grey, uneven paper, a thick pen stroke for a 7,
# off centre and a little blurred. Replace `photo` with the path of a picture of your own.

# %%
rng = np.random.default_rng(7)
paper = (200 + rng.normal(0, 8, (300, 400))).clip(0, 255).astype(np.uint8)
picture = Image.fromarray(paper).convert("RGB")
pen = ImageDraw.Draw(picture)
pen.line([(150, 70), (270, 70), (200, 250)], fill=(40, 40, 60), width=22, joint="curve")
pen.line([(175, 160), (250, 160)], fill=(40, 40, 60), width=16)
picture = picture.filter(ImageFilter.GaussianBlur(2))
photo = work / "my-seven.png"
picture.save(photo)
picture

# %% [markdown]
# ## As MNIST made its digits
#
# `to_mnist` turns it grey, inverts it (the background is light), crops it to the ink, fits
# the ink into 20x20 keeping its proportions, and centres it by mass in 28x28:

# %%
from numlp.data.images import to_mnist

digit = to_mnist(photo)
fig, axes = plt.subplots(1, 2, figsize=(6, 3))
axes[0].imshow(np.asarray(picture.convert("L")), cmap="gray")
axes[0].set_title("the photo")
axes[1].imshow(digit, cmap="gray")
axes[1].set_title(f"to_mnist: {digit.shape} {digit.dtype}")
for ax in axes:
    ax.axis("off")

# %% [markdown]
# ## A model to read it
#
# A `quick99` model (one epoch when this site is built quickly, ten otherwise):

# %%
from numlp.config import load_config, preset_path
from numlp.run import Console, run_training

config = load_config(preset_path("quick99")).updated(epochs=1 if QUICK else 10)
summary = run_training(config, work / "run", console=Console(quiet=True))

# %% [markdown]
# ## Predictions
#
# The model file says how its pixels were scaled (`preprocessing`), so a prediction applies
# exactly what training did. The same as `numlp predict run/model.npz my-seven.png`:

# %%
from numlp import preprocess
from numlp.io import class_names, load_model
from numlp.metrics import top_classes

model, header = load_model(work / "run" / "model.npz")
x = preprocess.apply(digit[None], header["preprocessing"])
probabilities = model.predict_proba(x)[0]
for choice in top_classes(probabilities, class_names(header, model.classes), 3):
    print(f"{choice['class']}: {choice['probability']:.1%}")

# %% [markdown]
# ## The served page
#
# `numlp serve run/model.npz` opens a page at http://127.0.0.1:8000/ where you draw a digit
# with the mouse and see the model's answer as you draw. The page sends the drawing as a PNG to
# `POST /predict`. Here we ask the same application directly, without a network, as a test
# would:

# %%
from starlette.testclient import TestClient

from numlp.serve import create_app

client = TestClient(create_app(model, header))
page = client.get("/")
print("GET / ->", page.status_code, "| the page has a canvas:", "<canvas" in page.text)
answer = client.post("/predict", content=photo.read_bytes(), headers={"content-type": "image/png"})
print("POST /predict ->", answer.status_code, answer.json()["top"])

# %% [markdown]
# The answer also holds the 28x28 input the model saw, so the page can show it beside the
# drawing. Pictures that are not pictures (wrong bytes, a huge size, no ink) get a clear
# error with status 4xx, never a crash.
