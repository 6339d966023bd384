"""The local endpoints, and moto's server they sit beside.

`start_local_aws()` runs moto's server in this process (every AWS API moto mocks, on one loopback
port: point boto3 at it with `AWS_ENDPOINT_URL`). The function URLs and HTTP APIs that
`cfn_models` creates are served here, each on its own `http://127.0.0.1:<port>/`.

Every request to a local URL runs the function's CURRENT code: the code zip and layer zips moto
stores (the bytes uploaded to S3, `LambdaFunction.code_bytes`), unpacked read-only and run by
`serve.LocalLambda` (a `python -I -S` process of the runtime's version, one event at a time, the
function's Handler and Environment), restarted when the code, layers, handler or environment
change (keyed by CodeSha256), when it dies, or after a timeout. Like Lambda's execution
environments, an endpoint runs up to `concurrency` such processes side by side (fewer when the
function's ReservedConcurrentExecutions says so), started one at a time as a burst needs them;
a request waits for a free one when that many are busy. The URL enforces what AWS
enforces: a public URL (AuthType NONE) answers 403 unless the function's policy allows both
`lambda:InvokeFunctionUrl` and `lambda:InvokeFunction` to everyone (AWS's rule since Oct 2025).

moto's CloudFormation creates resources through classmethods that get no context, so the local
servers those resources start live in one registry in this module (`ENDPOINTS`); `LocalAws.stop()`
closes them all and resets moto.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote

from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda.models import LambdaBackend, LambdaFunction, lambda_backends
from moto.server import ThreadedMotoServer

from datasette_action.errors import UserError
from datasette_action.serve import (
    Bundle,
    LocalLambda,
    find_python,
    make_server,
    sqlite_for_this_machine,
    unpacked,
)

Log = Callable[[str], None]

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
INIT_ALLOWANCE = 10  # seconds on top of the timeout for a cold start (Lambda's INIT phase limit)
# What Lambda's Python runtimes put on sys.path after the code and layers (/var/runtime): the SDK.
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
FORBIDDEN = {
    "statusCode": 403,
    "headers": {"content-type": "application/json", "x-amzn-ErrorType": "AccessDeniedException"},
    "body": '{"Message":"Forbidden"}',
}
API_ERROR = {
    "statusCode": 500,
    "headers": {"content-type": "application/json"},
    "body": '{"message":"Internal Server Error"}',
}
# Reserved concurrency 0: Lambda runs nothing and throttles every invocation, 429
# TooManyRequestsException "Rate exceeded" (https://repost.aws/knowledge-center/lambda-troubleshoot-throttling,
# https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html). The exact body a function URL or
# an HTTP API sends for it is not documented; this one is a stand-in.
THROTTLED = {
    "statusCode": 429,
    "headers": {"content-type": "application/json", "x-amzn-ErrorType": "TooManyRequestsException"},
    "body": '{"Message":"Rate Exceeded."}',
}


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity; all of them where that is unknown)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


# -- the local endpoints -------------------------------------------------------------------------


@dataclass(eq=False)
class _Generation:
    """One execution environment: the function's code as it was when this process started.

    An endpoint leases it to one request at a time (`Endpoint._lease`), as Lambda gives an
    execution environment one event at a time; so the timeout starts when a request gets the
    process, not while it waits for a free one: a request queued in a burst must not kill the
    process in the middle of the one being answered.
    """

    key: tuple[Any, ...]
    function: LocalLambda
    workdir: contextlib.ExitStack
    timeout: int
    epoch: int = 0  # which code version of its endpoint this process runs (Endpoint._epoch)
    warm: bool = False
    timed_out: bool = False

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        seconds = self.timeout if self.warm else self.timeout + INIT_ALLOWANCE
        timer = threading.Timer(seconds, self._time_out)
        timer.start()
        try:
            return self.function.invoke(event)
        finally:
            timer.cancel()
            self.warm = True

    def _time_out(self) -> None:
        self.timed_out = True
        self.function.process.kill()

    def alive(self) -> bool:
        return self.function.process.poll() is None

    def close(self) -> None:
        with self.function.lock:  # let a request in flight finish
            self.function.close()
        self.workdir.close()


@dataclass(eq=False)
class Endpoint:
    """A local HTTP server standing in for one function URL or HTTP API.

    Each request looks up the function in moto and runs its current code, in one of up to
    `registry.concurrency` processes (at most the function's reserved concurrency).
    """

    kind: str  # "url" or "http_api"
    account_id: str
    region: str
    function_name: str
    registry: _Endpoints
    auth_type: str = "NONE"  # function URLs: NONE or AWS_IAM
    api_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    route_key: str = "$default"  # HTTP APIs
    credentials_arn: str | None = None  # HTTP APIs: a role instead of the function's policy
    server: ThreadingHTTPServer | None = None
    # The processes: every one not yet closed (busy ones too, of any code version), the free ones
    # of the current code version (most recently used last), and how many of the current version
    # exist or are starting. A new code version (`_code_key`) is a new epoch: the old version's
    # free processes stop at once, its busy ones when their request is answered.
    _ready: threading.Condition = field(default_factory=threading.Condition)
    _processes: set[_Generation] = field(default_factory=set)
    _idle: list[_Generation] = field(default_factory=list)
    _key: tuple[Any, ...] | None = None
    _epoch: int = 0
    _slots: int = 0
    _closed: bool = False

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def start(self) -> None:
        log = self.registry.log
        prefix = f"{self.function_name} ({'function URL' if self.kind == 'url' else 'HTTP API'})"
        self.server = make_server(self, 0, log=(lambda line: log(f"{prefix}: {line}")) if log else None)
        threading.Thread(target=self.server.serve_forever, name=f"local-aws {prefix}", daemon=True).start()
        if log:
            log(f"{prefix} serving at {self.url}")

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        with self._ready:
            self._closed = True
            processes, self._processes, self._idle = list(self._processes), set(), []
            self._ready.notify_all()
        for generation in processes:  # a busy one answers its request first
            generation.close()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """Answer one request event as AWS would: check access, then run the current code."""
        function = self._lookup()
        if function is None:
            return _text(404, f"function {self.function_name} does not exist (any more)")
        refusal = self._refusal(function, event)
        if refusal is not None:
            return refusal
        if _reserved(function) == 0:
            self.registry.say(f"{function.function_name}: 429 throttled: its reserved concurrency is 0")
            return THROTTLED
        event = self._shape(event)
        try:
            generation = self._lease(function)
        except Exception as error:  # a UserError says what to fix; anything else is a bug here
            self.registry.say(f"{function.function_name}: cannot start: {error!r}")
            return _text(502, str(error))
        try:
            return _http_result(generation.invoke(event))
        except (UserError, OSError, ValueError) as error:
            if generation.timed_out:
                return _text(502, f"Task timed out after {function.timeout} seconds")
            return _text(502, f"{function.function_name}: {error}")
        finally:
            self._release(generation)

    def _lookup(self) -> LambdaFunction | None:
        """The function as moto has it now, None when it is gone."""
        try:
            function: LambdaFunction = lambda_backends[self.account_id][self.region].get_function(
                self.function_name
            )
        except LambdaClientError:
            return None
        return function

    def _refusal(self, function: LambdaFunction, event: dict[str, Any]) -> dict[str, Any] | None:
        statements = function.policy.statements
        if self.kind == "url":
            if self.auth_type == "AWS_IAM":
                signed = event["headers"].get("authorization", "").startswith("AWS4-HMAC-SHA256")
                return None if signed else FORBIDDEN  # the signature itself is not checked
            missing = [
                action
                for action in ("lambda:InvokeFunctionUrl", "lambda:InvokeFunction")
                if not any(_allows(s, action, principal="*") for s in statements)
            ]
            if missing:
                self.registry.say(
                    f"{function.function_name}: 403 Forbidden: a public function URL (AuthType NONE) needs"
                    f" the function's policy to allow lambda:InvokeFunctionUrl and lambda:InvokeFunction"
                    f" to everyone (Principal '*'); missing: {', '.join(missing)}"
                )
                return FORBIDDEN
            return None
        if not _route_matches(self.route_key, event):
            return _json(404, {"message": "Not Found"})
        allowed = any(
            _allows(s, "lambda:InvokeFunction", principal="apigateway.amazonaws.com") for s in statements
        )
        if not allowed and self.credentials_arn is None:
            self.registry.say(
                f"{function.function_name}: 500 from the HTTP API: the function's policy does not allow"
                f" lambda:InvokeFunction to apigateway.amazonaws.com (add an AWS::Lambda::Permission)"
            )
            return API_ERROR
        return None

    def _shape(self, event: dict[str, Any]) -> dict[str, Any]:
        """The function URL event serve.py builds, adjusted to this endpoint."""
        context = event["requestContext"]
        context["apiId"] = self.api_id
        if self.kind == "http_api":
            # API Gateway decodes the path before Lambda sees it (datasette_action/events.py)
            event["rawPath"] = unquote(event["rawPath"])
            context["http"]["path"] = event["rawPath"]
            event["routeKey"] = context["routeKey"] = self.route_key
        return event

    def _limit(self, function: LambdaFunction) -> int:
        """How many processes may run the function side by side here."""
        reserved = _reserved(function)
        return self.registry.concurrency if reserved is None else min(reserved, self.registry.concurrency)

    def _lease(self, function: LambdaFunction) -> _Generation:
        """A free process running the function's current code, for one request (given back by
        `_release`): the most recently used free one, else a new one (a cold start) while fewer
        than the limit exist, else the first one to come free. A new code version retires the
        old one's processes; a free process that died (a crash) is replaced."""
        while True:
            retired: list[_Generation] = []
            leased: _Generation | None = None
            start: int | None = None  # the epoch of a process to start
            with self._ready:
                if self._closed:
                    raise UserError(f"{function.function_name}: its endpoint is stopped")
                key, limit = _code_key(function), self._limit(function)  # read again after a wait
                if key != self._key:
                    self._key, self._epoch, self._slots = key, self._epoch + 1, 0
                    retired, self._idle = self._idle, []
                    self._ready.notify_all()  # requests waiting for the old version's processes
                while self._idle and (self._slots > limit or not self._idle[-1].alive()):
                    retired.append(self._idle.pop())  # dead, or beyond a lowered reservation
                    self._slots -= 1
                self._processes.difference_update(retired)
                if self._idle:
                    leased = self._idle.pop()
                elif self._slots < limit:
                    self._slots += 1
                    start = self._epoch
                else:
                    self._ready.wait(1)  # for a free process
            for generation in retired:
                generation.close()
            if leased is not None:
                return leased
            if start is not None:
                return self._start(function, key, start)
            function = self._lookup() or function  # after a wait: a deploy may have changed it

    def _start(self, function: LambdaFunction, key: tuple[Any, ...], epoch: int) -> _Generation:
        """Start a process for the slot `_lease` reserved, outside the lock: other requests
        meanwhile use the processes already running, or start their own."""
        try:
            generation = _start(function, key, self.registry)
        except BaseException:
            with self._ready:
                if epoch == self._epoch:
                    self._slots -= 1
                self._ready.notify()
            raise
        generation.epoch = epoch
        with self._ready:
            closed = self._closed
            if not closed:
                self._processes.add(generation)
                count = self._slots
        if closed:
            generation.close()
            raise UserError(f"{function.function_name}: its endpoint is stopped")
        if self.registry.log:
            self.registry.log(
                f"{function.function_name}: cold start, code sha256 {function.code_sha_256[:12]}"
                f" (process {count} of at most {self._limit(function)})"
            )
        return generation

    def _release(self, generation: _Generation) -> None:
        """Take back a leased process: free again, or closed when it died, timed out, runs an old
        code version, or the endpoint stopped."""
        with self._ready:
            if generation not in self._processes:  # closed by close() already
                return
            current = generation.epoch == self._epoch
            keep = current and not self._closed and not generation.timed_out and generation.alive()
            if keep:
                self._idle.append(generation)
            else:
                self._processes.discard(generation)
                if current:
                    self._slots -= 1
            self._ready.notify()
        if not keep:
            generation.close()


