"""Narrow fixes to moto's own classes, one function per gap, applied once per process by `apply()`.

Each fix's docstring says what moto does wrong and what the fix does instead. They reach into
moto's private internals, which is why pyproject pins moto to the range they were checked against;
tests/test_moto_patches.py has a canary per fix that runs the gap's scenario on plain moto and
fails, naming the fix to delete, once moto no longer shows the gap.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from typing import Any

from moto.awslambda import urls as lambda_urls
from moto.awslambda.models import LambdaBackend, LambdaFunction, LayerVersion, lambda_backends
from moto.awslambda.responses import LambdaResponse
from moto.cloudformation import parsing
from moto.cloudformation.exceptions import CloudFormationError, ValidationError
from moto.cloudformation.models import Change, ChangeSet, CloudFormationBackend
from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3.models import FakeBucket

_FIXED = "_datasette_lambda_fixed"


def apply() -> None:
    """Apply every fix in `PATCHES` (once per process), then drop moto's cached model maps.

    Call it after importing `cfn_models`: moto caches its list of models on first use, and the
    cleared caches are rebuilt with those models (and the LayerVersion name type below) in them.
    """
    if getattr(CloudFormationBackend, _FIXED, False):
        return
    setattr(CloudFormationBackend, _FIXED, True)
    for fix in PATCHES:
        fix()
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()


def fix_change_set_outputs() -> None:
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


class InvalidChangeSetStatus(CloudFormationError):
    code = "InvalidChangeSetStatusException"  # the model's shape: AWS's wire code is InvalidChangeSetStatus


class ChangeSetNotFound(CloudFormationError):
    code = "ChangeSetNotFoundException"  # wire code ChangeSetNotFound, HTTP 404


def _busy(status: str | None) -> bool:
    return bool(status) and str(status).endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS"


def fix_concurrent_updates() -> None:
    """A stack busy with an operation refuses change sets, and executing a change set makes the
    stack's other change sets OBSOLETE.

    moto created and executed change sets on a stack held in UPDATE_IN_PROGRESS, and executed a
    change set made before another one was executed, applying its stale template and parameters
    over the newer update (a change set that was not there failed with a 500, and DescribeChangeSet
    said its stack does not exist: AWS answers ChangeSetNotFound). AWS: "When you
    execute a change set, CloudFormation deletes all other change sets associated with the stack
    because they aren't valid for the updated stack", and ExecuteChangeSet fails with
    InvalidChangeSetStatus when "the change set status might be CREATE_IN_PROGRESS, or the stack
    status might be UPDATE_IN_PROGRESS", or ChangeSetNotFound
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ExecuteChangeSet.html);
    ExecutionStatus OBSOLETE is a change set's "because the stack was already updated"
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ChangeSetSummary.html),
    seen as "ChangeSet [...] cannot be executed in its current execution status of [OBSOLETE]"
    (aws/amazon-chime-sdk-js#1089). CreateChangeSet on a busy stack fails with ValidationError
    "Stack:<id> is in UPDATE_IN_PROGRESS state and can not be updated." Here the other change sets
    are marked OBSOLETE (not deleted: either way they cannot be executed).
    """
    create = CloudFormationBackend.create_change_set
    execute = CloudFormationBackend.execute_change_set
    describe = CloudFormationBackend.describe_change_set

    def describe_change_set(self: CloudFormationBackend, change_set_name: str) -> ChangeSet | None:
        try:
            return describe(self, change_set_name)
        except ValidationError:  # AWS: ChangeSetNotFound (moto said the stack does not exist)
            raise ChangeSetNotFound(f"ChangeSet [{change_set_name}] does not exist") from None

    def create_change_set(self: CloudFormationBackend, *args: Any, **kwargs: Any) -> Any:
        given = inspect.signature(create).bind(self, *args, **kwargs).arguments
        if given.get("change_set_type") == "UPDATE":
            for stack in self.stacks.values():
                if stack.name == given["stack_name"] and _busy(stack.status):
                    raise ValidationError(
                        message=f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
                    )
        return create(self, *args, **kwargs)

    def execute_change_set(
        self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None
    ) -> None:
        change_set = self.change_sets.get(change_set_name) or next(
            (c for c in self.change_sets.values() if c.change_set_name == change_set_name), None
        )
        if change_set is None:
            raise ChangeSetNotFound(f"ChangeSet [{change_set_name}] does not exist")
        if change_set.execution_status != "AVAILABLE":
            raise InvalidChangeSetStatus(
                f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current execution"
                f" status of [{change_set.execution_status}]"
            )
        stack = self.stacks[change_set.stack_id]
        if _busy(stack.status):
            raise InvalidChangeSetStatus(
                f"ChangeSet [{change_set.change_set_id}] cannot be executed: Stack:{stack.stack_id}"
                f" is in {stack.status} state"
            )
        execute(self, change_set_name, stack_name)
        for other in self.change_sets.values():
            if other is not change_set and other.stack_id == change_set.stack_id:
                if other.execution_status == "AVAILABLE":
                    other.execution_status = "OBSOLETE"

    setattr(CloudFormationBackend, "create_change_set", create_change_set)  # noqa: B010
    setattr(CloudFormationBackend, "execute_change_set", execute_change_set)  # noqa: B010
    setattr(CloudFormationBackend, "describe_change_set", describe_change_set)  # noqa: B010


def fix_change_set_changes() -> None:
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


def fix_removed_resources() -> None:
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


def fix_function_properties() -> None:
    """AWS::Lambda::Function keeps `Layers`, `Architectures` and `EphemeralStorage`, and an update
    changes `ReservedConcurrentExecutions`.

    moto's CloudFormation dropped them (a function came out x86_64, with 512 MB of /tmp and no
    layers), and kept the reservation it was created with. On update, the Layers and Variables the
    template no longer has are dropped.
    """
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
        target.reserved_concurrency = properties.get("ReservedConcurrentExecutions")


def fix_layer_versions() -> None:
    """AWS::Lambda::LayerVersion: `Ref` is the version ARN, `LayerName` counts, updates publish.

    moto's `Ref` gave the Python object, it ignored `LayerName`, and a changed `Content` did
    nothing (later `Ref`s gave None). Here it publishes a new version, which the functions using
    the old one move to.
    """

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


def fix_bucket_policy_conditions() -> None:
    """S3 bucket policies are evaluated without their statements that have a `Condition`.

    moto cannot evaluate conditions and treated every one as a denial, even in a Deny statement,
    so the usual "deny unless TLS" statement blocked every request to the bucket.
    """

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


ACCOUNT_CONCURRENCY = 1000  # AWS's usual ConcurrentExecutions quota per account and region
# moto's own variable for the account's quota (its PutFunctionConcurrency enforces it when set)
CONCURRENCY_QUOTA_VARIABLE = "MOTO_LAMBDA_CONCURRENCY_QUOTA"


def fix_account_settings() -> None:
    """Lambda's GetAccountSettings answers with the account's concurrency figures.

    moto has no GetAccountSettings (its server answered 404). Here AccountLimit's
    ConcurrentExecutions is moto's own MOTO_LAMBDA_CONCURRENCY_QUOTA (else AWS's usual 1,000) and
    UnreservedConcurrentExecutions that less every function's reserved concurrency, as AWS counts
    them (https://docs.aws.amazon.com/lambda/latest/api/API_GetAccountSettings.html).
    """

    def get_account_settings(self: LambdaResponse) -> str:
        backend = self.backend
        functions = [backend.get_function(listed.function_name) for listed in backend.list_functions()]
        quota = int(os.environ.get(CONCURRENCY_QUOTA_VARIABLE) or ACCOUNT_CONCURRENCY)
        reserved = sum(int(f.reserved_concurrency or 0) for f in functions)
        code_size = sum(int(f.code_size or 0) for f in functions)
        return json.dumps(
            {
                "AccountLimit": {
                    "TotalCodeSize": 80 * 1024**3,
                    "CodeSizeUnzipped": 262_144_000,
                    "CodeSizeZipped": 52_428_800,
                    "ConcurrentExecutions": quota,
                    "UnreservedConcurrentExecutions": quota - reserved,
                },
                "AccountUsage": {"TotalCodeSize": code_size, "FunctionCount": len(functions)},
            }
        )

    lambda_urls.url_paths[r"{0}/(?P<api_version>[^/]+)/account-settings/?$"] = LambdaResponse.dispatch
    setattr(LambdaResponse, "get_account_settings", get_account_settings)  # noqa: B010


def fix_iam_roles() -> None:
    """IAM roles and managed policies in stacks keep what a template gives them.

    moto's AWS::IAM::Role attaches none of its ManagedPolicyArns, and its update changes only
    the description (the trust policy, the attached and the inline policies stay as created);
    AWS::IAM::ManagedPolicy has no update at all (the stack then holds None for it). Here a role
    is created with its managed policies attached, an update sets its trust policy, attaches
    and detaches managed policies to match and puts its inline policies, and a managed policy's
    update adds a version with the new document as the default (dropping the oldest beyond
    IAM's five, https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html);
    deleting a role detaches its managed policies first, as AWS's handler does (moto's refused:
    "must detach all policies first").
    """
    from moto.iam.models import ManagedPolicy, Role, iam_backends
    from moto.utilities.utils import get_partition

    def text(document: Any) -> str:
        return document if isinstance(document, str) else json.dumps(document)

    create_role = Role.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def role_create(
        cls: type[Role],
        /,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Role:
        role: Role = create_role(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        backend = iam_backends[account_id][get_partition(region_name)]
        for arn in cloudformation_json["Properties"].get("ManagedPolicyArns") or ():
            backend.attach_role_policy(arn, role.name)
        return role

    def role_update(
        cls: type[Role],
        /,
        original_resource: Role,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Role:
        backend = iam_backends[account_id][get_partition(region_name)]
        properties = cloudformation_json["Properties"]
        name = original_resource.name
        backend.update_role(
            name, properties.get("Description", ""), properties.get("MaxSessionDuration", 3600)
        )
        backend.update_assume_role_policy(name, text(properties["AssumeRolePolicyDocument"]))
        wanted = list(properties.get("ManagedPolicyArns") or ())
        for arn in [arn for arn in list(original_resource.managed_policies) if arn not in wanted]:
            backend.detach_role_policy(arn, name)
        for arn in [arn for arn in wanted if arn not in original_resource.managed_policies]:
            backend.attach_role_policy(arn, name)
        for policy in properties.get("Policies") or ():
            backend.put_role_policy(name, policy["PolicyName"], text(policy["PolicyDocument"]))
        return backend.get_role(name)

    def policy_update(
        cls: type[ManagedPolicy],
        /,
        original_resource: ManagedPolicy,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> ManagedPolicy:
        backend = iam_backends[account_id][get_partition(region_name)]
        arn = original_resource.arn
        document = text(cloudformation_json["Properties"]["PolicyDocument"])
        old = [v for v in original_resource.versions if not v.is_default]
        if len(original_resource.versions) >= 5 and old:
            backend.delete_policy_version(arn, old[0].version_id)
        backend.create_policy_version(arn, document, set_as_default=True)
        return original_resource

    delete_role = Role.delete_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def role_delete(
        cls: type[Role],
        /,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        backend = iam_backends[account_id][get_partition(region_name)]
        for role in [r for r in backend.roles.values() if r.name == resource_name]:
            for arn in list(role.managed_policies):
                backend.detach_role_policy(arn, role.name)
        delete_role(cls, resource_name, cloudformation_json, account_id, region_name)

    setattr(Role, "delete_from_cloudformation_json", classmethod(role_delete))  # noqa: B010
    setattr(Role, "create_from_cloudformation_json", classmethod(role_create))  # noqa: B010
    setattr(Role, "update_from_cloudformation_json", classmethod(role_update))  # noqa: B010
    setattr(ManagedPolicy, "update_from_cloudformation_json", classmethod(policy_update))  # noqa: B010


PATCHES: tuple[Callable[[], None], ...] = (
    fix_change_set_outputs,
    fix_concurrent_updates,  # after fix_change_set_outputs: its checks come first
    fix_change_set_changes,
    fix_removed_resources,
    fix_function_properties,
    fix_layer_versions,
    fix_bucket_policy_conditions,
    fix_account_settings,
    fix_iam_roles,
)
