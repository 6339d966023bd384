"""Where a Lambda HTTP event's path really is, and what base_url Datasette needs for it.

Standard library only. Mangum gives Datasette `raw_path=None` and a percent-DECODED `path`, so a table
named `a/b` requested as `/db/a%2Fb` reaches Datasette as `/db/a/b` (400 or 404). Datasette routes
on `raw_path` when it is set, so `request_path()` recovers the still-encoded path from the event:

- function URL (payload 2.0): `rawPath` is encoded as the client sent it.
- HTTP API (payload 2.0): `rawPath` is already decoded by API Gateway; `%2F` cannot be told apart
  from `/` any more. It is re-encoded where needed (spaces, non-ASCII) so that Datasette can read it;
  Datasette's own links tilde-encode (`a~2Fb`) and keep working there.
- REST API (payload 1.0): `path` is encoded and has no stage; `requestContext.path` is the same path
  with `/<stage>` in front on the execute-api host. On a custom domain it is the path as requested
  there, without the stage (AWS's docs; not captured here), so no stage prefix is used then.

The encodings above come from public captures of live requests to each service (a probe that sent
`%2F`, `%20`, `%25`, non-ASCII, ... through a REST API, an HTTP API, a function URL and an ALB); they
have not been re-checked against AWS from this project.

A REST stage (and a named HTTP API stage) is in the URL the browser sees but not in the path the
app gets, so Datasette needs base_url `/<stage>/` to write links; the path given to it keeps no
prefix (with both, links double: `/prod/prod/...`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

# A "%" that does not start a %XX escape: literal in a decoded path, so it must be encoded.
_BARE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Characters a path may carry unencoded (RFC 3986 pchar and "/"), besides letters, digits and "_.-~".
_PATH_SAFE = "/%:@!$&'()*+,;="


@dataclass(frozen=True)
class RequestPath:
    prefix: str  # "" or "/<stage>": in the browser's URL, not in `path`
    path: str  # percent-encoded ASCII path below the prefix, starting with "/"

    @property
    def base_url(self) -> str:
        """Datasette's base_url for this request: "/" or "/<stage>/"."""
        return f"{self.prefix}/"


def encoded_path(path: str) -> str:
    """`path` as percent-encoded ASCII: existing %XX escapes kept byte for byte, everything that may
    not appear literally in a URL path (spaces, non-ASCII, "?", "#", a bare "%") encoded."""
    return quote(_BARE_PERCENT.sub("%25", path), safe=_PATH_SAFE)


def _stage_prefix(stage: Any, path_with_stage: str | None) -> str:
    if not isinstance(stage, str) or stage in ("", "$default"):
        return ""
    prefix = f"/{stage}"
    if path_with_stage is None or path_with_stage == prefix or path_with_stage.startswith(prefix + "/"):
        return prefix
    return ""  # a custom domain: the stage is not in the URL


def _strip(prefix: str, path: str) -> str:
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix) :]
    return path or "/"


def request_path(event: Mapping[str, Any]) -> RequestPath:
    """The stage prefix and the encoded path of a function URL, HTTP API or REST API event."""
    context = event.get("requestContext") or {}
    if event.get("version") == "2.0":
        raw = event.get("rawPath") or (context.get("http") or {}).get("path") or "/"
        prefix = _stage_prefix(context.get("stage"), raw)
        return RequestPath(prefix, encoded_path(_strip(prefix, raw)))
    path = event.get("path") or "/"
    if event.get("version") == "1.0":  # an HTTP API with payload 1.0: a named stage is in `path`
        prefix = _stage_prefix(context.get("stage"), path)
        return RequestPath(prefix, encoded_path(_strip(prefix, path)))
    # REST: `path` never has the stage; `requestContext.path` shows whether the URL has it.
    prefix = _stage_prefix(context.get("stage"), context.get("path"))
    return RequestPath(prefix, encoded_path(path))


def decoded_path(path: str) -> str:
    """The ASGI `path` (decoded) that goes with an encoded `raw_path`."""
    return unquote(path)