class _Endpoints:
    """Every local endpoint this process serves (see the module docstring for why it is global)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[Endpoint] = []
        self.moto_url: str | None = None  # passed to the functions as AWS_ENDPOINT_URL
        self.log: Log | None = None
        self.concurrency = usable_cores()  # processes per endpoint; start_local_aws sets it
        self._runtime: Path | None = None

    def open(self, **settings: Any) -> Endpoint:
        endpoint = Endpoint(registry=self, **settings)
        endpoint.start()
        with self._lock:
            self._open.append(endpoint)
        return endpoint

    def close(self, endpoint: Endpoint) -> None:
        with self._lock:
            if endpoint not in self._open:
                return
            self._open.remove(endpoint)
        endpoint.close()
        self.say(f"{endpoint.function_name}: {endpoint.url} stopped")

    def close_all(self) -> None:
        with self._lock:
            endpoints, self._open = self._open, []
        for endpoint in endpoints:
            endpoint.close()
        if self._runtime is not None:
            shutil.rmtree(self._runtime.parent, ignore_errors=True)
            self._runtime = None

    def urls(self) -> list[str]:
        with self._lock:
            return [endpoint.url for endpoint in self._open]

    def say(self, message: str) -> None:
        if self.log:
            self.log(message)

    def runtime_dir(self) -> Path | None:
        """A directory standing in for Lambda's /var/runtime: the AWS SDK, linked from here."""
        with self._lock:
            if self._runtime is None and importlib.util.find_spec("boto3") is not None:
                self._runtime = Path(tempfile.mkdtemp(prefix="datasette-lambda-runtime-")) / "runtime"
                self._runtime.mkdir()
                for name in RUNTIME_MODULES:
                    spec = importlib.util.find_spec(name)
                    if spec is None or spec.origin is None:
                        continue
                    if spec.submodule_search_locations:  # a package: link its directory
                        (self._runtime / name).symlink_to(next(iter(spec.submodule_search_locations)))
                    else:
                        (self._runtime / Path(spec.origin).name).symlink_to(spec.origin)
            return self._runtime


