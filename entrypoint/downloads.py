"""Database downloads too large for a Lambda response, answered with a redirect to S3.

Datasette links every database's download at `/<database>.db`. Lambda sends at most RESPONSE_LIMIT
bytes of response JSON, in which a binary body travels base64-encoded (4 bytes for every 3), so a
database over DOWNLOAD_LIMIT bytes cannot come through the function. `package` uploads each such
database to the artifacts bucket too (the manifest's `s3_key`, `databases/<sha256>/<file>`: the same
key for the same bytes, deploy after deploy), and the function's role may read exactly those keys.

`S3Downloads` sits between Mangum and Datasette and leaves every decision to Datasette: the route
(`/(?P<database>[^/.]+)\\.db$` in 0.65 and the 1.0 alphas alike, matched after base_url is taken off,
the name tilde-encoded), the permissions (`view-database-download` and the others Datasette checks),
the `allow_download` setting, the ETag's 304. Only when Datasette starts a 200 answer for a database
with an S3 key is that answer replaced, before any byte of the file is read: a 302 to a presigned URL
of the object, valid for PRESIGNED_SECONDS. The URL is signed with the function's own credentials
(its role's, which Lambda puts in the environment) by boto3, which every Lambda Python runtime has. A
URL signed with temporary credentials stops working when they expire, even before its own expiry
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-presigned-url.html): the redirect is
followed at once, so a short lifetime is all it needs. Without boto3 (`datasette-lambda serve` runs
the bundle with nothing else on sys.path) Datasette's own answer goes out, and the handler's size
check explains that it is too large.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from datasette_action_entrypoint.manifest import Manifest

if TYPE_CHECKING:  # mangum is in the layer, not beside `package`, which reads DOWNLOAD_LIMIT here
    from mangum.types import ASGI, Message, Receive, Scope, Send

# Lambda's synchronous response limit, for the whole JSON response the runtime sends
# (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html: "Invocation payload
# (request and response): 6 MB each for request and response (synchronous)"; a function URL in
# BUFFERED mode, this project's, has the same 6 MB:
# https://docs.aws.amazon.com/lambda/latest/dg/config-rs-invoke-furls.html).
RESPONSE_LIMIT = 6 * 1024 * 1024
# Room in the response JSON for everything but the body: status, headers, field names.
RESPONSE_OVERHEAD = 8 * 1024
# The largest file whose base64 text (4 characters per 3 bytes) fits beside that: 4,712,448 bytes,
# about 4.5 MB. `package` gives every larger database an S3 key.
DOWNLOAD_LIMIT = (RESPONSE_LIMIT - RESPONSE_OVERHEAD) // 4 * 3
PRESIGNED_SECONDS = 300
LOG_PREFIX = "datasette-lambda"

_DOWNLOAD_ROUTE = re.compile(r"/(?P<database>[^/.]+)\.db")  # Datasette's, for /<database>.db
_PRESIGNED_METHODS = {"GET": "get_object", "HEAD": "head_object"}

# (S3 client method, bucket, key, file name) -> presigned URL
Presign = Callable[[str, str, str, str], str]


@dataclass(frozen=True)
class S3Download:
    bucket: str
    key: str
    file: str  # the name the browser saves it as, as Datasette's own download names it


def s3_downloads(manifest: Manifest, bucket: str | None) -> dict[str, S3Download]:
    """Database name -> its object, for every database the manifest gives an S3 key."""
    if not bucket:
        return {}
    return {d.name: S3Download(bucket, d.s3_key, d.file) for d in manifest.databases if d.s3_key}


class _Answered(BaseException):
    """Raised from `send` to stop Datasette once its answer has been replaced. A BaseException:
    Datasette turns an Exception raised while it answers into a logged 500 (its `handle_exception`),
    and this must pass through it without either."""


class S3Downloads:
    """ASGI middleware: Datasette's 200 answer to a download of a database with an S3 key becomes
    a redirect to the object (see the module docstring). Everything else passes through untouched."""

    def __init__(
        self, app: ASGI, downloads: Mapping[str, S3Download], base_url: str, presign: Presign | None = None
    ) -> None:
        self.app = app
        self.downloads = dict(downloads)
        self.base_url = base_url
        self._presign = presign

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        download = self.download_for(scope)
        if download is None:
            await self.app(scope, receive, send)
            return
        method = _PRESIGNED_METHODS[scope["method"]]

        async def send_redirect(message: Message) -> None:
            if message["type"] != "http.response.start" or message["status"] != 200:
                await send(message)
                return
            answer = self.redirect(method, download, message)
            if answer is not None and scope["method"] == "HEAD":
                answer = (answer[0], _body(""))
            if answer is None:  # no boto3 here: Datasette's own answer goes on
                await send(message)
                return
            start, body = answer
            await send(start)
            await send(body)
            raise _Answered

        try:
            await self.app(scope, receive, send_redirect)
        except _Answered:
            pass

    def download_for(self, scope: Scope) -> S3Download | None:
        """The S3 object when the request is a GET or HEAD of `/<database>.db` for a database
        with an S3 key, after base_url is taken off the path as Datasette's router does."""
        if scope["type"] != "http" or scope.get("method") not in _PRESIGNED_METHODS or not self.downloads:
            return None
        raw = scope.get("raw_path")
        path = raw.decode("ascii") if raw else str(scope.get("path", ""))
        if self.base_url != "/" and path.startswith(self.base_url):
            path = "/" + path[len(self.base_url) :]
        match = _DOWNLOAD_ROUTE.fullmatch(path)
        if match is None:
            return None
        from datasette.utils import tilde_decode  # type: ignore[import-untyped]  # as Datasette reads it

        return self.downloads.get(tilde_decode(match["database"]))

    def redirect(self, method: str, download: S3Download, started: Message) -> tuple[Message, Message] | None:
        """The redirect's start and body messages; a 502 saying why when the URL cannot be
        signed; None without boto3."""
        try:
            presign = self._presign or default_presigner()
        except ImportError:
            return None
        self._presign = presign
        try:
            url = presign(method, download.bucket, download.key, download.file)
        except Exception as error:  # botocore's NoCredentialsError, ParamValidationError, ...
            message = f"{LOG_PREFIX}: could not sign a URL for s3://{download.bucket}/{download.key}: {error}"
            print(message, file=sys.stderr, flush=True)
            return _start(502, [(b"content-type", b"text/plain; charset=utf-8")]), _body(message)
        # CORS headers Datasette added (its `cors` setting) apply to the redirect too.
        cors = [
            (k, v) for k, v in started.get("headers", ()) if bytes(k).lower().startswith(b"access-control-")
        ]
        text = f"The database download is at {url}"
        headers = [(b"location", url.encode("ascii")), (b"content-type", b"text/plain; charset=utf-8"), *cors]
        return _start(302, headers), _body(text)


