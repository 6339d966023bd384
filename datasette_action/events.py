"""Lambda HTTP events, and readers for the responses, for local serving, the smoke test and tests.

Outside the Lambda bundle (only what runs in Lambda is packaged): `serve` and `checks` turn real
HTTP requests into function URL events (`http_request_event`); tests and benchmarks build
realistic events of each source (`function_url_event`, `http_api_event`, `rest_event`). The shapes
follow live captures of each event source (AWS's docs plus public captures of real requests),
including what each source does to the path:

- Lambda function URL (payload 2.0): `rawPath` is the path as the client sent it, still
  percent-encoded; `requestContext.http.path` is decoded; cookies come both as the `cookies` array
  and as a `cookie` header; `rawQueryString` is as sent.
- API Gateway HTTP API (payload 2.0): `rawPath` and `requestContext.http.path` arrive DECODED
  (`/a%2Fb` becomes `/a/b`: the difference is lost before Lambda runs); a named stage stays in the path;
  cookies come only as the `cookies` array.
- API Gateway REST API (payload 1.0): `path` is percent-encoded and has no stage;
  `requestContext.path` is percent-encoded and starts with `/<stage>`; headers and query parameters
  come twice, as single values (the last one) and as `multiValue...` lists; query values are decoded.

`path` is always the path below the API's stage, percent-encoded as a client would send it
(`/db/a%2Fb`); the builders add the stage where AWS puts it.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

Query = str | Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]] | None


class ClientParts(TypedDict, total=False):
    """What a client sends besides the method and the path: the keyword arguments every event
    builder takes (each builder has its own default host)."""

    query: Query
    headers: Mapping[str, str] | None
    cookies: Sequence[str] | None
    body: bytes | str | None
    host: str


FUNCTION_URL_HOST = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws"
API_HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
SOURCE_IP = "203.0.113.7"
USER_AGENT = "datasette-lambda-test/1.0"
_WHEN = datetime(2026, 7, 10, 19, 19, 6, 671_000, tzinfo=UTC)  # the time of the built events
_TIME_FORMAT = "%d/%b/%Y:%H:%M:%S +0000"  # requestContext.time, as AWS writes it
_TIME = _WHEN.strftime(_TIME_FORMAT)
_TIME_EPOCH = int(_WHEN.timestamp() * 1000)


@dataclass(frozen=True)
class LocalContext:
    """The parts of Lambda's context object that Mangum and Datasette may look at."""

    function_name: str = "datasette-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:datasette-local"
    log_group_name: str = "/aws/lambda/datasette-local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def lambda_context() -> LocalContext:
    return LocalContext()


def query_string(query: Query) -> str:
    """The query string a client would send (percent-encoded, repeated keys kept in order)."""
    if query is None:
        return ""
    if isinstance(query, str):
        return query.removeprefix("?")
    return urlencode(_query_pairs(query))


def _query_pairs(
    query: Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]],
) -> list[tuple[str, str]]:
    if isinstance(query, Mapping):
        pairs: list[tuple[str, str]] = []
        for key, value in query.items():
            values = [value] if isinstance(value, str) else list(value)
            pairs.extend((key, v) for v in values)
        return pairs
    return [(key, value) for key, value in query]


def _decoded_pairs(query: Query) -> list[tuple[str, str]]:
    return parse_qsl(query_string(query), keep_blank_values=True)


def _body_fields(body: bytes | str | None) -> tuple[str | None, bool]:
    if body is None:
        return None, False
    if isinstance(body, bytes):
        return base64.b64encode(body).decode("ascii"), True
    return body, False


