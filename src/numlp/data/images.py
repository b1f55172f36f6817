"""A picture of a digit -> the 28x28 input an MNIST model expects, the way MNIST itself was made.

MNIST digits are light ink on black, cropped to the ink, scaled to fit a 20x20 box keeping the
aspect ratio (anti-aliased), and placed in a 28x28 image so that the ink's centre of mass is at
the centre. :func:`to_mnist` does the same to a photo or scan: grayscale, invert when the
background is light, crop to the ink, fit 20x20, centre by mass. Needs Pillow (``numlp[images]``)
for files and PIL images; plain arrays work without it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


class ImageError(ValueError):
    """The picture cannot be turned into a digit (unreadable, empty, no ink)."""


# A digit needs no more: a 12-megapixel phone photo passes, a decompression bomb does not
# (Pillow's own limit is 89 megapixels). Checked from the header, before any pixel is decoded.
MAX_PIXELS = 4096 * 4096
# Larger pictures are shrunk to this many pixels on the longer side before the NumPy work: the
# digit ends up 20x20 anyway, and memory and time stay bounded.
WORK_SIZE = 1024
_OVER_LIMIT = (
    f"over the limit of {MAX_PIXELS / 1e6:.1f} megapixels; a digit needs far fewer, scale it down"
)


def load_image(source, name: str | None = None) -> np.ndarray:
    """Read a picture (a path, or the bytes of a PNG/JPG/BMP/GIF/TIFF/WebP file) as a float
    grayscale array (height, width) in 0..255, at most ``WORK_SIZE`` pixels on a side.

    Transparent pixels are put on white first, as a drawing on paper would be. A picture of
    more than ``MAX_PIXELS`` pixels is refused from its header, before it is decoded.
    """
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        raise ImportError(
            "reading images needs Pillow: pip install Pillow (numlp's images extra)"
        ) from None
    if isinstance(source, (bytes, bytearray)):
        name, opened = name or "the picture", io.BytesIO(source)
    else:
        name, opened = str(source), Path(source)
    try:
        with Image.open(opened) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{name}: {width}x{height} pixels is {_OVER_LIMIT}")
            image.draft("RGB" if image.mode == "RGB" else "L", (WORK_SIZE, WORK_SIZE))
            image = ImageOps.exif_transpose(image)  # a phone photo taken sideways stands up
            gray = _pil_gray_image(image)
            if max(gray.size) > WORK_SIZE:
                gray.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
            return np.asarray(gray, dtype=np.float64)
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: not an image Pillow can read (PNG, JPEG, BMP, GIF, TIFF or WebP)"
        ) from None
    except Image.DecompressionBombError:  # Pillow's own, far larger limit, hit on opening
        raise ImageError(f"{name}: its size is {_OVER_LIMIT}") from None
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageError):
            raise
        raise ImageError(f"{name}: a damaged or unsupported picture ({err})") from None


def _pil_gray_image(image):
    """A PIL image as 8-bit grayscale ("L"), transparent parts on white paper."""
    from PIL import Image

    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L")


def pil_to_gray(image) -> np.ndarray:
    return np.asarray(_pil_gray_image(image), dtype=np.float64)


def to_mnist(picture) -> np.ndarray:
    """``picture``: a path, the bytes of a picture file, a PIL image, or an array (height,
    width) or (height, width, 3|4).
    Returns uint8 (28, 28): bright ink on black, 20x20 ink box, centred by centre of mass."""
    if isinstance(picture, (str, Path, bytes, bytearray)):
        gray = load_image(picture)
    elif hasattr(picture, "convert") and hasattr(picture, "mode"):
        gray = pil_to_gray(picture)
    else:
        gray = _array_to_gray(picture)
    if gray.ndim != 2:
        raise ImageError(f"expected a 2-D picture, got an array of shape {gray.shape}")
    if min(gray.shape) < 2:
        height, width = gray.shape
        raise ImageError(f"the picture is only {width}x{height} pixels: too small to hold a digit")
    if not np.all(np.isfinite(gray)):
        raise ImageError("the picture contains NaN or Inf")
    ink = _ink(gray)
    # a low threshold keeps the faint anti-aliased edge, which MNIST counts in its 20x20 box
    rows = np.flatnonzero(ink.max(axis=1) > 0.03 * ink.max()) if ink.max() > 0 else []
    if len(rows) == 0:
        raise ImageError("no ink found: the picture is blank")
    cols = np.flatnonzero(ink.max(axis=0) > 0.03 * ink.max())
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    box = _fit(crop, 20)
    return _centre_by_mass(box, 28)


def _array_to_gray(array) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        rgb = array[..., :3]
        if array.shape[2] == 4:  # transparent -> white paper
            alpha = array[..., 3:4] / (255.0 if array[..., 3].max() > 1 else 1.0)
            rgb = rgb * alpha + 255.0 * (1 - alpha)
        array = rgb @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as Pillow's "L"
    if array.size and array.max() <= 1.0:
        array = array * 255.0
    return array


def _ink(gray: np.ndarray) -> np.ndarray:
    """Ink intensity (0 = background): inverted if the background (the border) is light, then
    the background level subtracted so that paper texture and shadows do not count as ink."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:
        gray = 255.0 - gray
        border = 255.0 - border
    return np.clip(gray - np.median(border), 0, None)


def _fit(crop: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is ``size`` (aspect kept), anti-aliased, values 0..255."""
    h, w = crop.shape
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    try:
        from PIL import Image

        peak = crop.max()
        image = Image.fromarray((crop / peak * 255).astype(np.float32), mode="F")
        resized = np.asarray(image.resize((new_w, new_h), Image.Resampling.BOX))
    except ImportError:  # area averaging with NumPy alone: good enough for downscaling
        resized = _area_resize(crop / crop.max() * 255, new_h, new_w)
    return np.clip(resized, 0, 255)


def _area_resize(array: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    rows = np.linspace(0, array.shape[0], new_h + 1).astype(int)
    cols = np.linspace(0, array.shape[1], new_w + 1).astype(int)
    out = np.zeros((new_h, new_w))
    for i in range(new_h):
        for j in range(new_w):
            block = array[
                rows[i] : max(rows[i + 1], rows[i] + 1), cols[j] : max(cols[j + 1], cols[j] + 1)
            ]
            out[i, j] = block.mean()
    return out


def _centre_by_mass(box: np.ndarray, size: int) -> np.ndarray:
    """Place ``box`` in a ``size`` x ``size`` canvas with its centre of mass at the centre."""
    total = box.sum()
    ys, xs = np.indices(box.shape)
    cy, cx = (ys * box).sum() / total, (xs * box).sum() / total
    # MNIST's centres of mass sit at pixel index (14, 14) on average (measured on its test set)
    top = int(round(size / 2 - cy))
    left = int(round(size / 2 - cx))
    top = min(max(top, 0), size - box.shape[0])  # keep the whole digit inside
    left = min(max(left, 0), size - box.shape[1])
    canvas = np.zeros((size, size))
    canvas[top : top + box.shape[0], left : left + box.shape[1]] = box
    return np.round(canvas).astype(np.uint8)
