"""`datasette-lambda init`: what it finds, the config it writes (which loads and builds as it is),
the workflows (GitHub's schema and zizmor on them), .gitignore, and never overwriting."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from workflow_checks import assert_valid_workflows

from datasette_action import __version__, config, init, pipeline
from datasette_action.cli import cli
from datasette_action.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(cli, ["init", *args])  # CliRunner's stdin is not a terminal: no prompts
    return done.exit_code, done.stderr


def built_tables(root: Path) -> dict[str, dict[str, list[str]]]:
    """Each built database's tables and their primary keys."""
    built = pipeline.build(load_config(root / "datasette-lambda.yml"))
    result: dict[str, dict[str, list[str]]] = {}
    for path in sorted((root / ".datasette-lambda" / "databases").glob("*.db")):
        with sqlite3.connect(path) as db:
            names = [
                row[0]
                for row in db.execute("select name from sqlite_master where type='table' order by name")
            ]
            result[path.stem] = {
                name: [row[1] for row in db.execute(f"pragma table_info([{name}])") if row[5]]
                for name in names
            }
        db.close()
    assert built.result is not None
    return result


@pytest.fixture
def example(tmp_path: Path) -> Path:
    root = tmp_path / "census-site"
    shutil.copytree(ROOT / "example" / "data", root / "data")
    return root


def test_the_workflows_are_the_actions_examples_verbatim() -> None:
    for name, text in init.EXAMPLE_WORKFLOWS.items():
        example = (ROOT / "examples" / "workflows" / name).read_text(encoding="utf-8")
        assert text == example, (
            f"copy examples/workflows/{name} into EXAMPLE_WORKFLOWS in datasette_action/init.py"
        )
    assert sorted(init.EXAMPLE_WORKFLOWS) == sorted(
        p.name for p in (ROOT / "examples" / "workflows").glob("*.yml")
    )


def test_init_on_the_example_data_then_build(example: Path) -> None:
    code, err = run("--dir", str(example))
    assert code == 0, err
    assert err.splitlines() == [
        f"Found 3 data files in {example}",
        "  database census-site: tables counties, landmarks, states",
        "wrote datasette-lambda.yml",
        "wrote .github/workflows/publish.yml",
        "wrote .github/workflows/pr-plan.yml",
        "wrote .gitignore (/.datasette-lambda/)",
        "Next: datasette-lambda build, then datasette-lambda serve to see the site; then",
        "datasette-lambda setup-github --repo OWNER/NAME for the AWS roles the workflows use.",
    ]
    text = (example / "datasette-lambda.yml").read_text()
    assert text.splitlines()[3:12] == [
        "stack: census-site                          # CloudFormation stack name",
        "region: us-east-1                           # AWS region",
        "databases:",
        "  census-site:",
        "    tables:",
        "      counties:",
        "        source: data/counties.csv",
        "        pk: fips                            # detected: no value missing or repeated in 9 records",
        "        # format:                           # none: from each file's extension",
    ]
    loaded = load_config(example / "datasette-lambda.yml")
    assert (loaded.stack, loaded.region, loaded.deploy.frontend) == (
        "census-site",
        "us-east-1",
        "function_url",
    )
    assert built_tables(example) == {
        "census-site": {"counties": ["fips"], "landmarks": ["id"], "states": ["code"]}
    }
    assert (example / ".gitignore").read_text() == "# datasette-lambda's build output\n/.datasette-lambda/\n"


def test_every_config_key_is_written_or_commented_out(example: Path) -> None:
    with sqlite3.connect(example / "data" / "old.db") as db:
        db.execute("create table t (a)")
    db.close()
    assert run("--dir", str(example))[0] == 0
    text = (example / "datasette-lambda.yml").read_text()
    keys = {key.name for keys in config.SECTIONS.values() for key in keys}
    assert sorted(key for key in keys if f"{key}:" not in text) == []
    # Uncommenting every key shown with a default loads, to the same config.
    path = example / "all.yml"
    path.write_text(_uncomment_defaults(text))
    assert text.count("\n  # ") > 10 and path.read_text().count("\n  # ") < text.count("\n  # ")
    assert _comparable(load_config(path)) == _comparable(load_config(example / "datasette-lambda.yml"))


def _comparable(loaded: config.Config) -> tuple[object, ...]:
    tables = [
        (
            db.name,
            db.file,
            t.name,
            t.source,
            t.format,
            t.encoding,
            t.pk,
            t.types,
            t.fts,
            t.indexes,
            t.foreign_keys,
        )
        for db in loaded.databases
        for t in db.tables
    ]
    files = [(db.name, db.file, db.sql) for db in loaded.databases]
    return (
        loaded.stack,
        loaded.region,
        tables,
        files,
        loaded.datasette,
        loaded.lambda_,
        loaded.deploy,
        loaded.build_dir,
    )


