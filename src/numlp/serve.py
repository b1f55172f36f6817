"""``numlp serve``: a local web app to draw a digit and watch the model read it.

Routes: ``GET /`` the drawing page; ``POST /predict`` a PNG/JPEG body (any picture, prepared
like MNIST by :func:`numlp.data.images.to_mnist`) or JSON ``{"pixels": 28x28 numbers}``;
``GET /health``; ``GET /model``. Bad input gets a 4xx with a message and the server goes on.
Needs the ``serve`` extra (Starlette, uvicorn, Pillow).

Pictures and JSON bodies are decoded and prepared on a small pool of threads, never on the
event loop, so a large body cannot freeze ``/health`` or the other clients; when the pool and
its short queue are full the answer is 503 at once rather than an unbounded wait. The model
itself (whose layers cache their last input) only ever runs on the event loop's thread.

Connections are bounded too (``GuardedConnections`` in :func:`guarded_protocol`): at most
``MAX_CONNECTIONS`` open, so idle sockets cannot use up the process's files. At the limit a new
connection takes the place of the one that has waited longest without sending a request head;
when every connection is busy with a request, it gets 503 and is closed. A request's head must
arrive within ``HEAD_SECONDS`` (a client that sends nothing, or trickles header lines, is
closed) and its body within ``BODY_SECONDS``; a message the server logs again and again (a
flood of failures) is logged once a minute, without its traceback.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import math
import re
import resource
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np

from numlp import preprocess
from numlp.data.images import ImageError, to_mnist
from numlp.io import class_names
from numlp.metrics import top_classes

MAX_BYTES = 2_000_000
MIN_BYTES = 1_000  # a JSON drawing (784 numbers) takes more: a smaller limit refuses them all
PICTURE_WORKERS = 2
PICTURE_QUEUE = 64  # pictures waiting for a worker (bodies of 2 MB at most); one more: 503
BODY_SECONDS = 10.0  # an upload slower than this is cut off (408)
HEAD_SECONDS = 10.0  # a request line and headers slower than this: the connection is closed
MAX_CONNECTIONS = 512  # open at once (and at most half the open files the process may have)


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
    if not max_bytes >= MIN_BYTES:  # also refuses NaN
        raise ValueError(
            f"`max_bytes` {max_bytes!r} is too small for a drawing: give at least {MIN_BYTES:,} "
            f"bytes (the default is {MAX_BYTES:,})"
        )
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
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            prepare = _pixels_from_json if kind == "application/json" else to_mnist
            digit = await pool.run(prepare, body)
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
    if pixels.max() <= 1.0:
        pixels = pixels * 255
    digit = np.round(pixels).astype(np.uint8)
    if digit.max() == 0:  # after scaling and rounding: what the model would see
        raise ImageError("no ink found: the picture is blank")
    return digit


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
        raise ImportError(
            "numlp serve needs: pip install starlette uvicorn Pillow (numlp's serve extra)"
        ) from None
    from numlp.io import load_model

    model, header = load_model(model_path)
    if model.input_shape is None or math.prod(model.input_shape) != 784:
        raise ValueError(
            f"{model_path}: numlp serve's page draws 28x28 digits, and this model takes inputs "
            f"of shape {model.input_shape}; use numlp predict for its own data"
        )
    app = create_app(model, header, max_bytes)  # its settings checked before the port is taken
    _one_blas_thread()
    sock = bind(host, port)
    port = sock.getsockname()[1]  # the real one when 0 asked for any free port
    print(
        f"serving {model_path} at http://{host}:{port}/ (Ctrl-C stops)",
        file=stream or sys.stdout,
        flush=True,
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        timeout_keep_alive=5,
        http=guarded_protocol(),
    )
    for name in ("asyncio", "uvicorn.error"):
        logging.getLogger(name).addFilter(OncePerMinute())
    uvicorn.Server(config).run(sockets=[sock])


def connection_limit() -> int:
    """MAX_CONNECTIONS, or half the files this process may open if that is less."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(8, min(MAX_CONNECTIONS, soft // 2))


BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: 50\r\n\r\n"
    b'{"error": "too many connections; try again soon"}'
)


def guarded_protocol():
    """uvicorn's HTTP/1.1 protocol with the connection guards of :class:`GuardedConnections`
    (a function, so that uvicorn is imported only when serving)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedConnections(H11Protocol):
        """At most :func:`connection_limit` connections open: at the limit a new one replaces
        the connection that has waited longest for its request head, or, when all are busy
        with requests, gets 503 and is closed before it costs more than its socket. Every
        request head (line and headers) must arrive within HEAD_SECONDS of the connection
        opening or of the last answer."""

        refused = False
        deadline = None
        waiting_since = 0.0

        def connection_made(self, transport):
            if len(self.connections) >= connection_limit() and not self._evict_idle():
                self.refused, self.transport = True, transport
                transport.write(BUSY)
                transport.close()
                return
            super().connection_made(transport)
            self._arm()

        def _evict_idle(self) -> bool:
            """Close the connection that has waited longest for a request head, if any."""
            idle = [c for c in self.connections if getattr(c, "deadline", None) is not None]
            if not idle:
                return False
            oldest = min(idle, key=lambda c: c.waiting_since)
            oldest._disarm()
            oldest.transport.close()
            self.connections.discard(oldest)  # its place is free now, not when the loss is seen
            return True

        def connection_lost(self, exc):
            self._disarm()
            if not self.refused:
                super().connection_lost(exc)

        def data_received(self, data):
            if self.refused:
                return
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the head has arrived
                self._disarm()

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's head has HEAD_SECONDS too

        def _arm(self):
            self._disarm()
            self.waiting_since = self.loop.time()
            self.deadline = self.loop.call_later(HEAD_SECONDS, self._too_slow)

        def _disarm(self):
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _too_slow(self):
            self.deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return GuardedConnections


class OncePerMinute(logging.Filter):
    """Lets each distinct message through once a minute, without its traceback: a flood of
    one failure (accept() out of files, say) must not fill the disk with the same lines."""

    def __init__(self, seconds: float = 60.0):
        super().__init__()
        self.seconds, self.last = seconds, {}

    def filter(self, record: logging.LogRecord) -> bool:
        # the message's start, numbers masked: asyncio puts times and addresses in its messages
        key = (record.name, re.sub(r"[0-9]+", "#", record.getMessage())[:60])
        now = time.monotonic()
        if now - self.last.get(key, -self.seconds) < self.seconds:
            return False
        self.last[key] = now
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {record.exc_info[1]!r} (repeats are dropped "\
                         f"for {self.seconds:g} s)"  # fmt: skip
            record.args, record.exc_info, record.exc_text = (), None, None
        return True
