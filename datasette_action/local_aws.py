"""A local AWS: moto's server, plus what this project's stack needs that moto lacks.

`start_local_aws()` runs moto's server in this process (every AWS API moto mocks, on one loopback
port: point boto3 at it with `AWS_ENDPOINT_URL`). Importing this module first registers, with
moto's CloudFormation, the resource types our stacks use that moto skips:

- `AWS::Lambda::Url`: moto's own function URL config (`create_function_url_config`), whose
  `FunctionUrl` is a real local address, `http://127.0.0.1:<port>/`, one port per URL;
- `AWS::ApiGatewayV2::Api` (quick create, `Target`): an API in moto's apigatewayv2 backend with its
  integration, `$default` route and auto-deployed `$default` stage; `ApiEndpoint` is local too;
- `AWS::S3::BucketPolicy`: the policy put on moto's bucket (`get_bucket_policy` shows it).

Every request to a local URL runs the function's CURRENT code: the code zip and layer zips moto
stores (the bytes uploaded to S3, `LambdaFunction.code_bytes`), unpacked read-only and run by
`serve.LocalLambda` (a `python -I -S` process of the runtime's version, one event at a time, the
function's Handler and Environment), restarted when the code, layers, handler or environment
change (keyed by CodeSha256), when it dies, or after a timeout. The URL enforces what AWS
enforces: a public URL (AuthType NONE) answers 403 unless the function's policy allows both
`lambda:InvokeFunctionUrl` and `lambda:InvokeFunction` to everyone (AWS's rule since Oct 2025).

moto's own classes get six narrow fixes, applied when this module is imported:

- executing a change set rebuilds the stack's Outputs (moto kept the empty output map of the
  stack the CREATE change set started from, and stale outputs after an UPDATE);
- a change set lists the resources that changed parameter values modify (moto compared the
  templates only: a deploy of new code under the same template showed no changes);
- a resource an update removes is forgotten (moto kept the deleted object and gave it back
  when a later update added the same logical id: a URL removed and re-added was dead);
- `AWS::Lambda::Function` keeps `Layers`, `Architectures`, `EphemeralStorage` (moto's CloudFormation
  dropped them) and, on update, drops Layers and Variables the template no longer has;
- `AWS::Lambda::LayerVersion`: `Ref` gives the version ARN (moto gave the Python object),
  `LayerName` is honoured, and a changed `Content` publishes a new version that the functions using
  the old one move to (moto did nothing, and later `Ref`s gave None);
- S3 bucket policies: statements with a `Condition` are left out when moto evaluates them (moto
  cannot evaluate conditions and treated every one as a denial, even in a Deny statement, so the
  usual "deny unless TLS" statement blocked every upload).

moto's CloudFormation creates resources through classmethods that get no context, so the local
servers those resources start live in one registry in this module (`_ENDPOINTS`); `LocalAws.stop()`
closes them all and resets moto.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
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

from moto.apigatewayv2.models import Api, apigatewayv2_backends
from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda.models import LambdaBackend, LambdaFunction, LayerVersion, lambda_backends
from moto.cloudformation import parsing
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException, ValidationError
from moto.cloudformation.models import Change, ChangeSet, CloudFormationBackend
from moto.core.common_models import CloudFormationModel
from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3.exceptions import MissingBucket
from moto.s3.models import FakeBucket, s3_backends
from moto.server import ThreadedMotoServer
from moto.utilities.utils import get_partition

from datasette_action.errors import UserError
from datasette_action.serve import Bundle, LocalLambda, find_python, make_server, unpacked

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


# -- the local endpoints -------------------------------------------------------------------------


@dataclass
class _Generation:
    """One execution environment: the function's code as it was when this process started."""

    key: tuple[Any, ...]
    function: LocalLambda
    workdir: contextlib.ExitStack
    timeout: int
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
class _Endpoint:
    """A local HTTP server standing in for one function URL or HTTP API.

    Each request looks up the function in moto and runs its current code.
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
    _generation: _Generation | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

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
        with self._lock:
            generation, self._generation = self._generation, None
        if generation is not None:
            generation.close()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """Answer one request event as AWS would: check access, then run the current code."""
        backend: LambdaBackend = lambda_backends[self.account_id][self.region]
        try:
            function = backend.get_function(self.function_name)
        except LambdaClientError:
            return _text(404, f"function {self.function_name} does not exist (any more)")
        refusal = self._refusal(function, event)
        if refusal is not None:
            return refusal
        event = self._shape(event)
        for _attempt in range(2):  # a redeploy may retire the process between lookup and invoke
            try:
                generation = self._current(function)
            except Exception as error:  # a UserError says what to fix; anything else is a bug here
                self.registry.say(f"{function.function_name}: cannot start: {error!r}")
                return _text(502, str(error))
            try:
                return _http_result(generation.invoke(event))
            except (UserError, OSError, ValueError) as error:
                if generation.timed_out:
                    return _text(502, f"Task timed out after {function.timeout} seconds")
                if generation is self._generation:
                    return _text(502, f"{function.function_name}: {error}")
        return _text(502, f"{function.function_name}: the code changed during the request")

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
            # API Gateway decodes the path before Lambda sees it (entrypoint/events.py)
            event["rawPath"] = unquote(event["rawPath"])
            context["http"]["path"] = event["rawPath"]
            event["routeKey"] = context["routeKey"] = self.route_key
        return event

    def _current(self, function: LambdaFunction) -> _Generation:
        """The process running the function's current code, started (or restarted) if need be."""
        key = _code_key(function)
        retired = None
        with self._lock:
            generation = self._generation
            if generation is None or generation.key != key or not generation.alive():
                retired = generation
                generation = self._generation = _start(function, key, self.registry)
                if self.registry.log:
                    self.registry.log(
                        f"{function.function_name}: cold start, code sha256 {function.code_sha_256[:12]}"
                    )
        if retired is not None:
            retired.close()
        return generation