def _uncomment_defaults(text: str) -> str:
    """The config with every commented-out key that shows a value uncommented (and the
    sections holding them)."""
    out = []
    for line in text.splitlines():
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith("# ") and ":" in stripped:
            body = stripped[2:].split(" #", 1)[0].rstrip()
            key, _, value = body.partition(":")
            known = {k.name for keys in config.SECTIONS.values() for k in keys}
            if key in known and (key in ("datasette", "lambda", "deploy") or value.strip()):
                out.append(indent + body)
                continue
        out.append(line)
    return "\n".join(out) + "\n"


def make_repository(root: Path) -> None:
    """Every kind of file, in nested directories, with awkward names, and places never searched."""
    files = {
        "people.csv": "id,name\n1,Ann\n2,Bob\n",
        "Ünïcode names.tsv": "code\tname\nA\tx\nB\ty\n",
        "2024 results.json": json.dumps([{"n": 1, "tag": "a"}, {"n": 1, "tag": "b"}]),
        "sales/2024/jan.csv": "name,amount\nx,1\ny,2\n",
        "sales/2024/feb.jsonl": '{"sku": "a", "qty": 1}\n{"sku": "b", "qty": 1}\n',
        "sales/sqlite_stats.csv": "k,v\n1,a\n1,b\n",
        "sales/_internal.csv": "empty\n\n",
        "_internal/x.csv": "a\n1\n",
        "package.json": json.dumps({"name": "not data"}),
        "bad.csv": "a,b\n1\n",
        "dupes.csv": "a,b\n1,\n1,x\n",
        "copy [1].csv": "id\n1.5\n1.50\n",
        ".venv/pyvenv.cfg": "",
        ".venv/lib/x.csv": "a\n1\n",
        "venv2/pyvenv.cfg": "",
        "venv2/lib/y.csv": "a\n1\n",
        "node_modules/pkg/z.csv": "a\n1\n",
        ".git/objects/w.csv": "a\n1\n",
        ".datasette-lambda/databases/old.csv": "a\n1\n",
        "empty.jsonl": "",
    }
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content, encoding="utf-8")
    with sqlite3.connect(root / "legacy.sqlite") as db:
        db.execute("create table things (id integer primary key, name text)")
    db.close()
    (root / "fake.db").write_text("not sqlite")


def test_init_then_build_on_every_kind_of_file(tmp_path: Path) -> None:
    root = tmp_path / "1st Repo"
    make_repository(root)
    code, err = run("--dir", str(root), "--stack", "my-data", "--no-workflows")
    assert code == 0, err
    assert err.splitlines() == [
        f"Found 11 data files in {root}",
        "  database 1st_Repo: tables 2024_results, copy_1, dupes, people, Ünïcode_names",
        "  database internal: tables x",
        "  database sales: tables 2024_feb, 2024_jan, internal, t_sqlite_stats",
        "  database legacy: legacy.sqlite",
        "  left out bad.csv: expected 2 fields, as in the header, but found 1; check for a missing or extra"
        " delimiter or an unclosed quote",
        "  left out empty.jsonl: the file is empty; give it one JSON object per line",
        "  left out fake.db: not a SQLite database (its header says otherwise)",
        "  left out package.json: expected a JSON array of objects ([{...}, ...]), found an object; for one"
        " object per line name the file .jsonl",
        "wrote datasette-lambda.yml",
        "wrote .gitignore (/.datasette-lambda/)",
        "Next: datasette-lambda build, then datasette-lambda serve to see the site; then",
        "datasette-lambda setup-github --repo OWNER/NAME for the AWS roles the workflows use.",
    ]
    assert not (root / ".github").exists()
    # each file is its own table; a key where a column is complete and unique (copy_1's 1.5 and
    # 1.50 are one number to the build; dupes' b is empty in one row)
    assert built_tables(root) == {
        "1st_Repo": {
            "2024_results": ["tag"],
            "copy_1": [],
            "dupes": [],
            "people": ["id"],
            "Ünïcode_names": ["code"],
        },
        "internal": {"x": ["a"]},
        "legacy": {"things": ["id"]},
        "sales": {"2024_feb": ["sku"], "2024_jan": ["name"], "internal": [], "t_sqlite_stats": ["v"]},
    }
    text = (root / "datasette-lambda.yml").read_text()
    assert '        source: "copy [[]1].csv"\n' in text  # a glob character, escaped
    assert '  "1st_Repo":\n' in text


