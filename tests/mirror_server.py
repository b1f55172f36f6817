"""A real HTTP server on 127.0.0.1 that serves a folder, with faults to inject per file name.

Faults (``server.faults[file_name] = ...``):
  ("truncate", n)   announce the full length, send n bytes, close the connection (every time)
  ("drop_once", n)  like truncate, but only on the first request; later ones are served whole
  ("corrupt", i)    flip the byte at offset i
  ("status", code)  answer with that HTTP status and no body
Range requests (``bytes=N-``) are answered with 206, as real mirrors do.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class MirrorServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.faults: dict[str, tuple] = {}
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append((name, self.headers.get("Range")))
                fault = outer.faults.get(name)
                if fault and fault[0] == "status":
                    self.send_error(fault[1])
                    return
                path = outer.root / name
                if not path.is_file():
                    self.send_error(404)
                    return
                body = bytearray(path.read_bytes())
                if fault and fault[0] == "corrupt":
                    body[fault[1]] ^= 0xFF
                start = 0
                ranged = self.headers.get("Range")
                if ranged and ranged.startswith("bytes=") and ranged.endswith("-"):
                    start = int(ranged[6:-1])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = bytes(body[start:])
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                cut = None
                if fault and fault[0] == "truncate":
                    cut = fault[1]
                elif fault and fault[0] == "drop_once":
                    cut = fault[1]
                    del outer.faults[name]
                if cut is not None:
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