class _Endpoints:
    """Every local endpoint this process serves (see the module docstring for why it is global)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[_Endpoint] = []
        self.moto_url: str | None = None  # passed to the functions as AWS_ENDPOINT_URL
        self.log: Log | None = None
        self._runtime: Path | None = None

    def open(self, **settings: Any) -> _Endpoint:
        endpoint = _Endpoint(registry=self, **settings)
        endpoint.start()
        with self._lock:
            self._open.append(endpoint)
        return endpoint

    def close(self, endpoint: _Endpoint) -> None:
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


_ENDPOINTS = _Endpoints()


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
                "LAMBDA_TASK_ROOT": str(code),
                "TMPDIR": str(tmp),
                "DATASETTE_LAMBDA_TMP": str(tmp),  # where the entry point puts S3 databases
            }
        )
        if registry.moto_url:
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


# -- CloudFormation resource types moto does not model -------------------------------------------
# moto finds models through CloudFormationModel.__subclasses__() (direct subclasses only), and its
# metaclass files each under the service named by the module's second dotted part ("local_aws").


class FunctionUrl(CloudFormationModel):
    """AWS::Lambda::Url: moto's function URL config, served on a local port."""

    def __init__(self, function: LambdaFunction, qualifier: str | None, endpoint: _Endpoint) -> None:
        self.account_id = function.account_id
        self.region = function.region
        self.function_name = function.function_name
        self.function_arn = function.function_arn
        self.qualifier = qualifier
        self.endpoint = endpoint

    @property
    def physical_resource_id(self) -> str:  # Ref: the function's ARN
        return f"{self.function_arn}:{self.qualifier}" if self.qualifier else self.function_arn

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::Url"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in ("FunctionUrl", "FunctionArn")

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name == "FunctionUrl":
            return self.endpoint.url
        if attribute_name == "FunctionArn":
            return self.function_arn
        raise UnformattedGetAttTemplateException()

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> FunctionUrl:
        properties = cloudformation_json["Properties"]
        backend: LambdaBackend = lambda_backends[account_id][region_name]
        function = backend.get_function(properties["TargetFunctionArn"])
        config = backend.create_function_url_config(function.function_name, _url_settings(properties))
        endpoint = _ENDPOINTS.open(
            kind="url",
            account_id=account_id,
            region=region_name,
            function_name=function.function_name,
            auth_type=properties.get("AuthType", "NONE"),
        )
        config.url = endpoint.url  # what GetFunctionUrlConfig answers, too
        return cls(function, properties.get("Qualifier"), endpoint)

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: FunctionUrl,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> FunctionUrl:
        properties = cloudformation_json["Properties"]
        backend: LambdaBackend = lambda_backends[account_id][region_name]
        function = backend.get_function(properties["TargetFunctionArn"])
        if (function.function_name, properties.get("Qualifier")) != (
            original_resource.function_name,
            original_resource.qualifier,
        ):  # AWS replaces the URL (a new address)
            original_resource.delete(account_id, region_name)
            return cls.create_from_cloudformation_json(
                new_resource_name, cloudformation_json, account_id, region_name
            )
        backend.update_function_url_config(function.function_name, _url_settings(properties))
        original_resource.endpoint.auth_type = properties.get("AuthType", "NONE")
        return original_resource

    def delete(self, account_id: str, region_name: str) -> None:
        with contextlib.suppress(LambdaClientError):  # the function may have gone first
            lambda_backends[account_id][region_name].delete_function_url_config(self.function_name)
        _ENDPOINTS.close(self.endpoint)

    def is_created(self) -> bool:
        return True


