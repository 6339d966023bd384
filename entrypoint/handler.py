"""The Lambda entry point: `datasette_action_entrypoint.handler.handler` serves the bundle's Datasette.

On the first event the function reads `manifest.json` at the code root (the directory holding
`datasette_action_entrypoint/`, or $DATASETTE_LAMBDA_ROOT), makes the databases available (downloading those kept in
S3 into /tmp), builds Datasette once and wraps it in Mangum. Warm invocations reuse it. Importing this
module reads nothing and imports only the standard library: if the manifest or Datasette's set-up fails,
the failure is printed once to stderr (the function's log) and every request gets a 500 with a short
plain-text explanation, instead of Lambda's bare "Runtime.ImportModuleError".

Events: Lambda function URLs and API Gateway HTTP APIs (payload 2.0), API Gateway REST APIs (payload
1.0). Behind a REST stage the browser's URLs start with `/<stage>/`, so Datasette is built with base_url
`/<stage>/` (one Datasette per base_url seen, normally just one); `base_url` in the manifest (or
`datasette.settings.base_url` in the config) overrides this.

Speed defaults, each undone from the project config (datasette-lambda.yml):

- `suggest_facets` is false: Datasette's facet suggestions run a query per column on every table page.
  Turn them back on with `datasette: {settings: {suggest_facets: true}}`.
- Datasette 0.65 builds pint's unit registry when it is imported (~300 ms of every cold start); here it
  is built on first use instead, by a table with `units` in its metadata (see
  `datasette_action_entrypoint.units`). This changes no behaviour, so there is nothing to turn back.

Responses: Lambda refuses one over RESPONSE_LIMIT, measured here as the runtime sends it (`sent_size`;
python3.12+ send non-ASCII unescaped, `keeps_non_ascii`), so an oversized one becomes a 502 that says
what to ask for instead. A database download too large for a response redirects to its S3 copy
(`datasette_action_entrypoint.downloads`).

Environment: DATASETTE_SECRET (Datasette's signing secret; a random one per process if unset, which
signs users out whenever a new instance starts), DATASETTE_DATA_BUCKET (for databases kept in S3, and
the S3 copies that large downloads redirect to), AWS_EXECUTION_ENV (set by Lambda: the runtime),
DATASETTE_LAMBDA_ROOT and DATASETTE_LAMBDA_TMP (for running the bundle outside Lambda).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from datasette_action_entrypoint.bundle import Bundle, BundleError, Environment, load_bundle
from datasette_action_entrypoint.downloads import LOG_PREFIX, RESPONSE_LIMIT, RESPONSE_OVERHEAD
from datasette_action_entrypoint.paths import request_path

_PYTHON_RUNTIME = re.compile(r"AWS_Lambda_python(\d+)\.(\d+)")  # AWS_EXECUTION_ENV of a Python runtime

Site = Callable[[dict[str, Any], Any], dict[str, Any]]


def text_response(status: int, text: str) -> dict[str, Any]:
    """A plain-text response every event source accepts."""
    return {
        "statusCode": status,
        "headers": {"content-type": "text/plain; charset=utf-8", "cache-control": "no-store"},
        "body": text.rstrip("\n") + "\n",
        "isBase64Encoded": False,
    }


def is_http_event(event: Any) -> bool:
    return (
        isinstance(event, dict)
        and isinstance(event.get("requestContext"), dict)
        and ("rawPath" in event or "httpMethod" in event)
    )


class LambdaApp:
    """The bundle's Datasette as a Lambda handler. Set up on the first event; a set-up failure is
    kept, so it is logged once and answered the same way every time."""

    def __init__(self, environ: Mapping[str, str] | None = None, default_root: Path | None = None) -> None:
        self._environ = environ
        self._default_root = default_root or Path(__file__).resolve().parent.parent
        self._env: Environment | None = None
        self._bundle: Bundle | None = None
        self._sites: dict[str, Site] = {}
        self.failure: str | None = None

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        if self.failure is not None:
            return text_response(500, self.failure)
        use_event_loop()
        try:
            site = self.site_for(event)
        except Exception as error:
            self.failure = self._fail(error)
            return text_response(500, self.failure)
        if not is_http_event(event):
            return text_response(
                400, "Not an HTTP event: expected a Lambda function URL or API Gateway event."
            )
        try:
            response = site(event, context)
        except Exception as error:  # Datasette answers its own errors; this is an event Mangum cannot read
            print(
                f"{LOG_PREFIX}: request failed: {type(error).__name__}: {error}", file=sys.stderr, flush=True
            )
            traceback.print_exception(error, file=sys.stderr)
            return text_response(500, "The request could not be handled; the function's log has the details.")
        return _within_limit(response, keeps_non_ascii(self.environment().execution_env))

    def environment(self) -> Environment:
        if self._env is None:
            environ = os.environ if self._environ is None else self._environ
            self._env = Environment.from_environ(environ, self._default_root)
        return self._env

    def bundle(self) -> Bundle:
        if self._bundle is None:
            self._bundle = load_bundle(self.environment())
        return self._bundle

    def base_url(self, event: Any) -> str:
        manifest = self.bundle().manifest
        configured = manifest.base_url or manifest.settings.get("base_url")
        if configured:
            return str(configured)
        return request_path(event).base_url if is_http_event(event) else "/"

    def site_for(self, event: Any) -> Site:
        """The Mangum handler for the event's base_url, built on first need."""
        base_url = self.base_url(event)
        site = self._sites.get(base_url)
        if site is None:
            from datasette_action_entrypoint.app import make_site  # imports Datasette and Mangum

            env = self.environment()
            site = make_site(self.bundle(), base_url=base_url, secret=env.secret, data_bucket=env.bucket)
            self._sites[base_url] = site
        return site

    def _fail(self, error: Exception) -> str:
        if isinstance(error, BundleError):
            message = f"{LOG_PREFIX}: {error}"
            print(message, file=sys.stderr, flush=True)
        else:
            message = f"{LOG_PREFIX}: Datasette could not start: {type(error).__name__}: {error}"
            print(message, file=sys.stderr, flush=True)
            traceback.print_exception(error, file=sys.stderr)
        return message


