"""On-the-fly data augmentation for image batches, vectorized over the batch in NumPy.

Every transform here moves pixels: it computes, for each output pixel of each image, the point
of the source image it comes from, then samples the source there by bilinear interpolation
(zero outside the image, which is the background of MNIST-like data). A random affine map
(shift, rotation, scale, shear), a horizontal flip and an elastic distortion (Simard,
Steinkraus & Platt 2003, "Best practices for convolutional neural networks applied to visual
document analysis") are composed into one field of source coordinates, so an image is
resampled once, not twice. Random erasing (Zhong et al. 2017, "Random erasing data
augmentation") then blanks a random rectangle of some images: it moves no pixel.

Shapes: ``images: (batch, height, width)`` float in [0, 1]; the output has the same shape,
dtype and range (bilinear weights are a convex combination, so nothing leaves [0, 1]).
Rows are ``y`` (down) and columns ``x`` (right); a positive shift moves the content down/right.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from numlp import kernels


@dataclass(frozen=True)
class Augment:
    """Random distortions applied to each training image, a fresh draw for every image.

    Parameters
    ----------
    shift : float
        Largest translation in pixels, drawn uniformly in ``[-shift, shift]`` on each axis.
    rotation : float
        Largest rotation in degrees, uniform in ``[-rotation, rotation]``.
    scale : float
        Relative zoom: the factor is uniform in ``[1 - scale, 1 + scale]`` (same on both axes).
    shear : float
        Largest shear angle in degrees (horizontal shear), uniform in ``[-shear, shear]``.
    elastic_alpha : float
        Strength of the elastic distortion in pixels (0 turns it off). Simard et al. used 34
        with ``elastic_sigma`` 4 on 28x28 digits; smaller values (8-16) are gentler.
    elastic_sigma : float
        Smoothness of the elastic displacement field: the standard deviation, in pixels, of
        the Gaussian that smooths white noise into it.
    flip : float
        Probability of a left-right mirror image (for clothes, say; never for digits).
    erase : float
        Probability of random erasing: a rectangle of 2 % to 33 % of the image, of aspect
        ratio 0.3 to 3.3, set to 0 (the background) at a random place inside the image.
    chunk : int
        Images processed at a time, so that the temporaries stay in the CPU caches.
    """

    # The help of each setting is what `numlp train --help` shows for its flag.
    shift: float = field(default=0.0, metadata={"help": "largest shift in pixels"})
    rotation: float = field(default=0.0, metadata={"help": "largest rotation in degrees"})
    scale: float = field(default=0.0, metadata={"help": "zoom in [1-S, 1+S]"})
    shear: float = field(default=0.0, metadata={"help": "largest shear in degrees"})
    elastic_alpha: float = field(
        default=0.0, metadata={"help": "elastic distortion strength in pixels (0: none)"}
    )
    elastic_sigma: float = field(
        default=4.0, metadata={"help": "elastic field smoothness in pixels"}
    )
    flip: float = field(default=0.0, metadata={"help": "probability of a left-right mirror image"})
    erase: float = field(
        default=0.0, metadata={"help": "probability of blanking a random rectangle"}
    )
    chunk: int = field(default=256, metadata={"setting": False})  # work size, not a recipe

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"Augment: {f.name} must be a number >= 0, got {value!r}")
        if self.scale >= 1:
            raise ValueError(
                f"Augment: scale must be below 1 (a zoom factor > 0), got {self.scale}"
            )
        if self.rotation > 180 or self.shear >= 90:
            raise ValueError("Augment: rotation must be <= 180 degrees and shear < 90 degrees")
        for name in ("flip", "erase"):
            if getattr(self, name) > 1:
                raise ValueError(
                    f"Augment: {name} is a probability in [0, 1], got {getattr(self, name)}"
                )
        if self.elastic_alpha and self.elastic_sigma <= 0:
            raise ValueError("Augment: elastic_sigma must be > 0 when elastic_alpha is set")
        if self.chunk < 1:
            raise ValueError("Augment: chunk must be a positive integer")

    @property
    def active(self) -> bool:
        """Whether this changes anything at all (all-zero settings are the identity)."""
        return self.moves_pixels or bool(self.erase)

    @property
    def moves_pixels(self) -> bool:
        """Whether images are resampled (anything but erasing is set)."""
        return any(
            (self.shift, self.rotation, self.scale, self.shear, self.elastic_alpha, self.flip)
        )

    def config(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "chunk"}

    def describe(self) -> str:
        """The settings in use, e.g. ``shift 2, rotation 10, elastic_alpha 12, elastic_sigma 4``
        (``none`` if nothing is distorted)."""
        used = {k: v for k, v in self.config().items() if v}
        if not self.elastic_alpha:
            used.pop("elastic_sigma", None)
        return ", ".join(f"{k} {v:g}" for k, v in used.items()) or "none"

    def __call__(
        self, images: np.ndarray, rng: np.random.Generator, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Distort ``images: (batch, height, width)``; returns ``out`` (a new array if None).

        ``out`` may be ``images`` itself: each chunk is read fully before it is written.
        """
        images = np.asarray(images)
        if images.ndim != 3:
            raise ValueError(
                f"Augment expects images of shape (batch, height, width), got {images.shape}; "
                "reshape flat inputs, e.g. x.reshape(-1, 28, 28)"
            )
        if out is None:
            out = np.empty_like(images)
        if not self.active:
            out[...] = images
            return out
        shape = images.shape[1:]
        moves_pixels = self.moves_pixels
        for start in range(0, len(images), self.chunk):
            part = images[start : start + self.chunk]
            done = out[start : start + len(part)]
            if moves_pixels:
                done[...] = sample_bilinear(part, *self.source_coordinates(len(part), shape, rng))
            else:  # erasing alone: nothing to resample
                done[...] = part
            if self.erase:  # no draws when off: older recipes see the same random stream
                erase_rectangles(done, rng, self.erase)
        return out

    def source_coordinates(self, n: int, shape: tuple[int, int], rng: np.random.Generator):
        """Where each output pixel of ``n`` images of ``shape`` samples its source: ``(rows,
        cols)``, each ``(n, height, width)``, the affine map, elastic field and flip composed."""
        height, width = shape
        rows, cols = affine_coordinates(
            random_affine(n, rng, self.rotation, self.scale, self.shear),
            rng.uniform(-self.shift, self.shift, size=(n, 2)) if self.shift else None,
            shape,
            n,
        )
        if self.elastic_alpha:
            d_rows, d_cols = elastic_displacements(
                n, shape, rng, self.elastic_alpha, self.elastic_sigma
            )
            rows += d_rows
            cols += d_cols
        if self.flip:
            mirrored = rng.random(n) < self.flip
            cols[mirrored] = (width - 1) - cols[mirrored]
        return rows, cols


