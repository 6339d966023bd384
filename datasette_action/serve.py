"""Serve a packaged bundle on localhost exactly as Lambda would run it.

Each HTTP request becomes a Lambda function URL event (payload 2.0), sent to the bundle's handler
running in a separate Python process whose `sys.path` holds only the bundle (the function code
and the dependency layer, unpacked from the very zips that would be uploaded) and the standard
library: no site-packages (`python -I -S`). The process answers one event at a time, like one
Lambda execution environment; the response becomes the HTTP response. The site's SQLite is the
bundle's own (the entry point selects the layer's binding); for a bundle built for another CPU, whose
binding cannot load here, the same release of it built for this machine goes before the layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import queue
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from datasette_action.config import Config
from datasette_action.dependencies import install_for_this_machine
from datasette_action.errors import UserError
from datasette_action.events import http_request_event, http_response
from datasette_action.package import PackageResult
from datasette_action.pyc import find_interpreter
from datasette_action.sqlite import installed_binding
from datasette_action_entrypoint.manifest import HANDLER
from datasette_action_entrypoint.sqlite import DISTRIBUTION as SQLITE_DISTRIBUTION
from datasette_action_entrypoint.sqlite import MODULE as SQLITE_MODULE

# The local Lambda runtime: reads one JSON event per line on stdin, writes one JSON response per
# line on stdout, for any Lambda handler setting `module.function` (the bundle's own by default), as
# Lambda's Python runtime runs it: import the module once, call the function with (event, context)
# per event; what the handler prints goes to stderr. Standard library only: it runs with nothing but
# the bundle on sys.path. An exception in the handler is printed to stderr and answered as Lambda
# answers a function URL whose function failed (502).
_HANDLER_BOOTSTRAP = """\
import sys
sys.path[:0] = {paths!r}
import contextlib, importlib, json, os, signal, traceback, uuid
# Ctrl-C reaches the whole process group: the server stops this process by closing its stdin.
signal.signal(signal.SIGINT, signal.SIG_IGN)

class Context:
    def __init__(self):
        env = os.environ
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.invoked_function_arn = env.get("AWS_LAMBDA_FUNCTION_ARN", "")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self):
        return 30000

module_name, _, function_name = {handler!r}.rpartition(".")
handler = getattr(importlib.import_module(module_name), function_name)
for line in sys.stdin:
    if not line.strip():
        continue
    try:
        with contextlib.redirect_stdout(sys.stderr):
            response = handler(json.loads(line), Context())
        text = json.dumps(response)
    except Exception:
        traceback.print_exc()
        text = json.dumps({{"statusCode": 502, "headers": {{"content-type": "application/json"}},
                           "body": json.dumps({{"Message": "Internal Server Error"}})}})
    sys.stdout.write(text + "\\n")
    sys.stdout.flush()
"""


@dataclass(frozen=True)
class Bundle:
    """What a local Lambda needs: the directories Lambda would put on sys.path, in order."""

    paths: tuple[Path, ...]  # function code root first, then the layer's python/ directory
    python: Path  # an interpreter of the target runtime's version
    # Lambda's Handler setting (`module.function`); None: the bundle's own, HANDLER
    handler: str | None = None


class Invocable(Protocol):
    """Anything that answers one Lambda event: a LocalLambda, or a router in front of several."""

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]: ...


# platform.machine() names -> Lambda's architecture names
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def for_this_machine(config: Config, machine: str | None = None) -> tuple[Config, str | None]:
    """The config to preview locally: one that does not set lambda.architecture is packaged for
    this machine's CPU, so its compiled extensions load and the preview is the real thing (a
    deploy still uses the config's architecture). A note says so; None when nothing changed."""
    local = _MACHINES.get((machine or platform.machine()).lower())
    if config.lambda_.architecture_written or local is None or local == config.lambda_.architecture:
        return config, None
    preview = dataclasses.replace(config, lambda_=dataclasses.replace(config.lambda_, architecture=local))
    return preview, (
        f"previewing for this machine's {local} (the config does not set lambda.architecture; a"
        f" deploy packages for {config.lambda_.architecture})"
    )


