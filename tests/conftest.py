"""Fixtures that more than one test module uses: copies of the example project, an environment
cut off from this machine's AWS setup, and the local AWS (moto's server on loopback)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from datasette_action.local_aws import LocalAws, start_local_aws

EXAMPLE = Path(__file__).resolve().parent.parent / "example"
# Every variable the AWS credential chain reads (and the secrets and run ids the front doors
# read), cleared so nothing from the machine leaks into a test.
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "DATASETTE_SECRET",
    "DATASETTE_PUBLISH_SECRET",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
)


def copy_example(root: Path) -> Path:
    """A copy of example/ (its config, data and metadata; no build output) at `root`."""
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".datasette-lambda"))
    return root


@pytest.fixture
def example_project(tmp_path: Path) -> Path:
    """A copy of example/ as tmp_path/example."""
    return copy_example(tmp_path / "example")


@pytest.fixture(scope="session")
def example_copy() -> Callable[[Path], Path]:
    """`copy_example`, for fixtures of any scope."""
    return copy_example


def isolate_aws(patch: pytest.MonkeyPatch, scratch: Path) -> None:
    """No AWS setup of this machine's: the variables cleared, empty config and credentials files,
    no instance metadata lookups."""
    empty = scratch / "empty-aws-config"
    empty.write_text("")
    for name in AWS_VARIABLES:
        patch.delenv(name, raising=False)
    patch.setenv("AWS_CONFIG_FILE", str(empty))
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    patch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def no_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This test sees no AWS credentials, region or endpoint at all."""
    isolate_aws(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def local_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAws]:
    """moto's server (one per module: its state is reset when it stops) and an environment that
    reaches only it: dummy credentials, AWS_ENDPOINT_URL, us-east-1, nothing of this machine's."""
    with pytest.MonkeyPatch.context() as patch:
        isolate_aws(patch, tmp_path_factory.mktemp("aws-config"))
        with start_local_aws() as running:
            for name, value in running.environment.items():
                patch.setenv(name, value)
            yield running
