"""Every rendering of a result, in one place: text for the terminal and the workflow log, JSON
for `--json`, Markdown for plan reports and job summaries. Pure functions of the typed results
(the pipeline's runs and the stages' results): no AWS, no files, no printing. Front doors choose
which rendering goes where.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasette_action.checks import LintProblem, SmokeTest
from datasette_action.deploy import ChangeSet, DeployResult, DestroyResult, PlanResult, ResourceChange, Upload
from datasette_action.iam import MANAGED_POLICY_MAX, PLAN, LeftOut, Policy
from datasette_action.package import UNZIPPED_LIMIT, PackageResult
from datasette_action.state import DatabaseChange, TableChange, compare_states
from datasette_action.template import P_BUCKET, P_DEPLOYMENT_ID, Template
from datasette_action.zips import Artifact

if TYPE_CHECKING:  # the pipeline imports this module to write plan reports
    from datasette_action.pipeline import Built, Packaged, Planned


def dumps(data: Any, *, compact: bool = False) -> str:
    """JSON as `--json` prints it: indented, or on one line (errors)."""
    return json.dumps(data) if compact else json.dumps(data, indent=2)


# -- build ---------------------------------------------------------------------------------------


def _printable(name: str) -> str:
    """A table or view name on one line of text output: control characters (a newline in a name)
    escaped as Python would, the name otherwise as it is."""
    return name if name.isprintable() else repr(name)[1:-1]


def _cell(name: str) -> str:
    """A name in a Markdown table cell: on one line, its pipes and markup escaped."""
    return re.sub(r"([\\`*_|<>\[\]])", r"\\\1", _printable(name))


def build_text(built: Built) -> str:
    result = built.result
    lines = [
        f"Built {len(result.databases)} database(s) in {result.inspect_data.parent} ({built.seconds:.1f} s)"
    ]
    for database in result.databases:
        lines.append(f"  {database.path.name}  {size(database.size)}  sha256 {database.sha256[:12]}")
        for table in database.tables:
            if not table.hidden:
                lines.append(f"    {_printable(table.name):<30} {table.rows:>12,} rows")
        for view in database.views:
            lines.append(f"    {_printable(view):<30} {'(view)':>17}")
    return "\n".join(lines)


def build_json(built: Built) -> dict[str, Any]:
    result = built.result
    return {
        "databases": [
            {
                "name": d.name,
                "path": str(d.path),
                "size": d.size,
                "sha256": d.sha256,
                "tables": [
                    {
                        "name": t.name,
                        "rows": t.rows,
                        "columns": dict(t.columns),
                        "hidden": t.hidden,
                    }
                    for t in d.tables
                ],
                "views": list(d.views),
            }
            for d in result.databases
        ],
        "inspect_data": str(result.inspect_data),
        "warnings": list(result.warnings),
        "seconds": round(built.seconds, 3),
    }


def build_markdown(built: Built) -> str:
    """A job summary for a build."""
    lines = [
        f"# datasette-lambda build: `{built.stack}`",
        "",
        "| database | table | rows |",
        "|---|---|---:|",
    ]
    for database in built.result.databases:
        for table in database.tables:
            if not table.hidden:
                lines.append(f"| {database.name} | {_cell(table.name)} | {table.rows:,} |")
        lines += [f"| {database.name} | {_cell(view)} (view) | |" for view in database.views]
    lines.append("")
    for database in built.result.databases:
        lines.append(f"- `{database.path.name}`: {database.size:,} bytes, sha256 `{database.sha256[:12]}`")
    lines += [f"- warning: {warning}" for warning in built.result.warnings]
    return "\n".join(lines) + "\n"


# -- package -------------------------------------------------------------------------------------


def package_text(packaged: Packaged) -> str:
    """The build's summary, then the package's."""
    result = packaged.result
    compiled = "with .pyc" if result.compiled else "without .pyc"
    lines = [
        f"Packaged for Lambda python{result.python} {result.architecture}, {compiled} ({packaged.seconds:.1f} s)"
    ]
    for artifact in result.artifacts:
        reused = "  (reused)" if artifact.reused else ""
        lines.append(
            f"  {artifact.role:<8}  {artifact.zip_path}  {size(artifact.zipped_size)} zipped,"
            f" {size(artifact.unzipped_size)} unzipped{reused}"
        )
    lines.append(f"  handler   {result.handler}")
    lines.append(f"  sqlite    {_sqlite(result)}")
    for database in result.databases:
        lines.append(f"  {database.name}: {database.location}: {database.reason}")
    lines.append(f"  /tmp      {result.ephemeral_storage} MB")
    return "\n".join(lines)


def package_json(packaged: Packaged) -> dict[str, Any]:
    result = packaged.result
    return {
        "artifacts": [_artifact_json(artifact) for artifact in result.artifacts],
        "handler": result.handler,
        "python": result.python,
        "architecture": result.architecture,
        "compiled": result.compiled,
        "requirements": list(result.requirements),
        "sqlite": {
            "binding": result.sqlite.binding,
            "binding_version": result.sqlite.binding_version,
            "version": result.sqlite.version,
        },
        "python_path": [str(path) for path in result.python_path],
        "manifest": str(result.manifest),
        "ephemeral_storage": result.ephemeral_storage,
        "databases": [
            {
                "name": d.name,
                "file": d.file,
                "size": d.size,
                "sha256": d.sha256,
                "location": d.location,
                "s3_key": d.s3_key,
                "reason": d.reason,
            }
            for d in result.databases
        ],
        "warnings": list(packaged.warnings),
        "build": build_json(packaged.built),
        "seconds": round(packaged.seconds, 3),
    }


def _sqlite(result: PackageResult) -> str:
    sqlite = result.sqlite
    return f"SQLite {sqlite.version} ({sqlite.binding} {sqlite.binding_version}, in the layer)"


def _artifact_json(artifact: Artifact) -> dict[str, Any]:
    return {
        "role": artifact.role,
        "path": str(artifact.zip_path),
        "directory": str(artifact.directory),
        "sha256": artifact.sha256,
        "zipped_size": artifact.zipped_size,
        "unzipped_size": artifact.unzipped_size,
        "reused": artifact.reused,
    }


# -- plan ----------------------------------------------------------------------------------------


def plan_text(planned: Planned) -> str:
    return f"{planned.markdown}\nReport written to {planned.report}"


def plan_json(planned: Planned) -> dict[str, Any]:
    result = planned.plan
    return {
        "stack": result.stack,
        "online": result.online,
        "note": result.note,
        "stack_status": result.stack_status,
        "changes_from": result.changes_from,
        "changes_note": result.changes_note,
        "changes": [_change_json(c) for c in result.changes],
        "artifacts": [
            {"role": a.role, "key": a.key, "sha256": a.sha256, "bytes": a.size, "in_bucket": a.in_bucket}
            for a in result.artifacts
        ],
        "lint_errors": planned.lint_errors,
        "smoke_test_ok": planned.smoke_passed,
        "report": str(planned.report),
        "seconds": round(result.seconds, 3),
    }


def _change_json(change: ResourceChange) -> dict[str, Any]:
    return {
        "action": change.action,
        "logical_id": change.logical_id,
        "resource_type": change.resource_type,
        "replacement": change.replacement,
    }


def plan_markdown(
    plan: PlanResult, result: PackageResult, lint: Sequence[LintProblem], smoke: SmokeTest | None
) -> str:
    lines = [f"# datasette-lambda plan: `{plan.stack}`", ""]
    if plan.online:
        lines.append(f"Account {plan.account}, region {plan.region}: {plan.note}.")
    else:
        lines.append(f"**Offline** ({_sentence(plan.note)}): nothing was compared with AWS.")
    lines += ["", *_databases(plan), "", *_artifacts(plan, result), "", *_changes(plan), ""]
    lines += _checks(lint, smoke)
    return "\n".join(lines).rstrip() + "\n"


def _sentence(text: str) -> str:
    return text.removeprefix("offline: ")


# -- databases -----------------------------------------------------------------------------------


def _databases(plan: PlanResult) -> list[str]:
    lines = ["## Databases", ""]
    if not plan.online:
        lines += ["What is deployed is unknown offline; the databases this deploy would publish:", ""]
    elif plan.deployed is None:
        lines += ["Nothing deployed yet (no deployed-state file in the bucket): every table is new.", ""]
    else:
        lines += ["Compared with the deployed version:", ""]
    changes = compare_states(plan.deployed if plan.online else None, plan.planned)
    for database in changes:
        lines += [f"### {_escape(database.name)}: {_database_change(database, plan.online)}", ""]
        lines += ["| table | rows | change |", "|---|---:|---|"]
        for table in database.tables:
            rows = table.rows_after if table.rows_after is not None else table.rows_before
            lines.append(f"| {_escape(table.name)} | {_count(rows)} | {_table_change(table, plan.online)} |")
        lines.append("")
    return lines[:-1] if lines[-1] == "" else lines


def _database_change(database: DatabaseChange, online: bool) -> str:
    after = size(database.size_after) if database.size_after is not None else ""
    if not online:
        return f"{after}, sha256 `{_short(database.sha256_after)}`"
    if database.change == "added":
        return f"new ({after})"
    if database.change == "removed":
        return "removed"
    if database.change == "same":
        return f"unchanged ({after}, sha256 `{_short(database.sha256_after)}`)"
    before = size(database.size_before) if database.size_before is not None else "?"
    return (
        f"changed ({before} → {after}, sha256 `{_short(database.sha256_before)}` →"
        f" `{_short(database.sha256_after)}`)"
    )


def _table_change(table: TableChange, online: bool) -> str:
    if not online:
        return ""
    if table.change == "added":
        return "new table"
    if table.change == "removed":
        return f"removed (had {_count(table.rows_before)} rows)"
    if table.change == "same":
        return "unchanged"
    delta = table.delta or 0
    return f"{delta:+,} rows ({_count(table.rows_before)} → {_count(table.rows_after)})"


# -- artifacts -----------------------------------------------------------------------------------


def _artifacts(plan: PlanResult, result: PackageResult) -> list[str]:
    unzipped = {artifact.role: artifact.unzipped_size for artifact in result.artifacts}
    lines = [
        "## Artifacts",
        "",
        "| artifact | zipped | unzipped | sha256 | in the bucket |",
        "|---|---:|---:|---|---|",
    ]
    for artifact in plan.artifacts:
        state = {True: "reused (already uploaded)", False: "new: will be uploaded", None: "unknown"}
        unzipped_size = unzipped.get(artifact.role)
        shown = size(unzipped_size) if unzipped_size is not None else ""
        lines.append(
            f"| {artifact.role} | {size(artifact.size)} | {shown}"
            f" | `{_short(artifact.sha256)}` | {state[artifact.in_bucket]} |"
        )
    total = result.layer.unzipped_size + result.function.unzipped_size
    lines += [
        "",
        f"Code and layer unzip to {size(total)} of Lambda's {size(UNZIPPED_LIMIT)} limit"
        f" ({100 * total / UNZIPPED_LIMIT:.0f}%); /tmp: {result.ephemeral_storage} MB.",
        f"The site runs {_sqlite(result)}.",
    ]
    new = [a for a in plan.artifacts if a.in_bucket is False]
    if plan.online and plan.artifacts and all(a.in_bucket is not None for a in plan.artifacts):
        lines.append(f"Deploy would upload {size(sum(a.size for a in new))} in {len(new)} object(s).")
    return lines


# -- resource changes ----------------------------------------------------------------------------


def _changes(plan: PlanResult) -> list[str]:
    lines = ["## Resource changes", ""]
    if plan.changes_from == "unknown":
        return [*lines, f"{plan.changes_note or 'Unknown offline: CloudFormation was not asked'}."]
    if not plan.changes:
        return [*lines, "None: the change set is empty, deploy would leave the stack as it is."]
    if plan.changes_from == "template":
        lines += ["The stack does not exist (or must be created again): every resource is added.", ""]
    else:
        lines += ["From a change set (created, described and deleted: the stack was not changed).", ""]
    return [*lines, *change_table(plan.changes)]


def change_table(changes: Sequence[ResourceChange]) -> list[str]:
    lines = ["| action | resource | type | replacement |", "|---|---|---|---|"]
    for change in changes:
        lines.append(
            f"| {change.action} | {_escape(change.logical_id)} | {change.resource_type}"
            f" | {_replacement(change)} |"
        )
    return lines


def _replacement(change: ResourceChange) -> str:
    return {"True": "**replaced**", "Conditional": "may be replaced", "False": "no"}.get(
        change.replacement or "", ""
    )


# -- checks --------------------------------------------------------------------------------------


def _checks(lint: Sequence[LintProblem], smoke: SmokeTest | None) -> list[str]:
    lines = ["## Checks", ""]
    if not lint:
        lines.append("- cfn-lint: no problems in the template.")
    else:
        lines.append(f"- cfn-lint: {len(lint)} problem(s):")
        lines += [f"  - {p.severity} {p.rule} (line {p.line}): {_escape(p.message)}" for p in lint]
    if smoke is None:
        lines.append("- smoke test: not run.")
    elif smoke.skipped:
        lines.append(f"- smoke test: {_escape(smoke.skipped)}")
    else:
        verdict = "passed" if smoke.ok else "**failed**"
        lines += [f"- smoke test (the bundle run locally through its handler): {verdict}", ""]
        lines += ["  | path | status | time |", "  |---|---:|---:|"]
        for request in smoke.requests:
            status = str(request.status) if request.status is not None else f"no answer: {request.error}"
            lines.append(f"  | `{request.path}` | {_escape(status)} | {1000 * request.seconds:.0f} ms |")
    return lines


# -- deploy --------------------------------------------------------------------------------------


def deploy_markdown(result: DeployResult) -> str:
    """A job summary for a finished deploy."""
    verb = "updated" if result.changed else "unchanged (empty change set)"
    lines = [f"# datasette-lambda deploy: `{result.stack}` {verb}", ""]
    if result.url:
        lines.append(f"Site: {result.url}")
    lines += [
        f"Function: `{result.function_name}`, bucket `{result.bucket}`, account {result.account},"
        f" {result.region}, {result.seconds:.1f} s.",
    ]
    if result.recreated:
        lines.append(
            "The stack was left in ROLLBACK_COMPLETE by a failed first create: it was deleted first."
        )
    if result.health is not None:
        health = result.health
        status = health.status if health.status is not None else f"no answer ({health.error})"
        verdict = "ok" if health.ok else "**failed**"
        lines.append(f"Health check: GET {health.url} → {status} in {health.seconds:.2f} s: {verdict}.")
    lines += ["", "## Uploads", "", *upload_table(result.artifacts)]
    if result.change_set.changes:
        lines += ["", "## Resource changes", "", *change_table(result.change_set.changes)]
    return "\n".join(lines) + "\n"


def upload_table(uploads: Sequence[Upload]) -> list[str]:
    lines = ["| object | key | size | |", "|---|---|---:|---|"]
    for upload in uploads:
        lines.append(
            f"| {upload.role} | `{upload.key}` | {size(upload.size)} |"
            f" {'uploaded' if upload.uploaded else 'reused'} |"
        )
    sent = sum(upload.bytes_uploaded for upload in uploads)
    return [*lines, "", f"{size(sent)} uploaded."]


def deploy_text(result: DeployResult) -> str:
    if result.changed:
        head = f"Deployed {result.stack} ({result.seconds:.1f} s)"
    else:
        head = f"{result.stack} is up to date: the change set was empty ({result.seconds:.1f} s)"
    lines = [head]
    if result.recreated:
        lines.append("  (the stack had failed its first create: it was deleted and created again)")
    sent = result.bytes_uploaded
    lines.append(f"  uploaded  {size(sent)} ({sum(a.uploaded for a in result.artifacts)} object(s))")
    for upload in result.artifacts:
        state = "uploaded" if upload.uploaded else "reused"
        lines.append(f"    {upload.role:<10} {state:<8} {size(upload.size):>9}  {upload.key}")
    if result.url:
        lines.append(f"  url       {result.url}")
    lines.append(f"  function  {result.function_name}")
    lines.append(f"  bucket    {result.bucket}")
    if result.health is not None:
        health = result.health
        status = health.status if health.status is not None else f"no answer ({health.error})"
        lines.append(f"  health    GET {health.url} -> {status} in {health.seconds:.2f} s")
    return "\n".join(lines)


def deploy_json(result: DeployResult) -> dict[str, Any]:
    health = result.health
    return {
        "stack": result.stack,
        "region": result.region,
        "url": result.url,
        "function_name": result.function_name,
        "bucket": result.bucket,
        "changed": result.changed,
        "recreated": result.recreated,
        "bytes_uploaded": result.bytes_uploaded,
        "artifacts": [
            {
                "role": u.role,
                "key": u.key,
                "sha256": u.sha256,
                "status": "uploaded" if u.uploaded else "reused",
                "bytes": u.size,
            }
            for u in result.artifacts
        ],
        "change_set": _change_set_json(result.change_set),
        "health": None
        if health is None
        else {
            "url": health.url,
            "status": health.status,
            "ok": health.ok,
            "seconds": round(health.seconds, 3),
        },
        "outputs": dict(result.outputs),
        "seconds": round(result.seconds, 3),
    }


def _change_set_json(change_set: ChangeSet) -> dict[str, Any]:
    return {
        "name": change_set.name,
        "type": change_set.kind,
        "empty": change_set.empty,
        "changes": [_change_json(c) for c in change_set.changes],
    }


# -- destroy -------------------------------------------------------------------------------------


def destroy_text(result: DestroyResult) -> str:
    if not result.stack_deleted and not result.bootstrap_deleted and not result.objects_deleted:
        return f"Nothing to delete: there is no stack {result.stack} in {result.region}"
    lines = [f"Destroyed {result.stack} ({result.seconds:.1f} s)"]
    lines.append(f"  stack            {'deleted' if result.stack_deleted else 'not found'}")
    if result.bucket:
        lines.append(f"  objects deleted  {result.objects_deleted} from {result.bucket}")
    if result.bootstrap_deleted:
        lines.append("  bootstrap stack  deleted (with its bucket)")
    return "\n".join(lines)


def destroy_json(result: DestroyResult) -> dict[str, Any]:
    return {
        "stack": result.stack,
        "stack_deleted": result.stack_deleted,
        "bucket": result.bucket,
        "objects_deleted": result.objects_deleted,
        "bootstrap_deleted": result.bootstrap_deleted,
        "seconds": round(result.seconds, 3),
    }


# -- errors --------------------------------------------------------------------------------------


# -- the template and the deployer's IAM policy ----------------------------------------------------


_SET_BY_DEPLOY = {
    P_BUCKET: "(the bootstrap stack's BucketName output)",
    P_DEPLOYMENT_ID: "(new on a create and with --force, else the previous value)",
}


def template_text(template: Template, stack: str, *, inline: bool) -> str:
    """What `datasette-lambda template` says on stderr beside the template: its size, how deploy
    sends it, and its parameters' values (where known before deploying)."""
    sent = "sent inline" if inline else f"uploaded as templates/{template.sha256}.json"
    lines = [f"The template of the stack {stack}: {size(template.size)}, {sent}"]
    for name in sorted(template.parameter_names):
        if name in template.parameters:
            value = template.parameters[name]
        elif name in template.secret_parameters:
            value = f"(NoEcho: ${template.secret_parameters[name]} at deploy time)"
        else:
            value = _SET_BY_DEPLOY.get(name, "(deploy sets it)")
        lines.append(f"  parameter {name} = {value}")
    return "\n".join(lines)