def _client_headers(
    host: str, headers: Mapping[str, str] | None, cookies: Sequence[str] | None, *, cookie_header: bool
) -> dict[str, str]:
    """The headers a client and AWS's front end send (payload 2.0: lower-case names)."""
    all_headers = {
        "accept": "*/*",
        "host": host,
        "user-agent": USER_AGENT,
        "x-amzn-trace-id": "Root=1-00000000-000000000000000000000000",
        "x-forwarded-for": SOURCE_IP,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    if cookies and cookie_header:
        all_headers["cookie"] = "; ".join(cookies)
    return all_headers


def _v2_event(
    *,
    method: str,
    raw_path: str,
    decoded_path: str,
    query: Query,
    headers: dict[str, str],
    cookies: Sequence[str] | None,
    body: bytes | str | None,
    host: str,
    stage: str,
    account_id: str,
    source_ip: str = SOURCE_IP,
    request_id: str = "11111111-2222-4333-8444-555555555555",
    when: datetime = _WHEN,
) -> dict[str, Any]:
    grouped: dict[str, list[str]] = {}
    for key, value in _decoded_pairs(query):
        grouped.setdefault(key, []).append(value)
    body_text, is_base64 = _body_fields(body)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query_string(query),
        "headers": headers,
        "requestContext": {
            "accountId": account_id,
            "apiId": host.split(".", 1)[0],
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "http": {
                "method": method,
                "path": decoded_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": stage,
            "time": when.strftime(_TIME_FORMAT),
            "timeEpoch": int(when.timestamp() * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if grouped:
        event["queryStringParameters"] = {k: ",".join(v) for k, v in grouped.items()}
    if cookies:
        event["cookies"] = list(cookies)
    if body_text is not None:
        event["body"] = body_text
    return event


def function_url_event(method: str = "GET", path: str = "/", **client: Unpack[ClientParts]) -> dict[str, Any]:
    """A Lambda function URL request (payload 2.0): `rawPath` keeps the client's percent-encoding."""
    host, cookies = client.get("host", FUNCTION_URL_HOST), client.get("cookies")
    return _v2_event(
        method=method,
        raw_path=path,
        decoded_path=unquote(path),
        query=client.get("query"),
        headers=_client_headers(host, client.get("headers"), cookies, cookie_header=True),
        cookies=cookies,
        body=client.get("body"),
        host=host,
        stage="$default",
        account_id="anonymous",
    )


def http_request_event(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    host: str,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """The function URL event (payload 2.0) for one real HTTP request (`serve`, the smoke test).

    As AWS builds it: rawPath keeps the percent-encoding, header names are lower-case with
    repeated headers joined by commas, cookies move to their own list; a fresh request id and time.
    """
    parts = urlsplit(target)
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    joined["host"] = host
    path = parts.path or "/"
    return _v2_event(
        method=method,
        raw_path=path,
        decoded_path=unquote(path),
        query=parts.query,
        headers=joined,
        cookies=cookies,
        body=body or None,
        host=host,
        stage="$default",
        account_id="anonymous",
        source_ip=source_ip,
        request_id=str(uuid.uuid4()),
        when=datetime.now(UTC),
    )


def http_api_event(
    method: str = "GET", path: str = "/", *, stage: str = "$default", **client: Unpack[ClientParts]
) -> dict[str, Any]:
    """An API Gateway HTTP API request (payload 2.0). Like AWS, it decodes the path (so `%2F` is
    lost) and keeps a named stage in it."""
    full = path if stage == "$default" else f"/{stage}{path}"
    decoded = unquote(full)
    host, cookies = client.get("host", API_HOST), client.get("cookies")
    return _v2_event(
        method=method,
        raw_path=decoded,
        decoded_path=decoded,
        query=client.get("query"),
        headers=_client_headers(host, client.get("headers"), cookies, cookie_header=False),
        cookies=cookies,
        body=client.get("body"),
        host=host,
        stage=stage,
        account_id="123456789012",
    )


def rest_event(
    method: str = "GET", path: str = "/", *, stage: str = "prod", **client: Unpack[ClientParts]
) -> dict[str, Any]:
    """An API Gateway REST API proxy request (payload 1.0) through the `{proxy+}` resource of the
    stage's execute-api URL (`https://<host>/<stage><path>`)."""
    host, headers, cookies = client.get("host", API_HOST), client.get("headers"), client.get("cookies")
    multi_headers: dict[str, list[str]] = {
        "accept": ["*/*"],
        "Host": [host],
        "User-Agent": [USER_AGENT],
        "X-Amzn-Trace-Id": ["Root=1-00000000-000000000000000000000000"],
        "X-Forwarded-For": [SOURCE_IP],
        "X-Forwarded-Port": ["443"],
        "X-Forwarded-Proto": ["https"],
    }
    for key, value in (headers or {}).items():
        multi_headers[key] = [value]
    if cookies:
        multi_headers["cookie"] = ["; ".join(cookies)]
    multi_query: dict[str, list[str]] = {}
    for key, value in _decoded_pairs(client.get("query")):
        multi_query.setdefault(key, []).append(value)
    body_text, is_base64 = _body_fields(client.get("body"))
    proxy = path.lstrip("/")
    return {
        "resource": "/{proxy+}" if proxy else "/",
        "path": path,
        "httpMethod": method,
        "headers": {k: v[-1] for k, v in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": proxy} if proxy else None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": host.split(".", 1)[0],
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "extendedRequestId": "ATfSdF7nPHcErRA=",
            "httpMethod": method,
            "identity": {"sourceIp": SOURCE_IP, "userAgent": USER_AGENT},
            "path": f"/{stage}{path}",
            "protocol": "HTTP/1.1",
            "requestId": "7c2af7db-31f3-42b5-8a6d-9ffc74e3b9e0",
            "requestTime": _TIME,
            "requestTimeEpoch": _TIME_EPOCH,
            "resourceId": "al6gqb",
            "resourcePath": "/{proxy+}" if proxy else "/",
            "stage": stage,
        },
        "body": body_text,
        "isBase64Encoded": is_base64,
    }


def response_body(response: Mapping[str, Any]) -> bytes:
    """The response body as bytes, undoing the base64 encoding of binary bodies."""
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        return base64.b64decode(body)
    return str(body).encode("utf-8")


def response_header_pairs(response: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every response header as (name, value), from `headers`, `multiValueHeaders` and (payload
    2.0) the `cookies` array (as `set-cookie`), in that order."""
    pairs = [(name, str(value)) for name, value in (response.get("headers") or {}).items()]
    for name, values in (response.get("multiValueHeaders") or {}).items():
        pairs.extend((name, str(v)) for v in values)
    pairs.extend(("set-cookie", str(cookie)) for cookie in response.get("cookies") or ())
    return pairs


def response_headers(response: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every response header by lower-case name (see `response_header_pairs`)."""
    merged: dict[str, list[str]] = {}
    for name, value in response_header_pairs(response):
        merged.setdefault(name.lower(), []).append(value)
    return merged


def response_header(response: Mapping[str, Any], name: str) -> str | None:
    """One response header (the first value), or None."""
    values = response_headers(response).get(name.lower())
    return values[0] if values else None


def http_response(response: Mapping[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """A Lambda HTTP response as the status, headers and body bytes of an HTTP response."""
    return int(response.get("statusCode", 200)), response_header_pairs(response), response_body(response)
