"""Markdown for plans and deploys (a pull request comment, a job summary, a file). Pure functions
of the results: no AWS, no files."""

from __future__ import annotations

from collections.abc import Sequence

from datasette_action.checks import LintProblem, SmokeTest
from datasette_action.deploy import DeployResult, PlanResult, ResourceChange, Upload
from datasette_action.package import UNZIPPED_LIMIT, PackageResult
from datasette_action.state import DatabaseChange, TableChange, compare_states


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
    after = _size(database.size_after) if database.size_after is not None else ""
    if not online:
        return f"{after}, sha256 `{_short(database.sha256_after)}`"
    if database.change == "added":
        return f"new ({after})"
    if database.change == "removed":
        return "removed"
    if database.change == "same":
        return f"unchanged ({after}, sha256 `{_short(database.sha256_after)}`)"
    before = _size(database.size_before) if database.size_before is not None else "?"
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
        size = unzipped.get(artifact.role)
        lines.append(
            f"| {artifact.role} | {_size(artifact.size)} | {_size(size) if size is not None else ''}"
            f" | `{_short(artifact.sha256)}` | {state[artifact.in_bucket]} |"
        )
    total = result.layer.unzipped_size + result.function.unzipped_size
    lines += [
        "",
        f"Code and layer unzip to {_size(total)} of Lambda's {_size(UNZIPPED_LIMIT)} limit"
        f" ({100 * total / UNZIPPED_LIMIT:.0f}%); /tmp: {result.ephemeral_storage} MB.",
    ]
    new = [a for a in plan.artifacts if a.in_bucket is False]
    if plan.online and plan.artifacts and all(a.in_bucket is not None for a in plan.artifacts):
        lines.append(f"Deploy would upload {_size(sum(a.size for a in new))} in {len(new)} object(s).")
    return lines


# -- resource changes ----------------------------------------------------------------------------


def _changes(plan: PlanResult) -> list[str]:
    lines = ["## Resource changes", ""]
    if plan.changes_from == "unknown":
        return [*lines, "Unknown offline: CloudFormation was not asked."]
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
            f"| {upload.role} | `{upload.key}` | {_size(upload.size)} |"
            f" {'uploaded' if upload.uploaded else 'reused'} |"
        )
    sent = sum(upload.bytes_uploaded for upload in uploads)
    return [*lines, "", f"{_size(sent)} uploaded."]


# -- formatting ----------------------------------------------------------------------------------


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _short(sha256: str | None) -> str:
    return (sha256 or "")[:12]


def _count(rows: int | None) -> str:
    return f"{rows:,}" if rows is not None else "—"


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