def policy_text(policy: Policy) -> str:
    site = policy.site
    target = site.target
    statements = policy.document["Statement"]
    bucket = (
        f"deploy.bucket {site.bucket}"
        if site.bootstrap_stack is None
        else f"{site.bucket} (the bootstrap stack {site.bootstrap_stack}'s bucket: CloudFormation names it)"
    )
    what = "planning (read-only)" if policy.modes == (PLAN,) else "deploying"
    lines = [
        f"IAM policy for {what} {site.stack} ({site.frontend}) to {target.region}, account"
        f" {target.account}: {len(statements)} statements, {policy.actions} actions,"
        f" {policy.size:,} characters (a managed policy holds {MANAGED_POLICY_MAX:,})",
        f"  artifacts bucket: {bucket}",
    ]
    if not policy.resource_types:
        lines.append(
            f"  from this tool's own calls in {', '.join(policy.modes)}: it reads, and creates, describes"
            " and deletes change sets, never executes one; no resource's permissions, no upload"
        )
        return "\n".join(lines)
    lines.append(
        f"  from AWS's resource schemas (cfn-lint {policy.cfn_lint_version}, {policy.schema_region}) for"
        f" {', '.join(policy.resource_types)}, and this tool's own calls"
    )
    left: dict[LeftOut, list[str]] = {}
    for permission in policy.left_out:
        if permission.left_out is not None:
            left.setdefault(permission.left_out, []).append(permission.permission)
    for reason, permissions in left.items():
        lines.append(
            f"  left out: {', '.join(dict.fromkeys(permissions))} ({reason.resource_type}: {reason.reason})"
        )
    return "\n".join(lines)


def policy_json(policy: Policy) -> dict[str, Any]:
    """The policy document itself: what IAM takes."""
    return dict(policy.document)


def error_json(message: str, file: Path | None, line: int | None) -> dict[str, Any]:
    return {"error": message, "file": str(file) if file else None, "line": line}


# -- formatting ----------------------------------------------------------------------------------


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _short(sha256: str | None) -> str:
    return (sha256 or "")[:12]


def _count(rows: int | None) -> str:
    return f"{rows:,}" if rows is not None else "—"


def size(count: int) -> str:
    """A byte count for people: 512 B, 4.7 MB."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
