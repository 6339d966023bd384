"""CloudFormation resource types our stacks use that moto does not model (it skips them).

- `AWS::Lambda::Url`: moto's own function URL config (`create_function_url_config`), whose
  `FunctionUrl` is a real local address, `http://127.0.0.1:<port>/`, one port per URL;
- `AWS::ApiGatewayV2::Api` (quick create, `Target`): an API in moto's apigatewayv2 backend with its
  integration, `$default` route and auto-deployed `$default` stage; `ApiEndpoint` is local too;
- `AWS::S3::BucketPolicy`: the policy put on moto's bucket (`get_bucket_policy` shows it);
- `AWS::IAM::OIDCProvider`: moto's own OpenID Connect provider (`list_open_id_connect_providers`
  shows it), whose `Ref` is its ARN (setup-github's GitHub provider).

moto finds models through `CloudFormationModel.__subclasses__()` (direct subclasses only), so these
count once this module is imported, in the process that runs moto's server; moto caches that list
on first use, which `moto_patches.apply()` clears. moto's model metaclass files each class under
the service named by the module's second dotted part (here "local_aws"), so this module must stay
inside a package.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any, ClassVar

from moto.apigatewayv2.models import Api, apigatewayv2_backends
from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda.models import LambdaBackend, LambdaFunction, lambda_backends
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException, ValidationError
from moto.core.common_models import CloudFormationModel
from moto.iam.models import OpenIDConnectProvider, iam_backends
from moto.s3.exceptions import MissingBucket
from moto.s3.models import s3_backends
from moto.utilities.utils import get_partition

from datasette_action.local_aws.servers import ENDPOINTS, Endpoint


class _Declared:
    """The part of moto's CloudFormationModel interface that is the same for every model here,
    read from class constants. A mixin, not a CloudFormationModel subclass: moto only finds the
    direct subclasses of that, so each model names CloudFormationModel itself, after this.
    """

    TYPE: ClassVar[str]  # the resource type, e.g. "AWS::Lambda::Url"
    NAME_PROPERTY: ClassVar[str] = ""  # the property that names the resource, if any
    ATTRIBUTES: ClassVar[tuple[str, ...]] = ()  # what Fn::GetAtt can ask for

    @classmethod
    def cloudformation_type(cls) -> str:
        return cls.TYPE

    @classmethod
    def cloudformation_name_type(cls) -> str:
        return cls.NAME_PROPERTY

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.ATTRIBUTES

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name not in self.ATTRIBUTES:
            raise UnformattedGetAttTemplateException()
        return self.attribute(attribute_name)

    def attribute(self, name: str) -> str:
        """The value of `name`, one of ATTRIBUTES."""
        raise NotImplementedError

    def is_created(self) -> bool:
        return True


class FunctionUrl(_Declared, CloudFormationModel):
    """AWS::Lambda::Url: moto's function URL config, served on a local port."""

    TYPE = "AWS::Lambda::Url"
    ATTRIBUTES = ("FunctionUrl", "FunctionArn")

    def __init__(self, function: LambdaFunction, qualifier: str | None, endpoint: Endpoint) -> None:
        self.account_id = function.account_id
        self.region = function.region
        self.function_name = function.function_name
        self.function_arn = function.function_arn
        self.qualifier = qualifier
        self.endpoint = endpoint

    @property
    def physical_resource_id(self) -> str:  # Ref: the function's ARN
        return f"{self.function_arn}:{self.qualifier}" if self.qualifier else self.function_arn

    def attribute(self, name: str) -> str:
        return self.endpoint.url if name == "FunctionUrl" else self.function_arn

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
        endpoint = ENDPOINTS.open(
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
        ENDPOINTS.close(self.endpoint)


def _url_settings(properties: dict[str, Any]) -> dict[str, Any]:
    return {key: properties[key] for key in ("AuthType", "Cors", "InvokeMode") if key in properties}


class HttpApi(_Declared, CloudFormationModel):
    """AWS::ApiGatewayV2::Api, HTTP protocol, quick create (Target): a local endpoint in moto's API."""

    TYPE = "AWS::ApiGatewayV2::Api"
    NAME_PROPERTY = "Name"
    ATTRIBUTES = ("ApiEndpoint", "ApiId")

    def __init__(self, api: Api, account_id: str, region: str, endpoint: Endpoint | None) -> None:
        self.api = api
        self.account_id = account_id
        self.region = region
        self.endpoint = endpoint

    @property
    def physical_resource_id(self) -> str:  # Ref: the API id
        return str(self.api.api_id)

    def attribute(self, name: str) -> str:
        return str(self.api.api_endpoint if name == "ApiEndpoint" else self.api.api_id)

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
        endpoint = ENDPOINTS.open(
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
            ENDPOINTS.close(self.endpoint)


def _function_arn(target: str) -> str:
    """The function ARN in a quick-create Target (a function ARN or its invocation URI)."""
    match = re.search(r"arn:[^:]+:lambda:[^:]+:\d+:function:[^/:]+", target)
    return match.group(0) if match else target


class BucketPolicy(_Declared, CloudFormationModel):
    """AWS::S3::BucketPolicy: the policy document put on moto's bucket."""

    TYPE = "AWS::S3::BucketPolicy"  # no attributes

    def __init__(self, name: str, account_id: str, region: str, bucket: str) -> None:
        self.name = name
        self.account_id = account_id
        self.region = region
        self.bucket = bucket

    @property
    def physical_resource_id(self) -> str:
        return self.name

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


class OidcProvider(_Declared, CloudFormationModel):
    """AWS::IAM::OIDCProvider: moto's OpenID Connect provider. `Ref` and `Arn` are its ARN
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-iam-oidcprovider.html);
    `Url` is create-only (a new URL replaces the provider), the lists are updated in place."""

    TYPE = "AWS::IAM::OIDCProvider"
    ATTRIBUTES = ("Arn",)

    def __init__(self, provider: OpenIDConnectProvider) -> None:
        self.provider = provider

    @property
    def physical_resource_id(self) -> str:
        return str(self.provider.arn)

    def attribute(self, name: str) -> str:
        return str(self.provider.arn)

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> OidcProvider:
        properties = cloudformation_json["Properties"]
        backend = iam_backends[account_id][get_partition(region_name)]
        provider = backend.create_open_id_connect_provider(
            url=properties["Url"],
            thumbprint_list=list(properties.get("ThumbprintList") or []),
            client_id_list=list(properties.get("ClientIdList") or []),
            tags=list(properties.get("Tags") or []),
        )
        return cls(provider)

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: OidcProvider,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> OidcProvider:
        properties = cloudformation_json["Properties"]
        old = original_resource.provider
        if properties["Url"].removeprefix("https://") != old.url:  # create-only: replaced
            original_resource.delete(account_id, region_name)
            return cls.create_from_cloudformation_json(
                new_resource_name, cloudformation_json, account_id, region_name
            )
        old.client_id_list = list(properties.get("ClientIdList") or [])
        old.thumbprint_list = list(properties.get("ThumbprintList") or [])
        return original_resource

    def delete(self, account_id: str, region_name: str) -> None:
        iam_backends[account_id][get_partition(region_name)].delete_open_id_connect_provider(
            self.provider.arn
        )


MODELS: tuple[type[CloudFormationModel], ...] = (FunctionUrl, HttpApi, BucketPolicy, OidcProvider)