def default_presigner() -> Presign:
    """Presigned URLs from boto3, with the credentials and region of the function's environment
    (SigV4: every region accepts it; newer ones take nothing else). ImportError without boto3."""
    import boto3  # type: ignore[import-untyped]  # in every Lambda Python runtime
    from botocore.config import Config  # type: ignore[import-untyped]

    # A session of its own: the credentials as the environment has them now (boto3's default
    # session keeps the first it found for the process).
    client = boto3.session.Session().client("s3", config=Config(signature_version="s3v4"))

    def presign(method: str, bucket: str, key: str, file: str) -> str:
        params = {"Bucket": bucket, "Key": key}
        if method == "get_object":  # saved under the database's file name, as Datasette names it
            params["ResponseContentDisposition"] = f'attachment; filename="{file}"'
        url: str = client.generate_presigned_url(method, Params=params, ExpiresIn=PRESIGNED_SECONDS)
        return url

    return presign


def with_s3_downloads(app: ASGI, manifest: Manifest, *, base_url: str, bucket: str | None) -> ASGI:
    """`app` behind S3Downloads when some database has an S3 key and the bucket is known."""
    downloads = s3_downloads(manifest, bucket)
    return S3Downloads(app, downloads, base_url) if downloads else app


def _start(status: int, headers: list[tuple[bytes, bytes]]) -> Message:
    # no-store: a presigned URL expires, so no cache may keep the redirect (nor the error)
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"cache-control", b"no-store")],
    }


def _body(text: str) -> Message:
    body = (text + "\n").encode("utf-8") if text else b""  # empty: the answer to a HEAD
    return {"type": "http.response.body", "body": body, "more_body": False}
