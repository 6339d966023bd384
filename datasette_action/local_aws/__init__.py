"""A local AWS: moto's server, plus what this project's stack needs that moto lacks.

One job per module:

- `servers`: `start_local_aws()` and `LocalAws` (moto's server in this process), and the local
  endpoints that stand in for function URLs and HTTP APIs by running the deployed code;
- `cfn_models`: the CloudFormation resource types moto skips (`AWS::Lambda::Url`,
  `AWS::ApiGatewayV2::Api`, `AWS::S3::BucketPolicy`);
- `moto_patches`: the narrow fixes to moto's own classes.

Importing this package (or any module in it) registers the models and applies the fixes, in this
process, before a server can handle its first stack: moto's CloudFormation only sees models whose
classes exist in the process that runs it.
"""

from __future__ import annotations

# cfn_models is imported for its classes: moto finds its models as CloudFormationModel subclasses
from datasette_action.local_aws import cfn_models, moto_patches  # noqa: F401
from datasette_action.local_aws.servers import LocalAws, start_local_aws

__all__ = ["LocalAws", "start_local_aws"]

moto_patches.apply()  # after cfn_models: it clears the model caches moto filled before they existed