ENDPOINTS = _Endpoints()


def _reserved(function: LambdaFunction) -> int | None:
    """The function's ReservedConcurrentExecutions, None when unset (CloudFormation may give a
    string: a parameter's value)."""
    value = function.reserved_concurrency
    if value is None or value == "":
        return None
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return None


def _code_key(function: LambdaFunction) -> tuple[Any, ...]:
    layers = tuple(layer["Arn"] for layer in function.layers)
    environment = tuple(sorted((str(k), str(v)) for k, v in (function.environment_vars or {}).items()))
    return (function.code_sha_256, layers, function.handler, function.run_time, environment)


def _start(function: LambdaFunction, key: tuple[Any, ...], registry: _Endpoints) -> _Generation:
    """Unpack the function's code and layers from moto and start its process."""
    backend: LambdaBackend = lambda_backends[function.account_id][function.region]
    match = re.fullmatch(r"python(\d+\.\d+)", function.run_time or "")
    if match is None:
        raise UserError(f"{function.function_name}: runtime {function.run_time!r} cannot run locally")
    version = match.group(1)
    workdir = contextlib.ExitStack()
    try:
        root = Path(workdir.enter_context(tempfile.TemporaryDirectory(prefix="datasette-lambda-aws-")))
        zips = [(_write(root / "function.zip", function.code_bytes), "")]
        for index, layer in enumerate(function.layers):
            layer_version = backend.layers_versions_by_arn(layer["Arn"])
            if layer_version is None:
                raise UserError(f"{function.function_name}: layer {layer['Arn']} is not in moto")
            zips.append((_write(root / f"layer-{index}.zip", layer_version.code_bytes), "python"))
        try:
            code, *layers = workdir.enter_context(unpacked(zips))
        except Exception as error:  # zipfile.BadZipFile, or code moto could not find in S3
            raise UserError(f"{function.function_name}: cannot unpack its code or layers: {error}") from None
        paths = [code]
        for layer_root in layers:  # as Lambda puts /opt/python/lib/pythonX.Y/site-packages and /opt/python
            site_packages = layer_root / "lib" / f"python{version}" / "site-packages"
            # a layer built for another CPU: its SQLite binding built for this one, first
            paths.extend(workdir.enter_context(sqlite_for_this_machine(layer_root, version)))
            paths.extend([site_packages, layer_root] if site_packages.is_dir() else [layer_root])
        runtime = registry.runtime_dir()
        if runtime is not None:
            paths.append(runtime)
        tmp = root / "tmp"  # Lambda's /tmp: private to this execution environment
        tmp.mkdir()
        environment = {str(k): str(v) for k, v in (function.environment_vars or {}).items()}
        environment.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
                "AWS_LAMBDA_FUNCTION_ARN": function.function_arn,
                "AWS_LAMBDA_LOG_GROUP_NAME": function.logs_group_name,
                "AWS_REGION": function.region,
                "AWS_DEFAULT_REGION": function.region,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_python{version}",  # how the runtime encodes responses
                "LAMBDA_TASK_ROOT": str(code),
                "TMPDIR": str(tmp),
                "DATASETTE_LAMBDA_TMP": str(tmp),  # where the entry point puts S3 databases
            }
        )
        if registry.moto_url:  # as Lambda gives the function its role's credentials: boto3 in it
            # downloads databases from S3 and signs URLs for their downloads against moto
            environment.update({"AWS_ENDPOINT_URL": registry.moto_url, **DUMMY_CREDENTIALS})
        bundle = Bundle(paths=tuple(paths), python=find_python(version), handler=function.handler)
        process = LocalLambda(bundle, environment)
    except BaseException:
        workdir.close()
        raise
    return _Generation(key=key, function=process, workdir=workdir, timeout=int(function.timeout))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _allows(statement: dict[str, Any], action: str, *, principal: str) -> bool:
    """Does one resource-policy statement allow `action` to `principal` (conditions aside)?"""
    if statement.get("Effect", "Allow") != "Allow":
        return False
    actions = statement.get("Action") or []
    actions = [actions] if isinstance(actions, str) else actions
    if not any(a in (action, "lambda:*", "*") for a in actions):
        return False
    if action == "lambda:InvokeFunctionUrl" and statement.get("FunctionUrlAuthType") not in (None, "NONE"):
        return False
    granted = statement.get("Principal")
    if isinstance(granted, dict):
        granted = granted.get("Service") or granted.get("AWS")
    granted = [granted] if isinstance(granted, str) else granted or []
    return "*" in granted or principal in granted


