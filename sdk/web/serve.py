"""``python -m sdk web BUNDLE``: the browser runtime (``sdk/web``) and a bundle served on localhost.

The page runs the bundle's ``.onnx`` programs with ONNX Runtime Web (WASM) installed by ``scripts/web_setup.sh``
into ``sdk/web/node_modules``: nothing is fetched from the internet when the page runs. The server sends the
cross-origin isolation headers (COOP ``same-origin``, COEP ``require-corp``) so that ONNX Runtime Web may use
WASM threads (SharedArrayBuffer). It serves three trees only: the page's own files (``/``), ONNX Runtime Web's
``dist`` folder (``/ort/``) and the bundle (``/bundle/``: its manifest and the files the manifest lists).
"""
from __future__ import annotations

import argparse
import http.server
import threading
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from sdk.bundle import Bundle
from sdk.errors import BackendUnavailableError, BundleError, ConfigError
from sdk.manifest import MANIFEST_FILE

__all__ = ["WEB_ROOT", "ORT_DIST", "WebServer", "add_web_command"]

WEB_ROOT = Path(__file__).resolve().parent
ORT_DIST = WEB_ROOT / "node_modules" / "onnxruntime-web" / "dist"
PAGE_FILES = ("index.html", "app.js", "edgevideo.js")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
         ".wasm": "application/wasm", ".json": "application/json", ".onnx": "application/octet-stream",
         ".npz": "application/octet-stream", ".map": "application/json"}
HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
           "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-store"}


class WebServer:
    """The page, ONNX Runtime Web and one bundle on ``http://host:port/`` (port 0: a free one), in a thread.

    The bundle is opened with :class:`sdk.bundle.Bundle` (a directory or its zip; every ``.onnx`` program's sha256
    is checked before serving); a bundle without ``.onnx`` programs is a :class:`BundleError`, a missing ONNX
    Runtime Web install a :class:`BackendUnavailableError`, a busy port a :class:`ConfigError`.
    """

    def __init__(self, bundle: str | Path, host: str = "127.0.0.1", port: int = 8000):
        if not (ORT_DIST / "ort.wasm.min.mjs").is_file():
            raise BackendUnavailableError(f"ONNX Runtime Web is not installed in {WEB_ROOT / 'node_modules'}: run "
                                          "scripts/web_setup.sh (npm ci in sdk/web)")
        self.bundle = Bundle(bundle)
        try:
            programs = [p for p in self.bundle.manifest.programs if p.backend == "onnx"]
            if not programs:
                raise BundleError(f"bundle {bundle} has no .onnx programs: the browser runs ONNX only; export it "
                                  "with the onnx format (python -m converters export ... --formats onnx)")
            for p in programs:
                self.bundle.path(p)  # checks the sha256
            self._files = {MANIFEST_FILE: self.bundle.root / MANIFEST_FILE}
            self._files.update({p.file: self.bundle.root / p.file for p in programs})
            self._httpd = http.server.ThreadingHTTPServer((host, port), self._handler())
        except OSError as e:
            self.bundle.close()
            raise ConfigError(f"cannot serve on {host}:{port}: {e.strerror or e}") from e
        except BaseException:
            self.bundle.close()
            raise
        self.host, self.port = host, self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def resolve(self, url_path: str) -> Path | None:
        """The file a request path names, or None: only the three trees of the module docstring are served."""
        parts = PurePosixPath(unquote(urlsplit(url_path).path)).parts[1:]
        if ".." in parts:
            return None
        if not parts:
            return WEB_ROOT / "index.html"
        if parts[0] == "bundle":
            return self._files.get("/".join(parts[1:]))
        if parts[0] == "ort" and len(parts) == 2:
            path = ORT_DIST / parts[1]
            return path if path.is_file() else None
        if len(parts) == 1 and parts[0] in PAGE_FILES:
            return WEB_ROOT / parts[0]
        return None

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = server.resolve(self.path)
                if path is None:
                    self.send_error(404, "not served")
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", TYPES.get(path.suffix, "application/octet-stream"))
                self.send_header("Content-Length", str(len(body)))
                for key, value in HEADERS.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        return Handler

    def start(self) -> "WebServer":
        """Serve in a daemon thread (for tests and tools); :meth:`close` stops."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()
        self.bundle.close()

    def __enter__(self) -> "WebServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def add_web_command(subparsers) -> None:
    """The ``web`` subcommand of ``python -m sdk``."""
    w = subparsers.add_parser("web", help="serve the bundle's .onnx programs in a browser page (ONNX Runtime Web)")
    w.add_argument("bundle", type=Path, help="NAME.vbundle directory or its zip, with .onnx programs")
    w.add_argument("--port", type=int, default=8000, help="port on localhost (0: any free port; default 8000)")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    w.set_defaults(func=_web_command)


def _web_command(args: argparse.Namespace) -> int:
    with WebServer(args.bundle, args.host, args.port) as server:
        print(f"serving {server.bundle.manifest.name} at {server.url} (open it in a browser; Ctrl-C stops)",
              flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0
