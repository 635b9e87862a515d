"""The documentation: the site builds with --strict, the configuration reference is generated from
the schema with every key described, every citation in the repository points at a page and section
that exist, presets run one way everywhere, and the numbers the docs quote are what the code
and `nwt plan` give."""

from __future__ import annotations

import importlib.util
import itertools
import re
import subprocess
import sys
from pathlib import Path

from helpers.runs import REPO, SCHEMA
from markdown.extensions.toc import slugify

from nowrongturns.cli.cost import plan
from nowrongturns.config import expand_runs, load_config, validate_config
from nowrongturns.config.sizes import planned_trajectory
from nowrongturns.measure.stats import COLUMNS

DOCS = REPO / "docs"
# Where the repository's own files may cite the docs (and must not cite what is not there).
CITING = ["src", "workflow", "tests", "benchmarks", "configs", "examples", "docs"]
CITING_FILES = [
    "README.md",
    "Snakefile",
    "config.yaml",
    "Makefile",
    "mkdocs.yml",
    "results/README.md",
]


def _hook():
    spec = importlib.util.spec_from_file_location(
        "config_reference", DOCS / "hooks/config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_schema_key_has_a_description():
    hook = _hook()
    assert hook.undocumented_keys(hook.load_schema(SCHEMA)) == []


def test_the_config_reference_holds_every_key_of_the_schema():
    hook = _hook()
    schema = hook.load_schema(SCHEMA)
    reference = hook.reference(schema)
    for path, _ in hook.keys(schema):
        assert f"| `{path}` |" in reference or f"## `{path}`" in reference, path
    assert "<!-- CONFIG_REFERENCE -->" in (DOCS / "config.md").read_text()


def test_mkdocs_build_strict(tmp_path):
    """A broken link or anchor, a missing page or a docstring mkdocstrings cannot read fails."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)},
    )
    assert result.returncode == 0, result.stderr
    reference = (tmp_path / "config/index.html").read_text()
    assert "base.checkpoint.every" in reference and "max_checkpoint_gb" in reference


def test_the_readme_is_a_landing_page():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


def _files():
    for folder in CITING:
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".md", ".smk", ".yaml", ".yml", ".rst"}:
                yield path
    for name in CITING_FILES:
        yield REPO / name


def _anchors(page: Path) -> set[str]:
    """The ids of a page's headings, as MkDocs makes them (an explicit {#id} wins)."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE):
        explicit = re.search(r"\{#([\w-]+)\}\s*$", heading)
        anchors.add(explicit.group(1) if explicit else slugify(heading.replace("`", ""), "-"))
    return anchors


def test_citations_point_at_pages_and_sections_in_the_repository():
    for path in _files():
        text = path.read_text()
        where = path.relative_to(REPO)
        assert not re.search(r"DESIGN(?:\.md|\s+section)", text), f"{where} cites a design file"
        for page, anchor in re.findall(r"\bdocs/([\w-]+\.md)(?:#([\w-]+))?", text):
            assert (DOCS / page).is_file(), f"{where} cites docs/{page}"
            if anchor and page != "config.md":  # config.md's sections are generated
                assert anchor in _anchors(DOCS / page), f"{where} cites docs/{page}#{anchor}"


def test_the_design_page_maps_every_module():
    """Its table of the package: a module of a subpackage in the row of its folder, a module of
    the package's top level in a row that names it first."""
    design = (DOCS / "design.md").read_text()
    rows = [line.split("|")[1:3] for line in design.splitlines() if line.startswith("| `")]
    package = REPO / "src/nowrongturns"
    for module in sorted(package.rglob("*.py")):
        relative = module.relative_to(package)
        if module.name in ("__init__.py", "__main__.py"):
            continue
        if len(relative.parts) == 1:
            mapped = any(f"`{module.name}`" in first for first, _ in rows)
        else:
            folder = f"`{relative.parts[0]}/`"
            mapped = any(folder in first and f"`{module.name}`" in held for first, held in rows)
        assert mapped, f"docs/design.md does not map {relative}"


def _commands(text: str) -> list[str]:
    """Shell lines, with their backslash continuations joined."""
    return re.sub(r"\\\n\s*", " ", text).splitlines()


def test_a_preset_is_run_the_same_way_everywhere():
    pages = [REPO / "README.md", REPO / "configs/README.md", *DOCS.glob("*.md")]
    for page in pages:
        for line in _commands(page.read_text()):
            if re.search(r"--configfile\s+configs/", line):
                assert "--replace-workflow-config" in line, f"{page.name}: {line.strip()}"


def _preset_plan(preset: str):
    config = validate_config(load_config(str(REPO / f"configs/{preset}.yaml"), "preset"), SCHEMA)
    return plan(config)


def _table(text: str, header: str) -> list[list[str]]:
    lines = text[text.index(header) :].splitlines()[2:]
    table = itertools.takewhile(lambda line: line.startswith("|"), lines)
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table]


def test_the_presets_numbers_are_what_nwt_plan_prints():
    text = (REPO / "configs/README.md").read_text()
    rows = _table(text, "| preset | runs | base run: steps")
    presets = sorted(path.stem for path in (REPO / "configs").glob("*.yaml"))
    assert sorted(row[0] for row in rows) == presets
    for name, *quoted in rows:
        table = _preset_plan(name)
        base = table.loc["base"]
        measured = table["measure_passes"].sum() / table["train_passes"].sum()
        expected = [
            str(len(table)),
            f"{int(base['steps']):,}",
            f"{int(base['checkpoints']):,}",
            f"{int(base['parameters']):,}",
            f"{base['checkpoint_gb']:.3g}",
            f"{int(table['train_passes'].sum()):,}",
            f"{measured:.3f}",
            f"{table['checkpoint_gb'].sum():.3g}",
        ]
        assert quoted == expected, name


def test_the_numbers_the_pages_quote_are_what_the_code_gives():
    cluster = (DOCS / "cluster.md").read_text()
    ratio = _preset_plan("paper-cifar10-resnet18").loc["base", "measure/train"]
    assert f"the base run's measure stage is {ratio:.3f} of its" in cluster
    # resnet18 at width_multiplier 2 on CIFAR, the reference's resnet18_2_cifar
    wide = {"task": "cifar10", "model": "resnet18", "width_multiplier": 2}
    config = {"base": wide, "data": {"cifar10": "/path/to/cifar10"}}
    run = expand_runs(validate_config(config, SCHEMA))["base"]
    parameters = planned_trajectory(run)["parameters"]
    assert (
        f"`resnet18_2_cifar`, {parameters:,} parameters"
        in (DOCS / "training-recipes.md").read_text()
    )


def test_the_geometry_columns_are_the_documented_ones():
    formats = (DOCS / "formats.md").read_text()
    section = formats[formats.index("## geometry.parquet") : formats.index("## The other tables")]
    first_cells = [row.split("|")[1] for row in section.splitlines() if row.startswith("| `")]
    assert re.findall(r"`(\w+)`", " ".join(first_cells)) == COLUMNS