def _url_settings(properties: dict[str, Any]) -> dict[str, Any]:
    return {key: properties[key] for key in ("AuthType", "Cors", "InvokeMode") if key in properties}


class HttpApi(CloudFormationModel):
    """AWS::ApiGatewayV2::Api, HTTP protocol, quick create (Target): a local endpoint in moto's API."""

    def __init__(self, api: Api, account_id: str, region: str, endpoint: _Endpoint | None) -> None:
        self.api = api
        self.account_id = account_id
        self.region = region
        self.endpoint = endpoint

    @property
    def physical_resource_id(self) -> str:  # Ref: the API id
        return str(self.api.api_id)

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApiGatewayV2::Api"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in ("ApiEndpoint", "ApiId")

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name == "ApiEndpoint":
            return str(self.api.api_endpoint)
        if attribute_name == "ApiId":
            return str(self.api.api_id)
        raise UnformattedGetAttTemplateException()

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> HttpApi:
        properties = cloudformation_json["Properties"]
        if "Body" in properties or "BodyS3Location" in properties:
            raise ValidationError(
                message="local AWS: AWS::ApiGatewayV2::Api from an OpenAPI body is not supported; use quick create (Target)"
            )
        api = apigatewayv2_backends[account_id][region_name].create_api(
            api_key_selection_expression=properties.get("ApiKeySelectionExpression"),
            cors_configuration=properties.get("CorsConfiguration"),
            description=properties.get("Description"),
            disable_schema_validation=properties.get("DisableSchemaValidation"),
            disable_execute_api_endpoint=properties.get("DisableExecuteApiEndpoint"),
            name=resource_name,
            protocol_type=properties.get("ProtocolType", "HTTP"),
            route_selection_expression=properties.get("RouteSelectionExpression"),
            tags=properties.get("Tags") or {},
            version=properties.get("Version"),
        )
        target = properties.get("Target")
        if not target or api.protocol_type != "HTTP":
            return cls(api, account_id, region_name, None)
        function = lambda_backends[account_id][region_name].get_function(_function_arn(target))
        route_key = properties.get("RouteKey", "$default")
        integration = api.create_integration(
            connection_type="INTERNET",
            description="",
            integration_method="POST",
            integration_type="AWS_PROXY",
            integration_uri=target,
            credentials_arn=properties.get("CredentialsArn"),
            payload_format_version="2.0",
        )
        api.create_route(
            api_key_required=False,
            authorization_scopes=[],
            route_key=route_key,
            target=f"integrations/{integration.id}",
        )
        api.create_stage({"stageName": "$default", "autoDeploy": True})
        endpoint = _ENDPOINTS.open(
            kind="http_api",
            account_id=account_id,
            region=region_name,
            function_name=function.function_name,
            api_id=api.api_id,
            route_key=route_key,
            credentials_arn=properties.get("CredentialsArn"),
        )
        api.api_endpoint = endpoint.url.rstrip("/")  # AWS's ApiEndpoint has no trailing slash
        return cls(api, account_id, region_name, endpoint)

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: HttpApi,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> HttpApi:
        # AWS updates an API in place; here any change makes a new API (a new id and local URL).
        original_resource.delete(account_id, region_name)
        return cls.create_from_cloudformation_json(
            new_resource_name, cloudformation_json, account_id, region_name
        )

    def delete(self, account_id: str, region_name: str) -> None:
        apigatewayv2_backends[account_id][region_name].delete_api(self.api.api_id)
        if self.endpoint is not None:
            _ENDPOINTS.close(self.endpoint)

    def is_created(self) -> bool:
        return True


def _function_arn(target: str) -> str:
    """The function ARN in a quick-create Target (a function ARN or its invocation URI)."""
    match = re.search(r"arn:[^:]+:lambda:[^:]+:\d+:function:[^/:]+", target)
    return match.group(0) if match else target