_loop: asyncio.AbstractEventLoop | None = None


def use_event_loop() -> None:
    """Make the thread's current event loop an open one, reused from event to event. Mangum runs each
    event on `asyncio.get_event_loop()`, which fails once anything has called `asyncio.run()` (it closes
    its loop and unsets the current one); and setting a loop before Mangum is built keeps Mangum from
    creating one implicitly, which Python 3.12 and 3.13 warn about."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)


def keeps_non_ascii(execution_env: str | None, python: tuple[int, int] | None = None) -> bool:
    """Whether the runtime sends non-ASCII characters as UTF-8 rather than as `\\uXXXX` escapes.

    Lambda's python3.12 and later runtimes send them as they are: their runtime interface client
    encodes the response with `ensure_ascii=False` when AWS_EXECUTION_ENV names one of them
    (awslambdaric/lambda_runtime_marshaller.py, github.com/aws/aws-lambda-python-runtime-interface-client;
    "Response format" in https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html), while
    python3.11 escapes them. Outside Lambda (no AWS_EXECUTION_ENV) the interpreter's version stands for
    the runtime's: `serve` and `local-aws` run the bundle with the runtime's Python version.
    """
    match = _PYTHON_RUNTIME.fullmatch(execution_env or "")
    runtime = (int(match[1]), int(match[2])) if match else (python or sys.version_info[:2])
    return runtime >= (3, 12)


def sent_size(response: dict[str, Any], *, unescaped: bool) -> int:
    """The bytes of the response as the runtime sends it: JSON (the runtime's encoder, simplejson's,
    writes the same text as the standard library's), non-ASCII as UTF-8 when `unescaped`."""
    text = json.dumps(response, ensure_ascii=not unescaped)
    return len(text.encode("utf-8", "surrogatepass"))


def _within_limit(response: dict[str, Any], unescaped: bool) -> dict[str, Any]:
    """The response, or an explanation when Lambda would refuse to send it, measured as the
    runtime sends it (`sent_size`)."""
    body = response.get("body")
    # One character of the body takes at most 12 bytes when escaped (a surrogate pair of \uXXXX),
    # at most 6 otherwise (a control character's \u00XX; UTF-8 needs 4 at most).
    widest = 6 if unescaped else 12
    if not isinstance(body, str) or len(body) * widest <= RESPONSE_LIMIT - RESPONSE_OVERHEAD:
        return response
    size = sent_size(response, unescaped=unescaped)
    if size <= RESPONSE_LIMIT:
        return response
    return text_response(
        502,
        f"The response ({size:,} bytes as sent) is larger than AWS Lambda's 6 MB response limit. "
        "Ask for less: a smaller page (?_size=), or a CSV of fewer rows (filters, ?_size= and the"
        " _next= pages); the whole database is its download, /<database>.db.",
    )


_app = LambdaApp()


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda's entry point (manifest.HANDLER)."""
    return _app(event, context)


def reset() -> None:
    """Forget the set-up (and re-read the environment on the next event): for tests and local runs."""
    global _app
    _app = LambdaApp()