ERASE_AREA = (0.02, 0.33)  # fraction of the image (Zhong et al. 2017's defaults)
ERASE_RATIO = (0.3, 1 / 0.3)  # height / width of the rectangle, drawn on a log scale


def erase_rectangles(images: np.ndarray, rng: np.random.Generator, probability: float) -> None:
    """Random erasing in place: each of ``images: (batch, height, width)`` is, with
    ``probability``, blanked (set to 0) on one rectangle of area :data:`ERASE_AREA` of the
    image and aspect ratio :data:`ERASE_RATIO`, placed uniformly where it fits.

    Zhong et al. draw again until the rectangle fits; here its sides are clipped to the image
    instead, so every image takes the same number of draws (whether erased or not) and the
    whole batch is one vectorised step."""
    batch, height, width = images.shape
    erased = rng.random(batch) < probability
    area = rng.uniform(*ERASE_AREA, batch) * (height * width)
    ratio = np.exp(rng.uniform(np.log(ERASE_RATIO[0]), np.log(ERASE_RATIO[1]), batch))
    tall = np.clip(np.rint(np.sqrt(area * ratio)), 1, height).astype(np.intp)
    wide = np.clip(np.rint(np.sqrt(area / ratio)), 1, width).astype(np.intp)
    top = (rng.random(batch) * (height - tall + 1)).astype(np.intp)
    left = (rng.random(batch) * (width - wide + 1)).astype(np.intp)
    rows, cols = np.arange(height), np.arange(width)
    in_rows = (rows >= top[:, None]) & (rows < (top + tall)[:, None])  # (batch, height)
    in_cols = (cols >= left[:, None]) & (cols < (left + wide)[:, None])  # (batch, width)
    inside = in_rows[:, :, None] & in_cols[:, None, :] & erased[:, None, None]
    images[inside] = 0