class BucketPolicy(CloudFormationModel):
    """AWS::S3::BucketPolicy: the policy document put on moto's bucket."""

    def __init__(self, name: str, account_id: str, region: str, bucket: str) -> None:
        self.name = name
        self.account_id = account_id
        self.region = region
        self.bucket = bucket

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::BucketPolicy"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False  # AWS::S3::BucketPolicy has no attributes

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> BucketPolicy:
        properties = cloudformation_json["Properties"]
        document = properties["PolicyDocument"]
        text = document if isinstance(document, str) else json.dumps(document)
        backend = s3_backends[account_id][get_partition(region_name)]
        backend.put_bucket_policy(properties["Bucket"], text.encode("utf-8"))
        return cls(resource_name, account_id, region_name, properties["Bucket"])

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: BucketPolicy,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> BucketPolicy:
        if cloudformation_json["Properties"]["Bucket"] != original_resource.bucket:
            original_resource.delete(account_id, region_name)
        policy = cls.create_from_cloudformation_json(
            original_resource.name, cloudformation_json, account_id, region_name
        )
        return policy

    def delete(self, account_id: str, region_name: str) -> None:
        with contextlib.suppress(MissingBucket):  # the bucket may have gone first
            s3_backends[account_id][get_partition(region_name)].delete_bucket_policy(self.bucket)

    def is_created(self) -> bool:
        return True


# -- narrow fixes to moto's own classes ----------------------------------------------------------

_FIXED = "_datasette_lambda_fixed"


def _fix_moto() -> None:
    """Apply the six fixes the module docstring lists (once per process)."""
    if getattr(CloudFormationBackend, _FIXED, False):
        return
    setattr(CloudFormationBackend, _FIXED, True)
    _fix_change_set_outputs()
    _fix_change_set_changes()
    _fix_removed_resources()
    _fix_function_properties()
    _fix_layer_versions()
    _fix_bucket_policy_conditions()
    # moto caches its map of models on first use; drop it so the models above are in it
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()


def _fix_change_set_outputs() -> None:
    """After ExecuteChangeSet, the stack's outputs come from the template just applied.

    moto's create_stack builds the output map after creating the resources; execute_change_set
    never rebuilt it, so a stack born from a CREATE change set (with an empty template) had no
    Outputs, and an UPDATE kept the outputs parsed before it.
    """
    execute = CloudFormationBackend.execute_change_set

    def execute_change_set(
        self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None
    ) -> None:
        execute(self, change_set_name, stack_name)
        change_set = self.describe_change_set(change_set_name)
        assert change_set is not None
        stack = self.stacks[change_set.stack_id]
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        stack.output_map = stack._create_output_map()

    setattr(CloudFormationBackend, "execute_change_set", execute_change_set)  # noqa: B010


def _fix_change_set_changes() -> None:
    """A change set lists the resources that a changed parameter modifies.

    moto's change set compared the templates only, so a deploy that changes only parameter values
    (new code and layer keys, the same template) showed no changes, though executing it changed
    the function. The diff moto applies on execute already takes the parameters into account.
    """

    def diff(self: ChangeSet) -> list[Change]:
        resource_map = self.stack.resource_map
        actions = resource_map.build_resource_diff(self.template_dict, self.parameters)
        resources = {**resource_map._resource_json_map, **self.template_dict["Resources"]}
        return [
            Change(action=action, logical_resource_id=name, resource_type=resources[name]["Type"])
            for action, names in actions.items()
            for name in names
        ]

    setattr(ChangeSet, "diff", diff)  # noqa: B010


def _fix_removed_resources() -> None:
    """A resource an update removes is forgotten, so adding it back later creates it anew.

    moto deleted it but kept the deleted object, and handed that back when a later update added
    the same logical id (a function URL removed and added back pointed at a stopped server).
    """
    update = parsing.ResourceMap.update

    def updated(
        self: parsing.ResourceMap, template: dict[str, Any], parameters: dict[str, Any] | None = None
    ) -> None:
        removed = [name for name in self._resource_json_map if name not in template["Resources"]]
        update(self, template, parameters)
        for name in removed:
            self._parsed_resources.pop(name, None)

    setattr(parsing.ResourceMap, "update", updated)  # noqa: B010


