"""Deploy stage: the only package that talks to AWS (boto3).

    deploy:  who am I -> the stack's state (ours? busy? a failed first create?) -> what AWS would
             refuse later (deploy.bucket's region, reserved concurrency, a log group in the way)
             -> artifacts bucket (bootstrap stack or deploy.bucket) -> uploads by content hash ->
             change set -> wait -> describe -> execute -> wait -> outputs -> deployed-state file
             -> health check
    plan:    the same up to the change set, which is described and deleted; nothing is uploaded
             and the live stack is not changed. Without credentials it says so and stays offline.
    destroy: the main stack, the objects this tool wrote, and the bootstrap stack it made.

The behaviour follows aws-actions/aws-cloudformation-github-deploy: an empty change set is a
success, a stack stuck in ROLLBACK_COMPLETE (a failed first create) is deleted and created again,
a failed change shows the failing resources' reasons. `botocore`'s `ClientError` is translated by
its `Error.Code` in this package and nowhere else; the one message AWS forces us to match is in
`is_no_changes`.

    data.py         the plain data in and out (DeployOptions, Upload, ChangeSet, DeployResult, ...)
    session.py      the boto3 session, the credentials check, botocore's errors translated
    stacks.py       stack states: describe, ownership, settle, wait, failure events, delete
    preflight.py    the account's and its resources' realities, checked before any change
    change_sets.py  StackRequest, its parameters and tags, change sets (create ... execute, `apply`)
    artifacts.py    the artifacts bucket, uploads by content hash, the deployed-state file
    modes.py        `deploy`, `plan`, `destroy`, and the health check

Other modules import from here, not from the modules above.
"""

from datasette_action.deploy.artifacts import check_own_bucket, planned_uploads, template_url
from datasette_action.deploy.change_sets import (
    StackRequest,
    change_set_name,
    check_live,
    create_change_set,
    execute_change_set,
    stack_parameters,
)
from datasette_action.deploy.data import (
    ChangeSet,
    DeployOptions,
    DeployResult,
    DestroyResult,
    HealthCheck,
    Identity,
    Log,
    PlannedArtifact,
    PlannedUpload,
    PlanResult,
    ResourceChange,
    Upload,
)
from datasette_action.deploy.modes import deploy, destroy, health_check, plan
from datasette_action.deploy.session import (
    Aws,
    aws_session,
    check_credentials,
    environment_region,
    has_credentials,
    is_no_changes,
)
from datasette_action.deploy.stacks import StackInfo

__all__ = [
    "Aws",
    "ChangeSet",
    "DeployOptions",
    "DeployResult",
    "DestroyResult",
    "HealthCheck",
    "Identity",
    "Log",
    "PlanResult",
    "PlannedArtifact",
    "PlannedUpload",
    "ResourceChange",
    "StackInfo",
    "StackRequest",
    "Upload",
    "aws_session",
    "change_set_name",
    "check_credentials",
    "check_live",
    "check_own_bucket",
    "create_change_set",
    "deploy",
    "destroy",
    "environment_region",
    "execute_change_set",
    "has_credentials",
    "health_check",
    "is_no_changes",
    "plan",
    "planned_uploads",
    "stack_parameters",
    "template_url",
]