def test_the_workflows_pass_githubs_schema_and_zizmor(example: Path) -> None:
    committed, fetched = example / "committed", example / "fetched"
    for root in (committed, fetched):
        shutil.copytree(example / "data", root / "data")
    (fetched / "scripts").mkdir()
    (fetched / "scripts" / "fetch_data.py").write_text("")
    for root in (committed, fetched):
        assert run("--dir", str(root), "--stack", "my-stack", "--region", "eu-west-1")[0] == 0
    workflows = sorted(str(p) for p in example.glob("*/.github/workflows/*.yml"))
    assert len(workflows) == 4
    assert_valid_workflows(workflows)

    publish = yaml.safe_load((committed / ".github/workflows/publish.yml").read_text())
    steps = publish["jobs"]["publish"]["steps"]
    uses = f"{init.ACTION_REPOSITORY}@{init.ACTION_TAG}"
    assert [step.get("name") for step in steps if "uses" not in step] == ["Say what happened"]
    assert next(step for step in steps if step.get("uses") == uses)["with"] == {
        "config": "datasette-lambda.yml",
        "mode": "deploy",
    }
    assert set(publish[True]) == {"push", "workflow_dispatch"}  # YAML 1.1 reads `on` as true
    assert publish["concurrency"]["group"] == "deploy-my-stack"
    assert (
        "aws-region: ${{ vars.AWS_REGION || 'eu-west-1' }}"
        in (committed / ".github/workflows/publish.yml").read_text()
    )
    fetched_publish = yaml.safe_load((fetched / ".github/workflows/publish.yml").read_text())
    assert set(fetched_publish[True]) == {"push", "schedule", "workflow_dispatch"}
    assert "run: python scripts/fetch_data.py" in (fetched / ".github/workflows/pr-plan.yml").read_text()
    assert "fetch_data" not in (committed / ".github/workflows/pr-plan.yml").read_text().split("\nname:")[1]
    assert init.ACTION_TAG == "v" + __version__.split(".")[0]


def test_existing_files_are_kept_unless_force(example: Path) -> None:
    (example / ".gitignore").write_text("*.pyc")
    (example / "datasette-lambda.yml").write_text("mine\n")
    code, err = run("--dir", str(example))
    assert code == 0
    assert err.splitlines()[2:6] == [
        "kept datasette-lambda.yml: it exists (--force overwrites it)",
        "wrote .github/workflows/publish.yml",
        "wrote .github/workflows/pr-plan.yml",
        "updated .gitignore (/.datasette-lambda/)",
    ]
    assert (example / "datasette-lambda.yml").read_text() == "mine\n"
    assert (
        example / ".gitignore"
    ).read_text() == "*.pyc\n# datasette-lambda's build output\n/.datasette-lambda/\n"
    code, err = run("--dir", str(example), "--force")
    assert err.splitlines()[2:6] == [
        "overwrote datasette-lambda.yml",
        "overwrote .github/workflows/publish.yml",
        "overwrote .github/workflows/pr-plan.yml",
        "unchanged .gitignore",
    ]
    assert load_config(example / "datasette-lambda.yml").stack == "census-site"


@pytest.mark.parametrize(
    ("lines", "listed"),
    [
        ("/.datasette-lambda/", True),
        (".datasette-lambda", True),
        ("  .datasette-lambda/ ", True),
        ("x", False),
    ],
)
def test_gitignore_entry(lines: str, listed: bool) -> None:
    assert (init.gitignore_text(lines) is None) == listed
    assert init.gitignore_text(None) == "# datasette-lambda's build output\n/.datasette-lambda/\n"


def test_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "package.json").write_text("{}")
    assert run("--dir", str(tmp_path)) == (
        1,
        f"Error: no data files found in {tmp_path} (1 left out: package.json: expected a JSON array of objects ([{{...}}, ...]), found an object; for"
        " one object per line name the file .jsonl); init looks for"
        " .csv, .tsv, .json, .jsonl, .ndjson and SQLite (.db, .sqlite, .sqlite3) files\n",
    )
    assert run("--dir", str(tmp_path / "notes.txt")) == (
        1,
        f"Error: {tmp_path / 'notes.txt'} is not a directory; pass --dir a directory holding the data\n",
    )
    (tmp_path / "a.csv").write_text("a\n1\n")
    assert run("--dir", str(tmp_path), "--stack", "1x") == (
        1,
        "Error: '1x' is not a valid CloudFormation stack name; use letters, digits and hyphens,"
        " starting with a letter, at most 128 characters\n",
    )
    assert run("--dir", str(tmp_path), "--stack", "s", "--region", "us-easst-1") == (
        1,
        "Error: 'us-easst-1' is not an AWS region; did you mean 'us-east-1'?\n",
    )
    assert run(
        "--dir", str(tmp_path), "--stack", "s", "--region", "ca-west-1", "--frontend", "function_url"
    ) == (
        1,
        "Error: AWS offers no Lambda function URLs in ca-west-1, and --frontend is function_url (the"
        " default); use `--frontend http_api` there (an API Gateway HTTP API in front of the function)\n",
    )
    assert not (tmp_path / "datasette-lambda.yml").exists()


