"""The one packaging setting pyproject.toml cannot say: found packages plus a renamed one.

`[tool.setuptools.packages.find]` and a `packages` list exclude each other there, and find does not
rename directories: datasette_action (with every subpackage, found) plus `datasette_action_entrypoint`,
whose source directory is entrypoint/ (pyproject.toml's `package-dir`).
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["datasette_action", "datasette_action.*"]),
        "datasette_action_entrypoint",
    ]
)
