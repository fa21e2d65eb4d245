"""The architecture doc lives in the repository and the code's references to it point at real sections."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_code_cites_sections_that_exist_in_the_architecture_doc():
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    sections = {m.group(1).strip() for m in re.finditer(r"^#+ (.+)$", doc, re.M)}
    cited = {}
    for path in [*REPO.glob("*/*.py"), *REPO.glob("*/*/*.py"), REPO / "setup.cfg"]:
        if ".venv" in path.parts or "build" in path.parts:
            continue
        for m in re.finditer(r'docs/ARCHITECTURE\.md,? "([^"]+)"', path.read_text()):
            cited[m.group(1)] = path
    assert len(cited) >= 5
    for section, path in cited.items():
        assert any(s.startswith(section) for s in sections), f"{path} cites a missing section {section!r}"
    package_code = [p for d in ("dfx", "engine", "training", "export", "benchmarks") for p in (REPO / d).rglob("*.py")]
    assert not [p for p in package_code if "DESIGN.md" in p.read_text()]  # the old, out-of-repo name


def test_every_readme_command_line_parses():
    """The README's example command lines use options the commands have, with values they accept."""
    import shlex

    import click

    from dfx.benchmarks.cli import main as bench
    from dfx.engine.cli import main as infer
    from dfx.export.cli import main as export
    from dfx.training.cli import main as train

    commands = {"dfx-train": train, "dfx-export": export, "dfx-infer": infer, "dfx-bench": bench}
    seen = set()
    for line in (REPO / "README.md").read_text().splitlines():
        words = shlex.split(line.split("  #")[0]) if line.startswith("dfx-") else []
        if not words or words[0] not in commands:
            continue
        seen.add(words[0])
        try:
            commands[words[0]].make_context(words[0], words[1:])
        except click.UsageError as e:
            assert "does not exist" in str(e), f"{line!r}: {e}"  # a file of the reader's, not a wrong option
    assert seen == set(commands)
