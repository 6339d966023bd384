"""The dry run both `datasette-lambda plan` and the action's plan mode run: lint the template,
smoke-test the bundle, compare with AWS (or say it is offline), write the Markdown report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasette_action.checks import LintProblem, SmokeTest, lint_template, smoke_test
from datasette_action.config import Config
from datasette_action.deploy import DeployOptions, PlanResult, plan
from datasette_action.package import PackageResult
from datasette_action.report import plan_markdown
from datasette_action.template import Template


@dataclass(frozen=True)
class CheckedPlan:
    outcome: PlanResult
    lint: tuple[LintProblem, ...]
    smoke: SmokeTest
    markdown: str
    report: Path  # where the Markdown was written

    @property
    def lint_errors(self) -> int:
        return sum(1 for problem in self.lint if problem.severity == "error")

    @property
    def smoke_passed(self) -> bool:
        return self.smoke.ok or bool(self.smoke.skipped)

    @property
    def problems(self) -> tuple[str, ...]:
        """What makes the plan fail: template errors, a bundle that does not answer."""
        found = [f"cfn-lint found {self.lint_errors} error(s) in the template"] if self.lint_errors else []
        return (*found, *([] if self.smoke_passed else ["the bundle failed its smoke test"]))


def checked_plan(
    config: Config, result: PackageResult, template: Template, options: DeployOptions, report: Path
) -> CheckedPlan:
    lint = lint_template(template, config.region)
    smoke = smoke_test(result)
    outcome = plan(config, result, template, options)
    markdown = plan_markdown(outcome, result, lint, smoke)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(markdown, encoding="utf-8")
    return CheckedPlan(outcome, lint, smoke, markdown, report)