def random_affine(
    batch: int, rng: np.random.Generator, rotation=0.0, scale=0.0, shear=0.0
) -> np.ndarray | None:
    """``(batch, 2, 2)`` linear maps (in ``(row, col)`` coordinates): shear, then scale, then
    rotate, with angles in degrees drawn uniformly up to the given limits (positive angles
    turn counter-clockwise on screen). None if all are 0."""
    if not (rotation or scale or shear):
        return None
    theta = np.radians(rng.uniform(-rotation, rotation, batch)) if rotation else np.zeros(batch)
    zoom = rng.uniform(1 - scale, 1 + scale, batch) if scale else np.ones(batch)
    slant = np.tan(np.radians(rng.uniform(-shear, shear, batch))) if shear else np.zeros(batch)
    cos, sin = np.cos(theta), np.sin(theta)
    # Positive angles turn counter-clockwise on screen, as np.rot90 and PIL do. Rows grow
    # downwards, so in (row, col) that is [[cos, -sin], [sin, cos]]: right (0, 1) goes up.
    rotate = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    # Horizontal shear: x' = x + slant * y, y' = y.
    shear_map = np.zeros((batch, 2, 2))
    shear_map[:, 0, 0] = 1
    shear_map[:, 1, 1] = 1
    shear_map[:, 1, 0] = slant
    return zoom[:, None, None] * (rotate @ shear_map)


def affine_coordinates(matrices, shifts, shape: tuple[int, int], batch: int | None = None):
    """Source coordinates ``(rows, cols)``, each ``(batch, height, width)`` float32, that make
    the output ``out = A (src - centre) + centre + shift``: for each output pixel, where in the
    source image to sample. ``matrices: (batch, 2, 2)`` or None (identity); ``shifts:
    (batch, 2)`` in pixels ``(down, right)`` or None (no shift); ``batch`` is needed only when
    both are None."""
    height, width = shape
    if batch is None:
        batch = len(matrices) if matrices is not None else len(shifts)
    centre_row, centre_col = (height - 1) / 2, (width - 1) / 2
    # Output pixels relative to the centre, minus the shift: (., height, 1) and (., 1, width).
    dy = np.arange(height, dtype=np.float32)[None, :, None] - np.float32(centre_row)
    dx = np.arange(width, dtype=np.float32)[None, None, :] - np.float32(centre_col)
    if shifts is not None:
        shifts = np.asarray(shifts, dtype=np.float32)
        dy = dy - shifts[:, 0, None, None]
        dx = dx - shifts[:, 1, None, None]
    if matrices is None:
        rows = np.broadcast_to(dy + np.float32(centre_row), (batch, height, width)).copy()
        cols = np.broadcast_to(dx + np.float32(centre_col), (batch, height, width)).copy()
        return rows, cols
    inv = np.linalg.inv(matrices).astype(np.float32)[:, :, :, None, None]  # src - centre = A^-1 d
    rows = inv[:, 0, 0] * dy + inv[:, 0, 1] * dx
    rows += np.float32(centre_row)
    cols = inv[:, 1, 0] * dy + inv[:, 1, 1] * dx
    cols += np.float32(centre_col)
    return rows, cols


def gaussian_blur_matrix(size: int, sigma: float) -> np.ndarray:
    """``(size, size)`` matrix ``G`` such that ``G @ v`` is ``v`` smoothed by a Gaussian of
    standard deviation ``sigma`` (truncated at 4 sigma, edges reflected as scipy's
    ``gaussian_filter`` does), so that smoothing a stack of fields is two matrix products."""
    radius = max(1, int(4 * sigma + 0.5))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    matrix = np.zeros((size, size))
    for i in range(size):
        for offset, weight in zip(offsets, kernel):
            j = i + offset
            # Reflect about the edge ("d c b a | a b c d | d c b a"), repeatedly if needed.
            period = 2 * size
            j %= period
            if j >= size:
                j = period - 1 - j
            matrix[i, j] += weight
    return matrix


_BASIS_CACHE: dict[tuple[int, float], np.ndarray] = {}


def smoothing_basis(size: int, sigma: float, tolerance: float = 1e-3) -> np.ndarray:
    """``(size, k)`` matrix ``B = U_k S_k`` from the SVD ``G = U S V^T`` of
    :func:`gaussian_blur_matrix`, keeping the singular values above ``tolerance`` times the
    largest (k = 9 of 28 for sigma 4: a Gaussian blur keeps only low frequencies)."""
    key = (size, float(sigma))
    if key not in _BASIS_CACHE:
        u, s, _ = np.linalg.svd(gaussian_blur_matrix(size, sigma))
        k = int(np.sum(s > s[0] * tolerance))
        _BASIS_CACHE[key] = (u[:, :k] * s[:k]).astype(np.float32)
    return _BASIS_CACHE[key]