def test_a_region_without_function_urls_gets_http_api(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("a\n1\n")
    assert run("--dir", str(tmp_path), "--stack", "s", "--region", "ca-west-1", "--no-workflows")[0] == 0
    text = (tmp_path / "datasette-lambda.yml").read_text()
    assert "deploy:                                     # the deploy section\n  frontend: http_api" in text
    assert load_config(tmp_path / "datasette-lambda.yml").deploy.frontend == "http_api"


def test_the_frontend_choices_are_the_configs() -> None:
    option = next(p for p in cli.commands["init"].params if p.name == "frontend")
    assert tuple(option.type.choices) == config.FRONTENDS  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "stack"),
    [
        ("my data", "my-data"),
        ("Données_2024", "donnees-2024"),
        ("2024", "site-2024"),
        ("日本", "datasette-site"),
    ],
)
def test_default_stack(tmp_path: Path, name: str, stack: str) -> None:
    (tmp_path / name).mkdir()
    assert init.default_stack(tmp_path / name) == stack
    assert config.stack_name_problem(stack) is None


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("plain", "plain"),
        (".datasette-lambda", ".datasette-lambda"),
        ("3.13", '"3.13"'),
        ("yes", '"yes"'),
        (".inf", '".inf"'),
        ("a b", '"a b"'),
        ("é", '"é"'),
        ("a: b", '"a: b"'),
        ('q"\n', '"q\\"\\n"'),
    ],
)
def test_scalar_reads_back_as_the_string(text: str, written: str) -> None:
    assert init.scalar(text) == written
    assert yaml.safe_load(f"k: {written}") == {"k": text}


def test_pk_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def detect(name: str, content: str) -> tuple[str | None, str]:
        (tmp_path / name).write_text(content)
        return init.detect_pk(tmp_path / name, name)

    assert detect("a.csv", "x,id\n1,a\n2,b\n") == (
        "id",
        "detected: no value missing or repeated in 2 records",
    )
    assert detect("b.csv", "x,y\n1,a\n1,b\n") == (
        "y",
        "detected: no value missing or repeated in 2 records",
    )
    assert detect("c.csv", "x\n1\n01\n") == (
        None,
        "none detected: each of the first 1 columns is empty, repeats a value or holds fractional numbers",
    )
    assert detect("d.csv", "x,y\n") == (None, "none detected: the file has no records")
    # A unique measurement is no key; an identifier's name beats being first.
    assert detect("m.tsv", "temperature\tstation\tday\n21.5\ta\t1\n19.0\tb\t2\n")[0] == "station"
    assert detect("n.jsonl", '{"t": 1.5}\n{"t": 2.25}\n')[0] is None
    assert detect("o.csv", "name,city_id,x\nLyon,7,1\nNantes,9,2\n")[0] == "city_id"
    assert detect("p.csv", "name,Code\nLyon,LY\nNantes,NA\n")[0] == "Code"
    assert detect("q.csv", "name,cityId\nLyon,7\nNantes,9\n")[0] == "cityId"
    assert detect("r.csv", "name,valid\nLyon,1\nNantes,2\n")[0] == "name"  # `valid` is no `id`
    assert detect("e.jsonl", '{"x": 1, "y": [1]}\n{"x": 1.0, "y": [2]}\n')[0] is None
    assert detect("f.jsonl", '{"x": 1}\n{"y": 2}\n')[0] is None
    assert detect("g.csv", "a,b,c,d,e,f\n1,1,1,1,1,1\n1,1,1,1,1,2\n")[0] is None  # f is past PK_COLUMNS
    monkeypatch.setattr(init, "PK_MAX_ROWS", 2)
    assert detect("h.csv", "x\n1\n2\n3\n") == (
        None,
        "not detected: the file has more than 2 records to check",
    )
    assert detect("i.csv", "x\n1\n2\n")[0] == "x"


def test_the_docs_show_inits_real_output_on_the_example_data(tmp_path: Path) -> None:
    """docs/init.md's "On the example data": the console block is what init prints in a directory
    `census` holding example/data/ (the directory shown as /home/me/census), and the YAML block is
    how the config it writes begins."""
    docs = (ROOT / "docs" / "init.md").read_text(encoding="utf-8").split("## On the example data", 1)[1]
    console, config = re.findall(r"```(?:console|yaml)\n(.*?)```", docs, flags=re.DOTALL)[:2]
    root = tmp_path / "census"
    shutil.copytree(ROOT / "example" / "data", root / "data")
    code, err = run("--dir", str(root))
    assert code == 0, err
    assert console.splitlines() == [
        "$ datasette-lambda init < /dev/null",
        *err.replace(str(root), "/home/me/census").splitlines(),
    ]
    written = (root / "datasette-lambda.yml").read_text(encoding="utf-8").splitlines()
    assert config.splitlines() == written[: len(config.splitlines())]
