"""The release checks `.github/workflows/release.yml` runs on a pushed `vX.Y.Z` tag: the tag is
`v` + the package's version (`datasette_action.__version__`, the one place it is written), and
CHANGELOG.md has a non-empty section for that version, which becomes the release's notes.

    python -m datasette_action.release v1.2.3 --notes notes.md --tags tags.txt
    # prints major=v1 and move-major=true (false when tags.txt holds a newer v1.x.y)

Standard library only, and nothing else of the package is imported: the release job runs it from
the checkout with the runner's Python, with nothing installed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from datasette_action import __version__

ROOT = Path(__file__).resolve().parent.parent
TAG = re.compile(r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
VERSION_FILE = "datasette_action/__init__.py"
# Keep a Changelog: `## [1.2.3] - 2026-12-07`; the brackets and the date are optional here.
HEADING = re.compile(r"^## +\[?(?P<version>[^\]\s]+)\]?(?: +- +.*)?$")
LINK_DEFINITION = re.compile(r"^\[[^\]]+\]: +\S+")  # `[1.2.3]: https://...`, at the file's end


class ReleaseError(Exception):
    """A release that must not go out: the message says what to fix."""


def check_tag(tag: str, version: str = __version__) -> str:
    """The major tag (`v1`) that follows `tag`, once `tag` is `v` + `version`."""
    match = TAG.fullmatch(tag)
    if not match:
        raise ReleaseError(f"the tag {tag!r} is not a release tag: push a tag vX.Y.Z (v{version})")
    if tag != f"v{version}":
        raise ReleaseError(
            f"the tag {tag} does not match the package version {version} ({VERSION_FILE}):"
            f" set __version__ there to {tag.removeprefix('v')!r} and add its CHANGELOG.md section,"
            f" or push the tag v{version}"
        )
    return f"v{match[1]}"


def is_newest(tag: str, tags: list[str]) -> bool:
    """Whether `tag` is the newest release of its major version among `tags` (names or
    `refs/tags/...`; others ignored): a fix to an older release does not move the major tag back."""
    own = _release(tag)
    if own is None:
        return False
    releases = [release for name in tags if (release := _release(name.removeprefix("refs/tags/")))]
    return all(release <= own for release in releases if release[0] == own[0])


def _release(name: str) -> tuple[int, int, int] | None:
    match = TAG.fullmatch(name.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def changelog_section(text: str, version: str) -> str:
    """The body of `## [version]` in a Keep a Changelog file: up to the next `## ` heading (or
    the link definitions at the end), without its heading; never empty."""
    lines = text.splitlines()
    starts = [index for index, line in enumerate(lines) if _heading_version(line) == version]
    if not starts:
        raise ReleaseError(
            f"CHANGELOG.md has no section for {version}: add `## [{version}] - YYYY-MM-DD` with what changed"
        )
    if len(starts) > 1:
        raise ReleaseError(f"CHANGELOG.md has {len(starts)} sections for {version}: keep one")
    body: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if _heading_version(line) is not None or LINK_DEFINITION.match(line):
            break
        body.append(line)
    section = "\n".join(body).strip()
    if not section:
        raise ReleaseError(f"CHANGELOG.md's section for {version} is empty: say what changed")
    return section + "\n"


def _heading_version(line: str) -> str | None:
    match = HEADING.match(line)
    return match["version"] if match else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datasette_action.release",
        description="Check a release tag against the package version; write its CHANGELOG section.",
    )
    parser.add_argument("tag", help="the pushed tag, vX.Y.Z")
    parser.add_argument("--changelog", type=Path, default=ROOT / "CHANGELOG.md")
    parser.add_argument("--notes", type=Path, help="write the release notes (the section) here")
    parser.add_argument("--tags", type=Path, help="the repository's tags, one a line: is this the newest?")
    arguments = parser.parse_args(argv)
    try:
        major = check_tag(arguments.tag)
        if not arguments.changelog.is_file():
            raise ReleaseError(f"{arguments.changelog} was not found")
        notes = changelog_section(arguments.changelog.read_text(encoding="utf-8"), __version__)
    except ReleaseError as error:
        prefix = "::error title=release check failed::" if os.environ.get("GITHUB_ACTIONS") else "error: "
        print(prefix + str(error), file=sys.stderr)
        return 1
    if arguments.notes:
        arguments.notes.write_text(notes, encoding="utf-8")
    tags = arguments.tags.read_text(encoding="utf-8").splitlines() if arguments.tags else []
    # the step appends these to $GITHUB_OUTPUT
    print(f"major={major}")
    print(f"move-major={str(is_newest(arguments.tag, tags)).lower()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
