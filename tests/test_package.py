"""Tests for the package stage: Config + BuildResult -> the dependencies layer and the function zip.

pip really runs against the package index (with pip's cache), once per test session for the
default target (Python 3.13, x86_64, `packaged`) and once for arm64 (`packaged_arm64`); the other
tests reuse those trees or copies of their projects. Pure functions (placement, pip's command line,
pip's error messages, zips) are tested directly. Only one thing is simulated, and said so where:
a machine without the target's Python (find_interpreter returning None) for the arm64 run.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement

from datasette_action import dependencies
from datasette_action import package as package_module
from datasette_action.build import BuildResult, BuiltDatabase, build
from datasette_action.cli import cli
from datasette_action.config import Config, DatasetteConfig, load_config
from datasette_action.dependencies import (
    Target,
    layer_key,
    pin,
    pip_argv,
    pip_failure,
    platform_tags,
    requirements,
)
from datasette_action.errors import Location, PackageError
from datasette_action.events import function_url_event
from datasette_action.package import (
    EPHEMERAL_MAX_MB,
    LAMBDA_MODULES,
    LAMBDA_PACKAGE,
    MB,
    UNZIPPED_LIMIT,
    PackageResult,
    build_manifest,
    check_limits,
    package,
    place_databases,
)
from datasette_action.pyc import UNCHECKED_HASH_FLAGS, compile_tree, find_interpreter, pyc_flags
from datasette_action.serve import local_lambda
from datasette_action.sqlite import (
    PINS,
    Sqlite,
    build_sqlite,
    bundled_sqlite,
    carried_sqlite,
    mismatch_warning,
    requirement,
    sqlite3,
)
from datasette_action.zips import FIXED_TIME, file_sha256, write_zip
from datasette_action_entrypoint.downloads import DOWNLOAD_LIMIT
from datasette_action_entrypoint.manifest import HANDLER, load_manifest

CONFIG = "datasette-lambda.yml"
PLUGIN = "datasette-pretty-json==0.3"
PROJECT = {
    CONFIG: f"""\
        stack: package-test
        databases:
          census:
            tables:
              states: {{source: data/states.csv, pk: code}}
          places:
            tables:
              cities: data/cities.csv
        metadata: {{title: Packaging test}}
        datasette:
          settings: {{default_page_size: 20}}
          plugins: ["{PLUGIN}"]
          static: {{assets: static}}
          templates: templates
          plugins_dir: plugins
        """,
    "data/states.csv": "code,name\nAL,Alabama\nAZ,Arizona\n",
    "data/cities.csv": "name,state\nPhoenix,AZ\n",
    "static/app.css": "body { color: teal; }\n",
    "templates/_footer.html": "<footer>packaged</footer>\n",
    "plugins/hello.py": "from datasette import hookimpl\n\n\n@hookimpl\ndef extra_template_vars():\n"
    "    return {'hello': 'world'}\n",
}
PY313 = find_interpreter("3.13")
# The layer fixture whose compiled parts this machine can load, and its Python.
THIS_MACHINES_LAYER = {"x86_64": ("packaged", "3.13"), "aarch64": ("packaged_arm64", "3.12")}


@dataclass(frozen=True)
class Packaged:
    config: Config
    built: BuildResult
    result: PackageResult
    log: tuple[str, ...]


def write_project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root / CONFIG


def run_package(config_path: Path) -> Packaged:
    config = load_config(config_path)
    log: list[str] = []
    built = build(config, log=log.append)
    return Packaged(config, built, package(config, built, log=log.append), tuple(log))


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    """The default target (python3.13, x86_64) with a plugin: one real pip run per session."""
    return run_package(write_project(tmp_path_factory.mktemp("project"), PROJECT))


@pytest.fixture(scope="session")
def packaged_arm64(tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    """arm64, Python 3.12, on a machine without python3.12: simulated by find_interpreter -> None."""
    files = {**PROJECT, CONFIG: PROJECT[CONFIG] + 'lambda: {python: "3.12", architecture: arm64}\n'}
    config_path = write_project(tmp_path_factory.mktemp("project-arm64"), files)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(package_module, "find_interpreter", lambda version: None)
        return run_package(config_path)


def copy_project(packaged: Packaged, tmp_path: Path) -> Path:
    """A copy of a packaged project, its build directory (and so the layer cache) included."""
    target = tmp_path / "copy"
    shutil.copytree(packaged.config.root, target)  # copy2: file times are kept
    return target / CONFIG


def layer_tree(result: PackageResult) -> Path:
    return result.layer.directory / "python"


# -- the layer ----------------------------------------------------------------------------------


def test_layer_holds_datasette_and_mangum_built_for_cp313_manylinux_x86_64(packaged: Packaged) -> None:
    tree = layer_tree(packaged.result)
    assert (tree / "datasette" / "app.py").is_file()
    assert (tree / "mangum" / "adapter.py").is_file()
    so_files = {path.name for path in tree.rglob("*.so")}
    assert "_yaml.cpython-313-x86_64-linux-gnu.so" in so_files
    assert any(name.startswith("_speedups.cpython-313-x86_64") for name in so_files)  # MarkupSafe
    assert "_sqlite3.cpython-313-x86_64-linux-gnu.so" in {p.name for p in (tree / "sqlean").iterdir()}
    assert not any("aarch64" in name or "cpython-311" in name for name in so_files)
    assert packaged.result.requirements == ("datasette", "mangum", "sqlean.py==3.50.4.5", PLUGIN)
    assert (packaged.result.python, packaged.result.architecture) == ("3.13", "x86_64")


def test_layer_is_pruned_but_keeps_the_plugin_entry_points(packaged: Packaged) -> None:
    tree = layer_tree(packaged.result)
    top = {path.name for path in tree.iterdir()}
    for gone in ("pip", "setuptools", "pkg_resources", "_distutils_hack", "uvicorn", "hupper", "bin"):
        assert gone not in top
    assert not [name for name in top if name.startswith(("pip-", "setuptools-", "uvicorn-", "hupper-"))]
    assert not [name for name in top if name.endswith(".pth")]
    assert not list(tree.rglob("tests")) and not list(tree.rglob("*.pyi"))
    [plugin] = tree.glob("datasette_pretty_json-0.3.dist-info")
    assert "[datasette]" in (plugin / "entry_points.txt").read_text()
    assert list(tree.glob("datasette-*.dist-info")) and list(tree.glob("click-*.dist-info"))
    assert (tree / "click").is_dir()  # datasette.utils imports click at run time
    assert any(line.startswith("pruned ") and "pip, setuptools" in line for line in packaged.log)


def test_layer_zip_is_the_tree_under_python(packaged: Packaged) -> None:
    layer = packaged.result.layer
    assert layer.role == "layer" and not layer.reused
    assert layer.zip_path.name == f"layer-{layer.sha256}.zip"
    assert file_sha256(layer.zip_path) == layer.sha256 and layer.zip_path.stat().st_size == layer.zipped_size
    with zipfile.ZipFile(layer.zip_path) as archive:
        names = archive.namelist()
        assert sum(info.file_size for info in archive.infolist()) == layer.unzipped_size
    tree = layer_tree(packaged.result)
    on_disk = sorted(f"python/{p.relative_to(tree).as_posix()}" for p in tree.rglob("*") if p.is_file())
    assert names == on_disk
    assert layer.zipped_size < layer.unzipped_size < 30 * MB


@pytest.mark.skipif(PY313 is None, reason="needs python3.13 to compile for Lambda's python3.13")
def test_pyc_are_unchecked_hash_for_313_with_runtime_paths(packaged: Packaged) -> None:
    assert packaged.result.compiled
    tree = layer_tree(packaged.result)
    sources = [p for p in (tree / "datasette").rglob("*.py")]
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        assert pyc_flags(compiled) == UNCHECKED_HASH_FLAGS == 0b01, compiled
    assert not list(tree.rglob("*.cpython-311.pyc"))
    app_pyc = (tree / "datasette" / "__pycache__" / "app.cpython-313.pyc").read_bytes()
    assert b"/opt/python/datasette/app.py" in app_pyc and str(tree).encode() not in app_pyc
    handler_pyc = (
        packaged.result.function.directory / LAMBDA_PACKAGE / "__pycache__" / "handler.cpython-313.pyc"
    )
    assert pyc_flags(handler_pyc) == UNCHECKED_HASH_FLAGS
    assert b"/var/task/datasette_action_entrypoint/handler.py" in handler_pyc.read_bytes()


@pytest.mark.skipif(PY313 is None, reason="needs python3.13")
def test_compiling_is_deterministic_wherever_the_tree_is(packaged: Packaged, tmp_path: Path) -> None:
    assert PY313 is not None
    copy = tmp_path / "elsewhere" / "python"
    shutil.copytree(layer_tree(packaged.result) / "jinja2", copy / "jinja2")
    original = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*.pyc")}
    for cache in copy.rglob("__pycache__"):
        shutil.rmtree(cache)
    assert compile_tree(PY313, copy, "/opt/python") == []
    again = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*.pyc")}
    assert again == original and len(again) > 10


def test_arm64_picks_aarch64_wheels(packaged_arm64: Packaged) -> None:
    tree = layer_tree(packaged_arm64.result)
    so_files = {path.name for path in tree.rglob("*.so")}
    assert "_yaml.cpython-312-aarch64-linux-gnu.so" in so_files
    assert "_sqlite3.cpython-312-aarch64-linux-gnu.so" in so_files  # the SQLite binding, sqlean.py
    assert not any("x86_64" in name for name in so_files)
    assert packaged_arm64.result.sqlite.version == "3.50.4"
    assert packaged_arm64.result.layer.sha256 != "" and packaged_arm64.result.architecture == "arm64"


def test_without_the_target_python_it_ships_no_pyc_and_says_so(packaged_arm64: Packaged) -> None:
    result = packaged_arm64.result
    assert not result.compiled
    assert not list(layer_tree(result).rglob("*.pyc"))
    assert not list(result.function.directory.rglob("*.pyc"))
    assert result.warnings[0].startswith(
        "python3.12 was not found (on PATH or in pyenv), so the bundle has no .pyc"
    )


@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils' readelf checks the result")
@pytest.mark.parametrize("fixture", ["packaged", "packaged_arm64"])
def test_the_layers_shared_objects_have_no_debug_sections(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    packaged: Packaged = request.getfixturevalue(fixture)
    libraries = sorted(layer_tree(packaged.result).rglob("*.so"))
    assert len(libraries) >= 3  # sqlean's _sqlite3, PyYAML's _yaml, MarkupSafe's _speedups
    for library in libraries:
        done = subprocess.run(["readelf", "-h", "-S", "-W", str(library)], capture_output=True, text=True)
        assert done.returncode == 0 and done.stderr == "", (library, done.stderr)
        assert "Shared object file" in done.stdout and ".symtab" in done.stdout, library
        assert ".debug" not in done.stdout, library
    [sqlean] = [library for library in libraries if library.name.startswith("_sqlite3.")]
    assert sqlean.stat().st_size < 3 * MB  # 8.5 MB (x86_64) or 8.8 MB (aarch64) in its wheel
    logged = f"stripped debug sections from {len(libraries)} shared object(s): "
    assert [line for line in packaged.log if line.startswith(("stripped ", "left "))] == [
        next(line for line in packaged.log if line.startswith(logged))
    ]


@pytest.mark.skipif(platform.machine() not in THIS_MACHINES_LAYER, reason="no layer for this CPU")
def test_the_stripped_sqlite_binding_loads_and_answers_queries(request: pytest.FixtureRequest) -> None:
    """The layer's sqlean.py, debug sections stripped, in a Python of the layer's version with only
    the layer on sys.path (-B: no .pyc written into the fixture's tree)."""
    fixture, python = THIS_MACHINES_LAYER[platform.machine()]
    interpreter = find_interpreter(python)
    if interpreter is None:
        pytest.skip(f"needs python{python} to load the layer built for it")
    tree = layer_tree(request.getfixturevalue(fixture).result)
    script = textwrap.dedent(
        """\
        import json, sys
        sys.path[:0] = [sys.argv[1]]
        import sqlean, sqlean._sqlite3
        db = sqlean.connect(":memory:")
        db.execute("create virtual table docs using fts5(body)")
        db.executemany("insert into docs values (?)", [("debug sections stripped",), ("symbols kept",)])
        found = db.execute("select body from docs where docs match 'stripped'").fetchall()
        value = db.execute("select json_extract(?, '$.a[1]')", ['{"a": [1, 2]}']).fetchone()[0]
        print(json.dumps([sqlean._sqlite3.__file__, sqlean.sqlite_version, found, value]))
        """
    )
    done = subprocess.run(
        [str(interpreter), "-I", "-S", "-B", "-c", script, str(tree)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    library, version, found, value = json.loads(done.stdout)
    assert Path(library).parent == tree / "sqlean" and Path(library).stat().st_size < 3 * MB
    assert (version, found, value) == ("3.50.4", [["debug sections stripped"]], 2)


# -- the function code and the manifest ------------------------------------------------------------


def test_function_code_layout(packaged: Packaged) -> None:
    function = packaged.result.function
    app = function.directory
    assert function.role == "function" and function.zip_path.name == f"function-{function.sha256}.zip"
    assert (app / LAMBDA_PACKAGE / "manifest.py").is_file() and (
        app / LAMBDA_PACKAGE / "handler.py"
    ).is_file()
    assert not list((app / LAMBDA_PACKAGE).glob("__pycache__/*.cpython-311.pyc"))
    assert (app / "databases" / "census.db").read_bytes() == packaged.built.databases[0].path.read_bytes()
    assert (app / "static" / "assets" / "app.css").is_file()
    assert (app / "templates" / "_footer.html").is_file() and (app / "plugins" / "hello.py").is_file()
    with zipfile.ZipFile(function.zip_path) as archive:
        names = archive.namelist()
        infos = archive.infolist()
    assert names == sorted(names) and "manifest.json" in names and "databases/places.db" in names
    assert {(i.date_time, i.external_attr >> 16, i.create_system) for i in infos} == {
        (FIXED_TIME, 0o100644, 3)
    }
    assert packaged.result.handler == HANDLER == "datasette_action_entrypoint.handler.handler"
    assert packaged.result.python_path == (app, layer_tree(packaged.result))
    assert packaged.result.manifest == app / "manifest.json"


def test_the_function_zip_holds_only_the_lambda_modules(packaged: Packaged) -> None:
    """Only what runs in Lambda: the entry point's modules (and their .pyc), no test helpers."""
    with zipfile.ZipFile(packaged.result.function.zip_path) as archive:
        names = [n for n in archive.namelist() if n.startswith(f"{LAMBDA_PACKAGE}/")]
    sources = sorted(n for n in names if "/__pycache__/" not in n)
    assert sources == sorted(f"{LAMBDA_PACKAGE}/{module}.py" for module in LAMBDA_MODULES)
    assert LAMBDA_MODULES == (
        "__init__",
        "app",
        "bundle",
        "downloads",
        "handler",
        "manifest",
        "paths",
        "sqlite",
        "units",
    )
    compiled = {n.removeprefix(f"{LAMBDA_PACKAGE}/__pycache__/") for n in names if "/__pycache__/" in n}
    assert compiled <= {f"{module}.cpython-313.pyc" for module in LAMBDA_MODULES}
    assert not [n for n in archive.namelist() if n.startswith("entrypoint/") or "events" in n]
    # every module of entrypoint/ runs in Lambda: a new one is added to LAMBDA_MODULES on purpose
    repo_modules = sorted(p.stem for p in (Path(__file__).parent.parent / "entrypoint").glob("*.py"))
    assert repo_modules == sorted(LAMBDA_MODULES)


def test_manifest(packaged: Packaged) -> None:
    manifest = load_manifest(packaged.result.manifest)
    census, places = packaged.built.databases
    assert [(d.name, d.file, d.sha256, d.size, d.location, d.s3_key) for d in manifest.databases] == [
        ("census", "census.db", census.sha256, census.size, "bundle", None),
        ("places", "places.db", places.sha256, places.size, "bundle", None),
    ]
    assert manifest.inspect_data["census"] == {
        "file": "databases/census.db",
        "hash": census.sha256,
        "size": census.size,
        "tables": {"states": {"count": 2}},
    }
    assert manifest.inspect_data["places"]["file"] == "databases/places.db"
    assert manifest.settings == {"default_page_size": 20, "suggest_facets": False}
    assert manifest.metadata == {"title": "Packaging test"}
    assert [(s.url_path, s.directory) for s in manifest.static] == [("assets", "static/assets")]
    assert (manifest.templates, manifest.plugins_dir) == ("templates", "plugins")


def test_a_users_suggest_facets_wins(tmp_path: Path) -> None:
    files = {**PROJECT, CONFIG: "stack: s\ndatabases: {d: {tables: {t: t.csv}}}\n"}
    files[CONFIG] += "datasette: {settings: {suggest_facets: true}}\n"
    config = load_config(write_project(tmp_path, files))
    placement = place_databases([fake("d", 10)], 0, 512)
    manifest = build_manifest(config, {"d": {"file": "d.db", "hash": "0" * 64, "size": 10}}, placement)
    assert manifest.settings == {"suggest_facets": True}
    assert (manifest.metadata, manifest.static, manifest.templates, manifest.plugins_dir) == (
        None,
        (),
        None,
        None,
    )


@pytest.mark.skipif(
    PY313 is None or platform.machine() != "x86_64", reason="runs the x86_64 cp313 bundle with python3.13"
)
def test_the_bundle_serves_datasette_with_the_plugins(packaged: Packaged) -> None:
    """The unzipped trees run as Lambda runs them: the target Python, app + layer on the path."""
    assert PY313 is not None
    events = [
        function_url_event("GET", "/census/states.json", query="_shape=array"),
        function_url_event("GET", "/-/plugins.json"),
        function_url_event("GET", "/-/versions.json"),
    ]
    # serve's local runtime (`python -I -S`) on the zips unpacked read-only, as they would be uploaded
    with local_lambda(packaged.result) as function:
        states, plugins, versions = (function.invoke(event) for event in events)
    assert states["statusCode"] == 200, states
    assert json.loads(states["body"]) == [
        {"code": "AL", "name": "Alabama"},
        {"code": "AZ", "name": "Arizona"},
    ]
    assert {p["name"] for p in json.loads(plugins["body"])} == {"datasette-pretty-json", "hello.py"}
    assert json.loads(versions["body"])["uvicorn"] is None  # pruned; Datasette imports it optionally


@pytest.mark.skipif(
    PY313 is None or platform.machine() != "x86_64", reason="runs the x86_64 cp313 bundle with python3.13"
)
def test_the_site_runs_the_bundled_sqlite_not_the_runtimes(packaged: Packaged) -> None:
    """/-/versions.json, asked through serve's local Lambda, shows the layer's SQLite: the pinned
    binding's, which is not the one python3.13 here links (that one is this machine's)."""
    with local_lambda(packaged.result) as function:
        versions = json.loads(function.invoke(function_url_event("GET", "/-/versions.json"))["body"])
    assert versions["sqlite"]["version"] == packaged.result.sqlite.version == carried_sqlite(PINS["3.13"])
    assert {"FTS5", "FTS4"} <= set(versions["sqlite"]["fts_versions"])
    assert "ENABLE_MATH_FUNCTIONS" in versions["sqlite"]["compile_options"]
    assert PY313 is not None
    runtime = subprocess.run(
        [str(PY313), "-I", "-c", "import sqlite3; print(sqlite3.sqlite_version)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert runtime != versions["sqlite"]["version"]  # or this test would prove nothing


# -- cache and determinism ------------------------------------------------------------------------


def test_packaging_again_gives_the_same_bytes(packaged: Packaged, tmp_path: Path) -> None:
    again = run_package(copy_project(packaged, tmp_path))
    assert again.result.layer.reused and again.result.layer.sha256 == packaged.result.layer.sha256
    assert again.result.function.sha256 == packaged.result.function.sha256
    assert again.result.function.zip_path.name == packaged.result.function.zip_path.name


def test_a_layer_built_again_from_scratch_has_the_same_bytes(packaged: Packaged, tmp_path: Path) -> None:
    """pip, pruning, stripping, compiling and zipping again, without the cache: the same sha256."""
    config_path = copy_project(packaged, tmp_path)
    shutil.rmtree(config_path.parent / ".datasette-lambda" / "package")
    again = run_package(config_path)
    assert not again.result.layer.reused and any(line.startswith("installing ") for line in again.log)
    assert again.result.layer.sha256 == packaged.result.layer.sha256
    assert again.result.layer.zip_path.name == packaged.result.layer.zip_path.name


def test_zips_do_not_depend_on_file_times_or_creation_order(tmp_path: Path) -> None:
    shas = []
    for run, names in enumerate((["b.txt", "a/c.txt"], ["a/c.txt", "b.txt"])):
        root = tmp_path / f"tree{run}"
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(name)
            os.utime(root / name, (1_000_000 * (run + 1), 1_000_000 * (run + 1)))
        (root / "b.txt").chmod(0o755)
        shas.append(write_zip(root, tmp_path / f"{run}.zip", prefix="python/").sha256)
        with zipfile.ZipFile(tmp_path / f"{run}.zip") as archive:
            assert archive.namelist() == ["python/a/c.txt", "python/b.txt"]
    assert shas[0] == shas[1]


def test_a_data_only_change_reuses_the_dependencies(packaged: Packaged, tmp_path: Path) -> None:
    config_path = copy_project(packaged, tmp_path)
    cached_zip = config_path.parent / packaged.result.layer.zip_path.relative_to(packaged.config.root)
    mtime = cached_zip.stat().st_mtime_ns
    with (config_path.parent / "data" / "states.csv").open("a") as f:
        f.write("CA,California\n")
    again = run_package(config_path)
    assert again.result.layer.reused and again.result.layer.zip_path == cached_zip
    assert cached_zip.stat().st_mtime_ns == mtime  # the zip was not rewritten
    assert not any(line.startswith("installing ") for line in again.log)  # pip did not run
    assert f"dependencies unchanged: reusing {cached_zip.name}" in again.log
    assert again.result.function.sha256 != packaged.result.function.sha256
    package_dir = cached_zip.parent
    assert [p.name for p in package_dir.glob("function-*.zip")] == [again.result.function.zip_path.name]
    manifest = load_manifest(again.result.manifest)
    assert manifest.inspect_data["census"]["tables"] == {"states": {"count": 3}}


def test_the_layer_key_follows_requirements_target_and_pyc() -> None:
    base = layer_key(("datasette", "mangum"), Target("3.13", "x86_64"), compiled=True)
    assert len(base) == 16 and base == layer_key(
        ("datasette", "mangum"), Target("3.13", "x86_64"), compiled=True
    )
    others = {
        layer_key(("datasette", "mangum", PLUGIN), Target("3.13", "x86_64"), compiled=True),
        layer_key(("datasette==0.65.1", "mangum"), Target("3.13", "x86_64"), compiled=True),
        layer_key(("datasette", "mangum"), Target("3.12", "x86_64"), compiled=True),
        layer_key(("datasette", "mangum"), Target("3.13", "arm64"), compiled=True),
        layer_key(("datasette", "mangum"), Target("3.13", "x86_64"), compiled=False),
    }
    assert len(others) == 5 and base not in others


def test_a_new_layer_recipe_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Layers cached by an older recipe (before stripping: no recipe in the key) are rebuilt."""
    wanted, target = ("datasette", "mangum"), Target("3.13", "x86_64")
    current = layer_key(wanted, target, compiled=True)
    monkeypatch.setattr(dependencies, "LAYER_RECIPE", dependencies.LAYER_RECIPE + 1)
    assert layer_key(wanted, target, compiled=True) != current


def test_layers_for_other_requirements_are_dropped_from_the_cache(packaged: Packaged, tmp_path: Path) -> None:
    config_path = copy_project(packaged, tmp_path)
    package_dir = config_path.parent / ".datasette-lambda" / "package"
    (package_dir / "deps-0123456789abcdef" / "python").mkdir(parents=True)
    (package_dir / f"layer-{'0' * 64}.zip").write_bytes(b"old")
    (package_dir / f"function-{'0' * 64}.zip").write_bytes(b"old")
    again = run_package(config_path)
    assert sorted(p.name for p in package_dir.iterdir()) == sorted(
        [
            "app",
            again.result.layer.directory.name,
            again.result.layer.zip_path.name,
            again.result.function.zip_path.name,
        ]
    )


# -- where the databases go --------------------------------------------------------------------


def fake(name: str, size: int) -> BuiltDatabase:
    return BuiltDatabase(name, Path(f"/build/{name}.db"), name[0] * 64, size, (), ())


def test_databases_that_fit_stay_in_the_bundle() -> None:
    placement = place_databases([fake("a", 100 * MB), fake("b", 4 * MB)], 20 * MB, 512)
    assert [(p.name, p.location, p.s3_key) for p in placement.databases] == [
        ("a", "bundle", f"databases/{'a' * 64}/a.db"),  # too large to download through Lambda
        ("b", "bundle", None),
    ]
    assert placement.ephemeral_storage == 512
    assert (
        placement.databases[1].reason
        == "fits in the function code (226.0 MB left of Lambda's 250 MB unzipped limit)"
    )
    assert placement.databases[0].reason == (
        "fits in the function code (126.0 MB left of Lambda's 250 MB unzipped limit); its download is"
        " over the 4.5 MB a Lambda response can carry: it redirects to a copy uploaded to S3"
    )


def test_a_database_too_large_to_download_through_lambda_gets_an_s3_key() -> None:
    """Lambda's responses carry 6 MB of JSON, in which binary bodies are base64 (4 bytes per 3):
    4,712,448 bytes of database leave 8 KB for the headers."""
    assert DOWNLOAD_LIMIT == 4_712_448 and DOWNLOAD_LIMIT // 3 * 4 + 8 * 1024 == 6 * 1024 * 1024
    placement = place_databases([fake("a", DOWNLOAD_LIMIT), fake("b", DOWNLOAD_LIMIT + 1)], 20 * MB, 512)
    assert [(p.name, p.location, p.s3_key) for p in placement.databases] == [
        ("a", "bundle", None),
        ("b", "bundle", f"databases/{'b' * 64}/b.db"),
    ]


def test_databases_that_do_not_fit_go_to_s3_smallest_stay() -> None:
    placement = place_databases(
        [fake("big", 200 * MB), fake("small", 30 * MB), fake("mid", 150 * MB)], 20 * MB, 512
    )
    assert [(p.name, p.location) for p in placement.databases] == [
        ("big", "s3"),
        ("small", "bundle"),
        ("mid", "bundle"),
    ]
    big = placement.databases[0]
    assert big.s3_key == f"databases/{'b' * 64}/big.db"
    assert big.reason == (
        "200.0 MB does not fit beside the code (50.0 MB left of Lambda's 250 MB unzipped limit):"
        " uploaded to S3, copied into /tmp at cold start; its download is over the 4.5 MB a Lambda"
        " response can carry: it redirects to the object in S3"
    )
    assert placement.ephemeral_storage == 512  # 200 MB + 64 MB to spare fit in the configured 512


def test_ephemeral_storage_grows_to_hold_the_s3_databases() -> None:
    placement = place_databases([fake("a", 3000 * MB + 1), fake("b", 2000 * MB)], 20 * MB, 1024)
    assert [p.location for p in placement.databases] == ["s3", "s3"]
    assert placement.ephemeral_storage == 5000 + 64 + 1  # rounded up to whole MB


def test_a_database_too_large_even_for_tmp_is_an_error() -> None:
    with pytest.raises(PackageError) as error:
        place_databases([fake("huge", 10_200 * MB)], 0, 512, Location(Path("datasette-lambda.yml")))
    assert str(error.value) == (
        "datasette-lambda.yml: database 'huge' is 10,200.0 MB: too large for the function code (250 MB"
        " unzipped) and for Lambda's /tmp (10,240 MB at most, with 64 MB to spare); split it into smaller databases"
    )


def test_s3_databases_together_too_large_for_tmp_is_an_error() -> None:
    with pytest.raises(PackageError) as error:
        place_databases([fake("a", 6000 * MB), fake("b", 5000 * MB)], 0, 512)
    assert str(error.value) == (
        "the databases that go to S3 (a 6,000.0 MB, b 5,000.0 MB) need 11,064 MB of /tmp, with 64 MB to"
        f" spare; Lambda allows at most {EPHEMERAL_MAX_MB:,} MB; publish fewer or smaller databases"
    )


def test_code_and_layer_over_the_unzipped_limit_is_an_error() -> None:
    check_limits(UNZIPPED_LIMIT - 1000, 999)
    with pytest.raises(PackageError) as error:
        check_limits(UNZIPPED_LIMIT - 1000, 1000)
    assert str(error.value) == (
        "the dependencies (250.0 MB) and the function code (0.0 MB) unzip to 262,144,000 bytes; Lambda"
        " requires less than 262,144,000 bytes (250 MB) for code and layers together; remove plugins from"
        " datasette.plugins, or large files from the static or template directories"
    )


def test_package_puts_what_does_not_fit_in_s3(
    packaged: Packaged, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lowered limit (monkeypatched: real 250 MB databases would make a slow test) leaves room
    for one of the two small databases beside the code."""
    small, large = sorted(packaged.built.databases, key=lambda d: (d.size, d.name))
    assert small.size < large.size
    code = packaged.result.function.unzipped_size - small.size - large.size
    room = packaged.result.layer.unzipped_size + code + package_module.MANIFEST_ALLOWANCE + small.size
    monkeypatch.setattr(package_module, "UNZIPPED_LIMIT", room + 100)
    again = run_package(copy_project(packaged, tmp_path))
    placed = {d.name: d for d in again.result.databases}
    assert (placed[small.name].location, placed[large.name].location) == ("bundle", "s3")
    app = again.result.function.directory
    assert sorted(p.name for p in (app / "databases").iterdir()) == [f"{small.name}.db"]
    manifest = load_manifest(again.result.manifest)
    [in_s3] = [d for d in manifest.databases if d.location == "s3"]
    assert in_s3.s3_key == placed[large.name].s3_key == f"databases/{large.sha256}/{large.name}.db"
    assert manifest.inspect_data[large.name]["file"] == f"{large.name}.db"
    assert manifest.inspect_data[small.name]["file"] == f"databases/{small.name}.db"
    assert placed[large.name].path == again.config.databases_dir / f"{large.name}.db"
    assert again.result.ephemeral_storage == 512  # a few KB + 64 MB to spare fit in the default


def test_package_over_the_limit_fails_before_zipping(
    packaged: Packaged, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(package_module, "UNZIPPED_LIMIT", packaged.result.layer.unzipped_size + 1000)
    config_path = copy_project(packaged, tmp_path)
    result = CliRunner().invoke(cli, ["package", "-c", str(config_path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"Error: {config_path}: the dependencies ({packaged.result.layer.unzipped_size / MB:,.1f} MB) and the"
        " function code ("
    )
    package_dir = config_path.parent / ".datasette-lambda" / "package"
    assert not list(package_dir.glob(".app-*"))  # the scratch tree is gone; the previous app stays
    assert (package_dir / "app" / "manifest.json").is_file()


# -- the SQLite binding ----------------------------------------------------------------------------


@pytest.mark.parametrize("python", sorted(PINS))
@pytest.mark.parametrize("architecture", ["x86_64", "arm64"])
def test_the_pinned_sqlite_binding_has_a_wheel_for_every_runtime_and_cpu(
    python: str, architecture: str, tmp_path: Path
) -> None:
    """pip finds a wheel of the pin for each Lambda runtime's glibc and CPU (pip download, no deps)."""
    argv = pip_argv(Target(python, architecture), (requirement(python),), tmp_path)
    argv[3] = "download"  # same platform options; --target becomes the download directory
    argv[4] = "--dest"
    argv.remove("--no-compile")
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("*.whl")
    machine = "aarch64" if architecture == "arm64" else "x86_64"
    assert wheel.name.startswith(f"sqlean_py-{PINS[python]}-cp{python.replace('.', '')}-")
    assert wheel.name.endswith(f"_{machine}.whl")


def test_pyproject_pins_the_builds_binding_as_the_layer_of_the_same_python() -> None:
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    pins = [Requirement(r) for r in project["project"]["dependencies"] if r.startswith("sqlean.py")]
    for python, version in PINS.items():
        (pin_here,) = [r for r in pins if r.marker is None or r.marker.evaluate({"python_version": python})]
        assert str(pin_here.specifier) == f"=={version}"
    assert carried_sqlite(PINS["3.11"]) == carried_sqlite(PINS["3.14"])  # one SQLite everywhere


def test_sqlean_versions_name_the_sqlite_they_carry() -> None:
    assert carried_sqlite("3.50.4.5") == "3.50.4"
    assert carried_sqlite("3.47.0") == "3.47.0"
    assert carried_sqlite("0.21.8.5") is None  # numbered after sqlean itself, before 3.45.0
    assert carried_sqlite("not a version") is None
    # the rule holds for the binding installed here: its metadata's version names the SQLite it runs
    here = build_sqlite()
    assert here.version == sqlite3.sqlite_version == carried_sqlite(here.binding_version)
    assert here.binding_version == PINS[f"{sys.version_info.major}.{sys.version_info.minor}"]


def test_the_layers_binding_is_read_from_its_metadata(tmp_path: Path) -> None:
    where = Location(tmp_path / CONFIG)
    with pytest.raises(PackageError) as caught:
        bundled_sqlite(tmp_path, where)
    assert caught.value.message == "the dependencies have no sqlean.py, the SQLite the site runs"
    info = tmp_path / "sqlean_py-0.21.8.5.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sqlean.py\nVersion: 0.21.8.5\n")
    with pytest.raises(PackageError) as caught:
        bundled_sqlite(tmp_path, where)
    assert caught.value.message == (
        "cannot tell which SQLite sqlean.py 0.21.8.5 carries: releases from 3.45.0 on are named after it;"
        " pin a later one (plugins: [sqlean.py==3.50.4.5]) or leave it out for the default"
    )


def test_a_build_sqlite_other_than_the_sites_is_a_warning() -> None:
    site = Sqlite("sqlean.py", "3.50.4.5", "3.50.4")
    assert mismatch_warning(Sqlite("sqlean.py", "3.50.4.4", "3.50.4"), site) is None  # same SQLite
    assert mismatch_warning(Sqlite("sqlean.py", "3.49.1", "3.49.1"), site) == (
        "the databases were built with SQLite 3.49.1 (sqlean.py 3.49.1 here) but the site will run SQLite"
        " 3.50.4 (sqlean.py 3.50.4.5 in the layer): a `sql:` step or view may work in one and not the other."
        " Reinstall datasette-lambda-action here to get the sqlean.py it pins, or list the sqlean.py"
        " installed here among the plugins"
    )


# -- pip: requirements, command line, errors ------------------------------------------------------

WHERE = Location(Path("datasette-lambda.yml"))


def test_requirements_and_pins(packaged: Packaged) -> None:
    datasette = packaged.config.datasette
    assert requirements(datasette, "3.13") == ("datasette", "mangum", "sqlean.py==3.50.4.5", PLUGIN)
    # python3.11's Amazon Linux 2 needs the release with glibc 2.17 wheels
    assert requirements(datasette, "3.11")[2] == "sqlean.py==3.50.4.4"
    plugins = ("mangum==0.19.0", "Datasette-Vega", "SQLean.py==3.50.4.2")
    pinned = DatasetteConfig("0.65.1", {}, plugins, (), None, None)
    assert requirements(pinned, "3.13") == ("datasette==0.65.1", *plugins)
    assert pin("datasette", "==0.65.1") == "datasette==0.65.1"
    assert pin("datasette", ">=0.65,<0.66") == "datasette>=0.65,<0.66"
    assert pin("datasette", "0.65.*") == "datasette==0.65.*"
    # an unusable version is a config error, at load (tests/test_config.py), never at package time


def test_pip_argv_for_arm64_and_each_runtimes_glibc(tmp_path: Path) -> None:
    argv = pip_argv(Target("3.13", "arm64"), ("datasette", "mangum"), tmp_path)
    assert argv[:6] == [sys.executable, "-m", "pip", "install", "--target", str(tmp_path)]
    platforms = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--platform"]
    assert platforms[0] == "manylinux_2_34_aarch64" and platforms[-1] == "manylinux2014_aarch64"
    assert "manylinux_2_17_aarch64" in platforms and not any("x86_64" in p for p in platforms)
    for option in ("--implementation cp", "--python-version 3.13"):
        assert option in " ".join(argv)
    assert {"--only-binary=:all:", "--no-compile"} <= set(argv)
    assert argv[-2:] == ["datasette", "mangum"]
    assert platform_tags(Target("3.11", "x86_64"))[0] == "manylinux_2_26_x86_64"
    assert platform_tags(Target("3.11", "x86_64"))[-3:] == (
        "manylinux_2_6_x86_64",
        "manylinux_2_5_x86_64",
        "manylinux2014_x86_64",
    )
    assert platform_tags(Target("3.12", "x86_64"))[0] == "manylinux_2_34_x86_64"


def test_pip_failure_messages() -> None:
    target = Target("3.13", "arm64")
    some = "ERROR: Could not find a version that satisfies the requirement datasette-vega==9 (from versions: 0.1, 0.2)\n"
    assert pip_failure(some, target) == (
        "cannot install 'datasette-vega==9' for Python 3.13 on manylinux aarch64 (Lambda python3.13, arm64):"
        " no version matches; versions with a wheel for this platform: 0.1, 0.2"
    )
    conflict = (
        "ERROR: Cannot install a and b because these package versions have conflicting dependencies.\n\n"
        "The conflict is caused by:\n    a 1.0 depends on c==1\n    b 2.0 depends on c==2\n\nTo fix this...\n"
    )
    assert pip_failure(conflict, target) == (
        "cannot install the dependencies together for Python 3.13 on manylinux aarch64 (Lambda python3.13,"
        " arm64): a 1.0 depends on c==1; b 2.0 depends on c==2"
    )
    assert pip_failure("WARNING: x\nERROR: something else broke\n", target).endswith(": something else broke")


def test_a_plugin_that_does_not_exist_is_one_clear_error(tmp_path: Path) -> None:
    files = {**PROJECT, CONFIG: PROJECT[CONFIG].replace(PLUGIN, "datasette-this-plugin-does-not-exist-xyz")}
    config_path = write_project(tmp_path, files)
    result = CliRunner().invoke(cli, ["package", "-c", str(config_path), "--json"])
    assert result.exit_code == 1
    message = (
        "cannot install 'datasette-this-plugin-does-not-exist-xyz' for Python 3.13 on manylinux x86_64"
        " (Lambda python3.13, x86_64): pip found no wheel for it. Either no package has that name on the"
        " index, or it publishes no binary wheel for this platform and Python (source distributions cannot"
        " be built for Lambda here); check the name, or change lambda.python or lambda.architecture"
    )
    assert f"Error: {config_path}: {message}\n" in result.stderr
    assert json.loads(result.stdout) == {"error": message, "file": str(config_path), "line": None}
    package_dir = tmp_path / ".datasette-lambda" / "package"
    assert [p.name for p in package_dir.iterdir()] == []  # no half-made layer left behind


def test_a_missing_static_directory_stops_before_pip(tmp_path: Path) -> None:
    files = {k: v for k, v in PROJECT.items() if not k.startswith("static/")}
    config_path = write_project(tmp_path, files)
    result = CliRunner().invoke(cli, ["package", "-c", str(config_path)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {config_path}:13: datasette.static.assets: directory 'static' not found (looked in {tmp_path})\n"
    )
    assert not (tmp_path / ".datasette-lambda").exists()


# -- the command line ------------------------------------------------------------------------------


def test_cli_package_json(packaged: Packaged, tmp_path: Path) -> None:
    config_path = copy_project(packaged, tmp_path)
    result = CliRunner().invoke(cli, ["package", "-c", str(config_path), "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {
        "artifacts",
        "handler",
        "python",
        "architecture",
        "compiled",
        "requirements",
        "sqlite",
        "python_path",
        "manifest",
        "ephemeral_storage",
        "databases",
        "warnings",
        "build",
        "seconds",
    }
    layer, function = data["artifacts"]
    assert (layer["role"], function["role"]) == ("layer", "function")
    for artifact, expected in ((layer, packaged.result.layer), (function, packaged.result.function)):
        assert set(artifact) == {
            "role",
            "path",
            "directory",
            "sha256",
            "zipped_size",
            "unzipped_size",
            "reused",
        }
        assert (artifact["sha256"], artifact["zipped_size"], artifact["unzipped_size"]) == (
            expected.sha256,
            expected.zipped_size,
            expected.unzipped_size,
        )
        assert Path(artifact["path"]).name == f"{artifact['role']}-{artifact['sha256']}.zip"
    assert layer["reused"] is True
    assert data["handler"] == "datasette_action_entrypoint.handler.handler"
    assert (data["python"], data["architecture"], data["ephemeral_storage"]) == ("3.13", "x86_64", 512)
    assert [(d["name"], d["location"]) for d in data["databases"]] == [
        ("census", "bundle"),
        ("places", "bundle"),
    ]
    # the SQLite the site will run, read from the layer; the build ran the same
    assert data["sqlite"] == {"binding": "sqlean.py", "binding_version": "3.50.4.5", "version": "3.50.4"}
    assert data["sqlite"]["version"] == sqlite3.sqlite_version
    assert "requirements" in data and "sqlean.py==3.50.4.5" in data["requirements"]
    assert "Packaged for Lambda python3.13 x86_64" in result.stderr
    assert "  sqlite    SQLite 3.50.4 (sqlean.py 3.50.4.5, in the layer)\n" in result.stderr
    assert "dependencies unchanged: reusing layer-" in result.stderr


def test_cli_package_json_shows_a_database_too_large_to_download_through_lambda(
    packaged: Packaged, tmp_path: Path
) -> None:
    """A database over DOWNLOAD_LIMIT stays in the function code and gets an S3 key (deploy uploads
    it there; its download redirects to it): `package --json` says so, the manifest records it."""
    import sqlite3 as stdlib_sqlite3

    config_path = copy_project(packaged, tmp_path)
    with stdlib_sqlite3.connect(config_path.parent / "data" / "big.db") as conn:
        conn.execute("create table blobs (b blob)")
        conn.execute("insert into blobs values (zeroblob(?))", (DOWNLOAD_LIMIT,))
    conn.close()
    config = config_path.read_text().replace("databases:\n", "databases:\n  big:\n    file: data/big.db\n", 1)
    config_path.write_text(config)
    result = CliRunner().invoke(cli, ["package", "-c", str(config_path), "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    placed = {d["name"]: d for d in data["databases"]}
    big = placed["big"]
    assert big["size"] > DOWNLOAD_LIMIT
    assert (big["location"], big["s3_key"]) == ("bundle", f"databases/{big['sha256']}/big.db")
    assert big["reason"].endswith(
        "; its download is over the 4.5 MB a Lambda response can carry: it redirects to a copy uploaded to S3"
    )
    assert [placed[name]["s3_key"] for name in ("census", "places")] == [None, None]
    manifest_path = Path(data["manifest"])
    (entry,) = [d for d in load_manifest(manifest_path).databases if d.name == "big"]
    assert (entry.location, entry.s3_key, entry.sha256) == ("bundle", big["s3_key"], big["sha256"])
    assert (manifest_path.parent / "databases" / "big.db").stat().st_size == big["size"]


def test_a_full_disk_while_packaging_leaves_the_last_bundle_whole(packaged: Packaged, tmp_path: Path) -> None:
    """The function zip cannot be written (a real EFBIG, as on a full disk): a clean error, no
    half-written zip, and app/ and the zips exactly as the last package left them."""
    import random
    import resource
    import signal

    from datasette_action.errors import DiskFullError

    config_path = copy_project(packaged, tmp_path)
    package_dir = config_path.parent / ".datasette-lambda" / "package"
    rng = random.Random(5)
    with (config_path.parent / "data" / "cities.csv").open("a") as f:  # ~600 KB, hard to compress
        f.writelines(f"{rng.getrandbits(2400):x},XX\n" for _ in range(2000))
    config = load_config(config_path)
    built = build(config)
    before = {
        p.relative_to(package_dir): p.stat().st_mtime_ns
        for p in package_dir.rglob("*")
        if "deps-" not in str(p)
    }
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, hard))
    try:
        with pytest.raises(DiskFullError) as info:
            package(config, built)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert str(info.value) == (
        f"could not write the Lambda bundle in {package_dir} (File too large); free some space"
        " there (or check that it is writable), or set build_dir to a disk with room. The earlier"
        " output there is as it was."
    )
    after = {
        p.relative_to(package_dir): p.stat().st_mtime_ns
        for p in package_dir.rglob("*")
        if "deps-" not in str(p)
    }
    assert after == before  # no .function-writing.zip, no .app- scratch, app/ untouched
    assert (
        load_manifest(package_dir / "app" / "manifest.json").inspect_data
        == load_manifest(packaged.result.manifest).inspect_data
    )