def _route_matches(route_key: str, event: dict[str, Any]) -> bool:
    if route_key == "$default":
        return True
    method, _, pattern = route_key.partition(" ")
    if method not in ("ANY", event["requestContext"]["http"]["method"]):
        return False
    path: str = event["rawPath"]
    if pattern.endswith("{proxy+}"):
        return path.startswith(pattern.removesuffix("{proxy+}"))
    return re.fullmatch(re.sub(r"\\\{[^/]+\\\}", "[^/]+", re.escape(pattern)), path) is not None


def _http_result(response: Any) -> dict[str, Any]:
    """A function URL's reading of what the handler returned: without a statusCode, it is the body."""
    if isinstance(response, dict) and "statusCode" in response:
        return response
    return _json(200, response)


def _json(status: int, value: Any) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(value)}


def _text(status: int, text: str) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "text/plain; charset=utf-8"}, "body": text}


# -- moto's server -------------------------------------------------------------------------------


class LocalAws:
    """moto's server running in this process, with local function URLs; a context manager."""

    def __init__(self, server: ThreadedMotoServer, endpoint_url: str) -> None:
        self._server = server
        self.endpoint_url = endpoint_url

    @property
    def environment(self) -> dict[str, str]:
        """What a client needs to use this local AWS (the credentials are dummies moto accepts)."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, **DUMMY_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}

    @property
    def concurrency(self) -> int:
        """How many processes each local endpoint runs side by side, at most (fewer when a
        function's reserved concurrency is lower); a change applies from the next request."""
        return ENDPOINTS.concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        if value < 1:
            raise UserError(f"concurrency must be at least 1, got {value}")
        ENDPOINTS.concurrency = value

    def function_urls(self) -> list[str]:
        """The local URLs being served for function URLs and HTTP APIs, in creation order."""
        return ENDPOINTS.urls()

    def stop(self) -> None:
        """Stop every local endpoint and its process, forget all state (moto's reset), stop moto."""
        global _RUNNING
        if _RUNNING is not self:
            return
        try:
            ENDPOINTS.close_all()
            request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
            with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=10):
                pass
        finally:
            self._server.stop()
            ENDPOINTS.moto_url = ENDPOINTS.log = None
            ENDPOINTS.concurrency = usable_cores()
            _RUNNING = None

    def __enter__(self) -> LocalAws:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