def elastic_displacements(batch, shape, rng: np.random.Generator, alpha: float, sigma: float):
    """Random smooth displacement fields ``(d_rows, d_cols)``, each ``(batch, height, width)``
    float32: white noise smoothed by a Gaussian of ``sigma`` pixels, times ``alpha`` (Simard
    et al. 2003, who smoothed uniform noise in [-1, 1]).

    Smoothing is linear: ``G N G^T`` for the noise ``N``. With ``G = U S V^T`` and Gaussian
    noise of variance 1/3 (that of Simard's uniform noise), ``V^T N V`` is again such noise,
    so ``U S Z S U^T`` with a fresh ``Z`` has exactly the same distribution; and as ``S``
    falls off fast, only its top k x k block matters. This draws 2 * k * k numbers per image
    instead of 2 * height * width (the covariance differs from the full blur by < 1e-7).
    """
    height, width = shape
    basis_rows = smoothing_basis(height, sigma)  # (height, k_rows)
    basis_cols = smoothing_basis(width, sigma)  # (width, k_cols)
    k_rows, k_cols = basis_rows.shape[1], basis_cols.shape[1]
    z = rng.standard_normal(size=(2 * batch, k_rows, k_cols), dtype=np.float32)
    z *= np.float32(alpha / math.sqrt(3))
    # B_r Z B_c^T for the whole stack as two matrix products.
    half = (z.reshape(-1, k_cols) @ basis_cols.T).reshape(2 * batch, k_rows, width)
    fields = basis_rows @ half  # (height, k_rows) @ (2 * batch, k_rows, width)
    return fields[:batch], fields[batch:]


def sample_bilinear(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``images: (batch, height, width)`` sampled at fractional ``(rows, cols)``, each
    ``(batch, out_height, out_width)``, by bilinear interpolation; zero outside the image.

    The images are padded with a border of zeros, the coordinates clipped into that border,
    and the four neighbours gathered with one flat ``take`` each. Everything after the clip
    works in place on fresh arrays (the caller's coordinates are left alone): allocating and
    touching new arrays costs as much as the arithmetic here.
    """
    fused = kernels.fused()
    if fused is not None and images.flags.c_contiguous and rows.shape == cols.shape:
        return fused.bilinear(images, rows, cols).astype(images.dtype, copy=False)
    batch, height, width = images.shape
    padded = np.zeros((batch, height + 2, width + 2), dtype=np.float32)
    padded[:, 1:-1, 1:-1] = images
    # -1 and height/width are the zero border: anything farther out samples zeros too.
    r = np.clip(rows, -1, height, dtype=np.float32)
    c = np.clip(cols, -1, width, dtype=np.float32)
    r0 = np.floor(r)
    np.minimum(r0, height - 1, out=r0)
    c0 = np.floor(c)
    np.minimum(c0, width - 1, out=c0)
    r -= r0  # the fractions, in [0, 1]
    c -= c0
    # The flat index of each top-left neighbour, computed in float32 where that is exact (below
    # 2**24: a chunk of 256 padded 28x28 images has 230,400 pixels) and converted once.
    stride = width + 2
    exact = np.float32 if padded.size < 2**24 else np.float64
    first = np.arange(batch, dtype=exact) * ((height + 2) * stride) + (stride + 1)
    r0 = r0.astype(exact, copy=False)
    r0 *= exact(stride)
    r0 += c0
    r0 += first[:, None, None]
    index = r0.astype(np.intp)
    flat = padded.reshape(-1)
    top_left = flat.take(index)
    index += 1
    top_right = flat.take(index)
    index += stride
    bottom_right = flat.take(index)
    index -= 1
    bottom_left = flat.take(index)
    top_right -= top_left  # top row: left + c * (right - left)
    top_right *= c
    top_right += top_left
    bottom_right -= bottom_left  # bottom row, likewise
    bottom_right *= c
    bottom_right += bottom_left
    bottom_right -= top_right  # between the rows: top + r * (bottom - top)
    bottom_right *= r
    bottom_right += top_right
    return bottom_right.astype(images.dtype, copy=False)


def from_config(settings: dict | None) -> Augment | None:
    """An :class:`Augment` from a settings dict (as stored in configs and model files), or None
    when there is nothing to do."""
    if not settings:
        return None
    augment = Augment(**settings)
    return augment if augment.active else None
