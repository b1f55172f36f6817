"""``numlp serve``: a local web app to draw a digit and watch the model read it.

Routes: ``GET /`` the drawing page; ``POST /predict`` a PNG/JPEG body (any picture, prepared
like MNIST by :func:`numlp.data.images.to_mnist`) or JSON ``{"pixels": 28x28 numbers}``;
``GET /health``; ``GET /model``. Bad input gets a 4xx with a message and the server goes on.
Needs the ``serve`` extra (Starlette, uvicorn, Pillow).

Pictures are decoded and prepared on a small pool of threads, never on the event loop, so a
large picture cannot freeze ``/health`` or the other clients; when the pool and its short
queue are full the answer is 503 at once rather than an unbounded wait. The model itself
(whose layers cache their last input) only ever runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np

from numlp import preprocess
from numlp.data.images import ImageError, to_mnist
from numlp.io import class_names
from numlp.metrics import top_classes

MAX_BYTES = 2_000_000
PICTURE_WORKERS = 2
PICTURE_QUEUE = 64  # pictures waiting for a worker (bodies of 2 MB at most); one more: 503
BODY_SECONDS = 10.0  # an upload slower than this is cut off (408)


class Rejected(Exception):
    """A request to answer with ``status`` and ``message`` (a 4xx or 503)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class PicturePool:
    """Runs picture preparation on ``workers`` threads, at most ``queue`` more waiting."""

    def __init__(self, workers: int | None = None, queue: int | None = None):
        workers = workers or PICTURE_WORKERS
        queue = PICTURE_QUEUE if queue is None else queue
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="numlp-picture")
        self.limit = workers + queue
        self.busy = 0  # only touched on the event loop's thread: no lock needed

    async def run(self, function, *args):
        if self.busy >= self.limit:
            raise Rejected(503, "busy preparing other pictures; try again in a moment")
        self.busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)
        finally:
            self.busy -= 1


def page_html(names: list[str]) -> str:
    """The drawing page with the class names in it, safe for any name: the JSON is escaped so
    that no ``</script>`` or ``<!--`` can close the script, and the page only ever puts names
    into the document as text."""
    safe = json.dumps(names).replace("<", "\\u003c").replace(">", "\\u003e")
    safe = safe.replace("&", "\\u0026")
    template = resources.files("numlp").joinpath("static/draw.html").read_text(encoding="utf-8")
    return template.replace("__CLASSES__", safe)


def create_app(model, header: dict, max_bytes: int = MAX_BYTES, pool: PicturePool | None = None):
    """The Starlette application serving ``model`` (with its file ``header``)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    names = class_names(header, model.classes)
    spec = header.get("preprocessing")
    pool = pool or PicturePool()
    page_text = page_html(names)

    async def page(request):
        return HTMLResponse(page_text)

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
                "members": [m.get("model", {}).get("layers") for m in header.get("members", [])]
                or None,
                "preprocessing": spec,
                "training": {
                    k: v for k, v in (header.get("training") or {}).items() if k != "config"
                },
            }
        )

    async def predict(request):
        try:
            body = await _read_body(request, max_bytes)
            kind = request.headers.get("content-type", "").split(";")[0].strip()
            if kind == "application/json":
                digit = _pixels_from_json(body)
            else:
                digit = await pool.run(to_mnist, body)
        except Rejected as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        except ImageError as err:
            message = str(err).removeprefix("the picture: ")
            status = 415 if "not an image" in message else 422
            return JSONResponse({"error": message}, status_code=status)
        x = preprocess.apply(digit[None], spec)
        proba = model.predict_proba(x)[0]
        return JSONResponse(
            {
                "top": top_classes(proba, names, 3),
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


async def _read_body(request, max_bytes: int) -> bytes:
    """The request body, refused when over ``max_bytes``, empty, or slower than BODY_SECONDS.
    A client that goes away mid-upload is not an error of the server's."""
    from starlette.requests import ClientDisconnect

    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise Rejected(413, f"body of {int(length):,} bytes is over the {max_bytes:,} limit")

    async def collect() -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise Rejected(413, f"body is over the {max_bytes:,}-byte limit")
        return bytes(body)

    try:
        body = await asyncio.wait_for(collect(), BODY_SECONDS)
    except asyncio.TimeoutError:
        raise Rejected(408, f"the body did not arrive within {BODY_SECONDS:g} s") from None
    except ClientDisconnect:
        raise Rejected(400, "the client went away before sending the whole body") from None
    if not body:
        raise Rejected(400, 'empty body: send a PNG/JPEG picture or JSON {"pixels": ...}')
    return body


def _pixels_from_json(body: bytes) -> np.ndarray:
    """JSON ``{"pixels": 28x28 or 784 numbers in 0..255 or 0..1}`` -> uint8 (28, 28) ink on black,
    refused like a picture when it is blank."""
    shape_help = 'JSON must be {"pixels": [[...28 numbers...], ...28 rows]}'
    try:
        data = json.loads(body)
        pixels = np.asarray(data["pixels"], dtype=np.float64)
    except (ValueError, KeyError, TypeError, IndexError):
        raise ImageError(shape_help) from None
    except RecursionError:
        raise ImageError(f"{shape_help}; this one is nested too deeply") from None
    except OverflowError:
        raise ImageError("pixels must be in 0..255 (or 0..1); a number is far too large") from None
    if pixels.shape == (784,):
        pixels = pixels.reshape(28, 28)
    if pixels.shape != (28, 28):
        raise ImageError(f"pixels must be 28x28 (or 784), got shape {pixels.shape}")
    if not np.all(np.isfinite(pixels)):
        raise ImageError("pixels contain NaN or Inf")
    if pixels.min() < 0 or pixels.max() > 255:
        raise ImageError("pixels must be in 0..255 (or 0..1)")
    if pixels.max() == 0:
        raise ImageError("no ink found: the picture is blank")
    if pixels.max() <= 1.0:
        pixels = pixels * 255
    return np.round(pixels).astype(np.uint8)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; OSError with a clear message if it cannot be had."""
    if not 0 <= port <= 65535:
        raise ValueError(f"`port` {port} is not a port number (0 to 65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise ValueError(f"`host` {host!r} is not an address of this machine ({err})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        reason = (
            "is in use; choose another with `port`"
            if err.errno == errno.EADDRINUSE
            else err.strerror
        )
        raise ValueError(f"cannot serve on {host}:{port}: the port {reason}") from None
    return sock


def _one_blas_thread() -> None:
    """Answers are one image at a time: a second BLAS thread only adds its wake-up (and its
    spinning, on a busy machine) to every request. Needs threadpoolctl; without it, as is."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1, user_api="blas")


def serve(
    model_path, host: str = "127.0.0.1", port: int = 8000, max_bytes: int = MAX_BYTES, stream=None
):
    """Load a model file and serve it until interrupted; the address goes to ``stream`` once
    the port is bound (stdout by default)."""
    try:
        import uvicorn
    except ImportError:
        raise ImportError("numlp serve needs: pip install 'numlp[serve]'") from None
    from numlp.io import load_model

    model, header = load_model(model_path)
    _one_blas_thread()
    sock = bind(host, port)
    port = sock.getsockname()[1]  # the real one when 0 asked for any free port
    print(
        f"serving {model_path} at http://{host}:{port}/ (Ctrl-C stops)",
        file=stream or sys.stdout,
        flush=True,
    )
    config = uvicorn.Config(
        create_app(model, header, max_bytes), log_level="warning", timeout_keep_alive=5
    )
    uvicorn.Server(config).run(sockets=[sock])