_RUNNING: LocalAws | None = None


def start_local_aws(port: int = 0, log: Log | None = None, concurrency: int | None = None) -> LocalAws:
    """Start moto's server on 127.0.0.1:port (0: any free port), with this package's additions.

    One per process: moto's state is per process. `log` gets a line per local request and per
    endpoint started or stopped. Each local endpoint runs up to `concurrency` handler processes
    side by side (None: as many as this process has CPU cores), as Lambda runs several execution
    environments; a function's reserved concurrency lowers that.
    """
    global _RUNNING
    if _RUNNING is not None:
        raise UserError(f"a local AWS is already running in this process at {_RUNNING.endpoint_url}")
    if concurrency is not None and concurrency < 1:
        raise UserError(f"--concurrency must be at least 1, got {concurrency}")
    if port:  # moto's server thread would die on a busy port and leave start() waiting forever
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as error:
                raise UserError(
                    f"cannot listen on 127.0.0.1:{port}: {error.strerror}; choose another port"
                ) from None
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    _RUNNING = LocalAws(server, f"http://{host}:{bound}")
    ENDPOINTS.moto_url = _RUNNING.endpoint_url
    ENDPOINTS.log = log
    ENDPOINTS.concurrency = concurrency or usable_cores()
    return _RUNNING
