"""Checks a plan runs with no AWS at all (a pull request from a fork has no credentials):

- the rendered template linted with cfn-lint (AWS's own resource schemas, offline);
- the packaged bundle smoke-tested: its zips unpacked read-only and run by the target Python
  through the handler (`serve.local_lambda`), answering `/` and each database's page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote

from datasette_action.errors import UserError
from datasette_action.events import http_request_event, http_response
from datasette_action.package import PackageResult
from datasette_action.serve import find_python, local_lambda
from datasette_action.template import Template

LINT_REGION = "us-east-1"  # cfn-lint's schemas are per region: this one when the region is not known


@dataclass(frozen=True)
class LintProblem:
    rule: str  # e.g. E3002, W2531
    severity: str  # "error", "warning" or "informational"
    message: str
    line: int  # in the template's JSON (Template.to_json())


def lint_template(template: Template, region: str | None = None) -> tuple[LintProblem, ...]:
    """cfn-lint's problems with the template in `region` (the region deployed to; without one,
    LINT_REGION). A region this cfn-lint has no resource schemas for (newer than it) is linted as
    LINT_REGION, with a warning saying so."""
    from cfnlint.api import ManualArgs, lint  # type: ignore[import-untyped]  # ~1 s to import
    from cfnlint.helpers import REGIONS  # type: ignore[import-untyped]
    from cfnlint.version import __version__ as cfnlint_version  # type: ignore[import-untyped]

    known = region is None or region in REGIONS
    matches = lint(
        template.to_json(), config=ManualArgs(regions=[region if region and known else LINT_REGION])
    )
    found = tuple(
        LintProblem(str(m.rule.id), str(m.rule.severity), str(m.message), int(m.linenumber or 0))
        for m in matches
    )
    if known:
        return found
    note = (
        f"cfn-lint {cfnlint_version} has no resource schemas for the region {region}: the template"
        f" was checked against {LINT_REGION}'s (a newer cfn-lint may know it)"
    )
    return (LintProblem("region", "warning", note, 0), *found)


@dataclass(frozen=True)
class SmokeRequest:
    path: str
    status: int | None  # None: no answer
    seconds: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class SmokeTest:
    skipped: str | None  # why it did not run (no interpreter of the target version)
    requests: tuple[SmokeRequest, ...]

    @property
    def ok(self) -> bool:
        return self.skipped is None and all(request.ok for request in self.requests)


def smoke_test(result: PackageResult) -> SmokeTest:
    """GET / and each database's page from the bundle, run as Lambda would run it."""
    try:
        find_python(result.python)
    except UserError as error:
        return SmokeTest(f"skipped: {error.message}", ())
    paths = ["/", *(f"/{quote(database.name)}" for database in result.databases)]
    requests = []
    with local_lambda(result) as function:
        for path in paths:
            started = time.perf_counter()
            event = http_request_event("GET", path, [("accept", "text/html")], b"", host="smoke-test.local")
            status: int | None = None
            problem: str | None = None
            try:
                status, _headers, body = http_response(function.invoke(event))
                if status != 200:
                    problem = body[:300].decode("utf-8", "replace")
            except UserError as exc:
                problem = exc.message
            requests.append(SmokeRequest(path, status, time.perf_counter() - started, problem))
    return SmokeTest(None, tuple(requests))
