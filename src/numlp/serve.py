"""``numlp serve``: a local web app to draw a digit and watch the model read it.

Routes: ``GET /`` the drawing page; ``POST /predict`` a PNG/JPEG body (any picture, prepared
like MNIST by :func:`numlp.data.images.to_mnist`) or JSON ``{"pixels": 28x28 numbers}``;
``GET /health``; ``GET /model``. Bad input gets a 4xx with a message and the server goes on.
Needs the ``serve`` extra (Starlette, uvicorn, Pillow). Endpoints are ``async`` so that the
model (whose layers cache their last input) only ever runs on the event loop's thread.
"""

from __future__ import annotations

import io
import json
from importlib import resources

import numpy as np

from numlp import preprocess
from numlp.data.images import ImageError, to_mnist

MAX_BYTES = 2_000_000


def create_app(model, header: dict, max_bytes: int = MAX_BYTES):
    """The Starlette application serving ``model`` (with its file ``header``)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    names = header.get("class_names") or [str(i) for i in range(model.classes)]
    spec = header.get("preprocessing")

    def error(status: int, message: str):
        return JSONResponse({"error": message}, status_code=status)

    page_html = (
        resources.files("numlp")
        .joinpath("static/draw.html")
        .read_text(encoding="utf-8")
        .replace("__CLASSES__", json.dumps(names))
    )

    async def page(request):
        return HTMLResponse(page_html)

    async def health(request):
        return JSONResponse({"status": "ok"})

    async def describe(request):
        return JSONResponse(
            {
                "numlp_version": header.get("numlp_version"),
                "dataset": header.get("dataset"),
                "input_shape": list(model.input_shape or []),
                "class_names": names,
                "layers": header.get("model", {}).get("layers"),
                "preprocessing": spec,
                "training": {
                    k: v for k, v in (header.get("training") or {}).items() if k != "config"
                },
            }
        )

    async def predict(request):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            return error(413, f"body of {int(length):,} bytes is over the {max_bytes:,} limit")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                return error(413, f"body is over the {max_bytes:,}-byte limit")
        if not body:
            return error(400, 'empty body: send a PNG/JPEG picture or JSON {"pixels": ...}')
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        try:
            digit = _pixels_from_json(body) if kind == "application/json" else _picture(body)
        except ImageError as err:
            return error(415 if "not an image" in str(err) else 422, str(err))
        x = preprocess.apply(digit[None], spec)
        proba = model.predict_proba(x)[0]
        order = np.argsort(-proba)
        return JSONResponse(
            {
                "top": [
                    {"class": names[i], "id": int(i), "probability": float(proba[i])}
                    for i in order[:3]
                ],
                "probabilities": [float(p) for p in proba],
                "input": digit.astype(int).tolist(),
            }
        )

    return Starlette(
        routes=[
            Route("/", page),
            Route("/health", health),
            Route("/model", describe),
            Route("/predict", predict, methods=["POST"]),
        ]
    )


def _picture(body: bytes) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ImageError("pictures need Pillow on the server") from None
    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
            if image.width * image.height > 25_000_000:
                raise ImageError("picture over 25 megapixels")
            return to_mnist(image)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise ImageError(f"not an image Pillow can read ({err})") from None


def _pixels_from_json(body: bytes) -> np.ndarray:
    try:
        data = json.loads(body)
        pixels = np.asarray(data["pixels"], dtype=np.float64)
    except (ValueError, KeyError, TypeError):
        raise ImageError('JSON must be {"pixels": [[...28 numbers...], ...28 rows]}') from None
    if pixels.shape == (784,):
        pixels = pixels.reshape(28, 28)
    if pixels.shape != (28, 28):
        raise ImageError(f"pixels must be 28x28 (or 784), got shape {pixels.shape}")
    if not np.all(np.isfinite(pixels)):
        raise ImageError("pixels contain NaN or Inf")
    if pixels.min() < 0 or pixels.max() > 255:
        raise ImageError("pixels must be in 0..255 (or 0..1)")
    if pixels.max() <= 1.0:
        pixels = pixels * 255
    return np.round(pixels).astype(np.uint8)


def serve(model_path, host: str = "127.0.0.1", port: int = 8000, max_bytes: int = MAX_BYTES):
    """Load a model file and serve it until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise ImportError("numlp serve needs: pip install 'numlp[serve]'") from None
    from numlp.io import load_model

    model, header = load_model(model_path)
    uvicorn.run(create_app(model, header, max_bytes), host=host, port=port, log_level="warning")