def architecture_warning(architecture: str, machine: str | None = None) -> str | None:
    """A warning when the bundle is built for another CPU than this machine's: its compiled
    extensions cannot load here, so packages with a pure-Python fallback (MarkupSafe, PyYAML) use
    it and the rest fail to import; Lambda itself runs the bundle as built."""
    local = _MACHINES.get((machine or platform.machine()).lower())
    if local is None or local == architecture:
        return None
    return (
        f"this bundle is built for {architecture} (lambda.architecture) and this machine is {local}:"
        " compiled extensions in it cannot load here, so the local preview runs their pure-Python"
        " fallbacks where they have one, and the same release of its SQLite binding built for this"
        f" machine; set lambda.architecture to {local} for a byte-for-byte preview"
    )


def binding_loads_here(layer: Path, machine: str | None = None, system: str | None = None) -> bool:
    """Whether the SQLite binding in a layer's `python/` is built for this machine (manylinux: Linux,
    this CPU), by its extension's name: `_sqlite3.cpython-313-aarch64-linux-gnu.so`."""
    suffix = f"-{(machine or platform.machine()).lower()}-linux-gnu.so"
    extensions = (layer / SQLITE_MODULE).glob("_sqlite3*.so")
    return (system or platform.system()) == "Linux" and any(p.name.endswith(suffix) for p in extensions)


@contextmanager
def sqlite_for_this_machine(layer: Path, python: str) -> Iterator[tuple[Path, ...]]:
    """Where a layer's SQLite binding cannot load here (a bundle for another CPU): the same release
    of it built for this machine, a directory to put before the layer on sys.path, so a local run
    still answers with the SQLite Lambda will run. Nothing where the layer's own loads, or it has none."""
    version = installed_binding(layer)
    if version is None or binding_loads_here(layer):
        yield ()
        return
    yield (local_binding(python, version),)


def local_binding(python: str, version: str, cache: Path | None = None) -> Path:
    """The SQLite binding's release `version` for Python `python` on this machine, installed once
    into a per-user cache (pip runs on the first use only; later local runs work offline). Made in
    a scratch directory and renamed into place, so an interrupted install is never reused."""
    machine = platform.machine().lower()
    cache = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "datasette-lambda"
    target = cache / "sqlite" / f"{SQLITE_DISTRIBUTION}-{version}-py{python}-{machine}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        install_for_this_machine(python, (f"{SQLITE_DISTRIBUTION}=={version}",), scratch)
        scratch.rename(target)
    except OSError:
        if not target.is_dir():  # not a concurrent run that finished first
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def find_python(version: str) -> Path:
    """An interpreter of the Lambda runtime's version: compiled wheels only load there."""
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version == current:
        return Path(sys.executable)
    found = find_interpreter(version)
    if found is None:
        raise UserError(
            f"running the bundle locally needs Python {version}, the Lambda runtime's version"
            f" (lambda.python), and python{version} is not on PATH; install it (for example with"
            f" actions/setup-python or pyenv) or set lambda.python to {current}"
        )
    return found


@contextmanager
def unpacked(zips: Sequence[tuple[Path, str]]) -> Iterator[tuple[Path, ...]]:
    """Unpack each (zip, sys.path entry inside it) to a temporary, read-only tree.

    Yields the sys.path entries. Lambda unpacks function code to /var/task and layers to
    /opt, both read-only; as root the read-only bits are not enforced, elsewhere they are.
    """
    root = Path(tempfile.mkdtemp(prefix="datasette-lambda-bundle-"))
    try:
        entries = []
        for index, (archive, inside) in enumerate(zips):
            target = root / str(index)
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(target)
            entries.append(target / inside if inside else target)
        _set_writable(root, writable=False)
        yield tuple(entries)
    finally:
        _set_writable(root, writable=True)
        shutil.rmtree(root, ignore_errors=True)


def _set_writable(root: Path, *, writable: bool) -> None:
    for directory, _dirs, files in os.walk(root):
        for name in [*files, "."]:
            path = Path(directory) / name
            mode = path.stat().st_mode
            write = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
            path.chmod(mode | stat.S_IWUSR if writable else mode & ~write)


def bootstrap(paths: Sequence[Path], handler: str) -> str:
    """The `python -I -S -c` program that runs `handler` with `paths` first on sys.path."""
    return _HANDLER_BOOTSTRAP.format(paths=[str(p) for p in paths], handler=handler)