def _fix_function_properties() -> None:
    """AWS::Lambda::Function: the properties moto's CloudFormation dropped, on create and update."""
    create = LambdaFunction.create_from_cloudformation_json
    update = LambdaFunction.update_from_cloudformation_json

    def created(
        cls: type[LambdaFunction],
        /,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> LambdaFunction:
        function = create(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        _apply_function_properties(function, cloudformation_json["Properties"])
        return function

    def updated(
        cls: type[LambdaFunction],
        /,
        original_resource: LambdaFunction,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> LambdaFunction:
        function = update(original_resource, new_resource_name, cloudformation_json, account_id, region_name)
        _apply_function_properties(function, cloudformation_json["Properties"])
        return function

    setattr(LambdaFunction, "create_from_cloudformation_json", classmethod(created))  # noqa: B010
    setattr(LambdaFunction, "update_from_cloudformation_json", classmethod(updated))  # noqa: B010


def _apply_function_properties(function: LambdaFunction, properties: dict[str, Any]) -> None:
    backend: LambdaBackend = lambda_backends[function.account_id][function.region]
    latest = backend.get_function(function.function_name)
    for target in {id(function): function, id(latest): latest}.values():  # Publish returns a copy
        target.layers = target._get_layers_data(list(properties.get("Layers") or []))
        target.architectures = properties.get("Architectures") or ["x86_64"]
        target.ephemeral_storage = int((properties.get("EphemeralStorage") or {}).get("Size", 512))
        target.environment_vars = (properties.get("Environment") or {}).get("Variables") or {}


def _fix_layer_versions() -> None:
    """AWS::Lambda::LayerVersion: Ref, LayerName, and updates (each a new version)."""

    def update(
        cls: type[LayerVersion],
        /,
        original_resource: LayerVersion,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> LayerVersion:
        # CloudFormation replaces a changed layer version: a new version of the same layer. The
        # functions that used the old one move to it, as their Ref to the layer now resolves to it
        # (moto would not update a function whose own properties did not change).
        new = cls.create_from_cloudformation_json(
            original_resource.name, cloudformation_json, account_id, region_name
        )
        backend: LambdaBackend = lambda_backends[account_id][region_name]
        for listed in backend.list_functions():
            function = backend.get_function(listed.function_name)
            arns = [layer["Arn"] for layer in function.layers]
            if original_resource.arn in arns:
                function.layers = function._get_layers_data(
                    [new.arn if arn == original_resource.arn else arn for arn in arns]
                )
        return new

    setattr(LayerVersion, "physical_resource_id", property(lambda self: self.arn))  # noqa: B010
    setattr(LayerVersion, "cloudformation_name_type", staticmethod(lambda: "LayerName"))  # noqa: B010
    setattr(LayerVersion, "update_from_cloudformation_json", classmethod(update))  # noqa: B010


def _fix_bucket_policy_conditions() -> None:
    """Evaluate bucket policies without the statements moto cannot evaluate (those with a Condition)."""

    def get_permission(self: FakeBucket, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        policy = json.loads(self.policy)
        statements = policy.get("Statement") or []
        statements = [statements] if isinstance(statements, dict) else statements
        kept = [statement for statement in statements if "Condition" not in statement]
        if not kept:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**policy, "Statement": kept})).is_action_permitted(action, resource)

    setattr(FakeBucket, "get_permission", get_permission)  # noqa: B010


_fix_moto()


# -- the server ----------------------------------------------------------------------------------


class LocalAws:
    """moto's server running in this process, with local function URLs; a context manager."""

    def __init__(self, server: ThreadedMotoServer, endpoint_url: str) -> None:
        self._server = server
        self.endpoint_url = endpoint_url

    @property
    def environment(self) -> dict[str, str]:
        """What a client needs to use this local AWS (the credentials are dummies moto accepts)."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, **DUMMY_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}

    def function_urls(self) -> list[str]:
        """The local URLs being served for function URLs and HTTP APIs, in creation order."""
        return _ENDPOINTS.urls()

    def stop(self) -> None:
        """Stop every local endpoint and its process, forget all state (moto's reset), stop moto."""
        global _RUNNING
        if _RUNNING is not self:
            return
        try:
            _ENDPOINTS.close_all()
            request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
            with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=10):
                pass
        finally:
            self._server.stop()
            _ENDPOINTS.moto_url = _ENDPOINTS.log = None
            _RUNNING = None

    def __enter__(self) -> LocalAws:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


_RUNNING: LocalAws | None = None


def start_local_aws(port: int = 0, log: Log | None = None) -> LocalAws:
    """Start moto's server on 127.0.0.1:port (0: any free port), with this module's additions.

    One per process: moto's state is per process. `log` gets a line per local request and per
    endpoint started or stopped.
    """
    global _RUNNING
    if _RUNNING is not None:
        raise UserError(f"a local AWS is already running in this process at {_RUNNING.endpoint_url}")
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
    _ENDPOINTS.moto_url = _RUNNING.endpoint_url
    _ENDPOINTS.log = log
    return _RUNNING