class LocalLambda:
    """The bundle's handler in a separate process, fed one event at a time."""

    def __init__(self, bundle: Bundle, env: dict[str, str] | None = None) -> None:
        code = bootstrap(bundle.paths, bundle.handler or HANDLER)
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_LAMBDA_FUNCTION_NAME": "datasette-local",
            "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [str(bundle.python), "-I", "-S", "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            text=True,
            bufsize=1,
        )
        self.lock = threading.Lock()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            assert self.process.stdin is not None and self.process.stdout is not None
            if self.process.poll() is not None:
                raise UserError(f"the local Lambda process exited with status {self.process.returncode}")
            self.process.stdin.write(json.dumps(event) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        if not line:
            raise UserError("the local Lambda process stopped without answering; see its output above")
        response: dict[str, Any] = json.loads(line)
        return response

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


class LambdaPool:
    """Several LocalLambda processes side by side, as Lambda runs several execution environments:
    each answers one event at a time; a request waits for a free one."""

    def __init__(self, functions: Sequence[LocalLambda]) -> None:
        self.functions = list(functions)
        self._free: queue.SimpleQueue[LocalLambda] = queue.SimpleQueue()
        for function in self.functions:
            self._free.put(function)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        function = self._free.get()
        try:
            return function.invoke(event)
        finally:
            self._free.put(function)

    def close(self) -> None:
        for function in self.functions:
            function.close()


@contextmanager
def local_lambda(result: PackageResult, env: dict[str, str] | None = None) -> Iterator[LocalLambda]:
    """The packaged function running locally from its own zips, as Lambda would run it.

    Databases that were placed in S3 are put where the entry point caches its S3 downloads
    (a temporary directory standing in for /tmp), so it finds them with the right sha256. A bundle
    for another CPU gets its SQLite binding built for this one (`sqlite_for_this_machine`).
    """
    zips = [(result.function.zip_path, ""), (result.layer.zip_path, "python")]
    python = find_python(result.python)
    with (
        unpacked(zips) as (code, layer),
        sqlite_for_this_machine(layer, result.python) as sqlite,
        tempfile.TemporaryDirectory(prefix="datasette-lambda-tmp-") as tmp,
    ):
        for database in result.databases:
            if database.location == "s3":
                shutil.copyfile(database.path, Path(tmp) / database.file)
        bundle = Bundle(paths=(code, *sqlite, layer), python=python)
        environment = {"DATASETTE_LAMBDA_TMP": tmp, "DATASETTE_DATA_BUCKET": "local", **(env or {})}
        function = LocalLambda(bundle, environment)
        try:
            yield function
        finally:
            function.close()


@contextmanager
def local_lambdas(
    result: PackageResult, concurrency: int, env: dict[str, str] | None = None
) -> Iterator[LambdaPool]:
    """`concurrency` local Lambda processes of the packaged function (see `local_lambda`), as a pool."""
    if concurrency < 1:
        raise UserError(f"--concurrency must be at least 1, got {concurrency}")
    with contextlib.ExitStack() as stack:
        pool = LambdaPool([stack.enter_context(local_lambda(result, env)) for _ in range(concurrency)])
        yield pool


# Connections the listening socket holds before accepting them (socketserver's default is 5, so a
# burst of concurrent requests was reset); queued requests wait for a free handler process.
BACKLOG = 1024


def make_server(
    function: Invocable, port: int, log: Any = None, backlog: int = BACKLOG
) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1:port (0 picks a free port) in front of `function`, queueing up to
    `backlog` connections not yet accepted."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            host = self.headers.get("host") or f"127.0.0.1:{port}"
            started = time.perf_counter()
            event = http_request_event(
                self.command,
                self.path,
                list(self.headers.items()),
                body,
                host=host,
                source_ip=self.client_address[0],
            )
            try:
                status, headers, data = http_response(function.invoke(event))
            except UserError as error:
                status, headers, data = 502, [("content-type", "text/plain")], str(error).encode()
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            if log:
                log(f"{self.command} {self.path} {status} {1000 * (time.perf_counter() - started):.0f} ms")

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are logged above, with their timing

    class Server(ThreadingHTTPServer):
        request_queue_size = backlog

    try:
        return Server(("127.0.0.1", port), Handler)
    except OSError as error:
        raise UserError(
            f"cannot listen on 127.0.0.1:{port}: {error.strerror}; pass another port with -p"
            " (or -p 0 for any free port)"
        ) from None
