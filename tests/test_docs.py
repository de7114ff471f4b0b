"""The documentation stays true: every config key documented (both ways), every cited script present, the
README small, and the documented commands that run in seconds run."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ssl_pretrain.config import _FIXED_SECTIONS, DEPRECATED_KEYS, FLAT_UNLABELED_KEYS, _TopLevel
from ssl_pretrain.options import option_signature
from ssl_pretrain.registry import ENCODERS, TASKS

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md"))
FILE_SUFFIXES = {"json", "pt", "yaml", "md", "py", "png", "txt", "tar"}
KEY = re.compile(r"`([a-z_]+)\.([a-z0-9_]+)(?=[`=\[ ])")


def _docs_text() -> str:
    return "\n".join(path.read_text() for path in DOCS)


def _renamed_keys() -> set[str]:
    """Old names the docs may mention as renamed."""
    return set(DEPRECATED_KEYS) | {f"finetune.{key}" for key in FLAT_UNLABELED_KEYS}


def _validator_keys() -> set[str]:
    keys = {f"{section}.{f.name}" for section, cls in _FIXED_SECTIONS.items() for f in dataclasses.fields(cls)}
    return keys | {"model.backbone", "task.name"}


def test_every_config_key_of_the_validator_is_documented():
    documented = {f"{a}.{b}" for a, b in KEY.findall(_docs_text())}
    missing = sorted(_validator_keys() - documented)
    assert not missing, f"config keys missing from docs/: {missing}"
    text = (REPO / "docs" / "configuration.md").read_text()
    for field in dataclasses.fields(_TopLevel):
        assert f"`{field.name}`" in text, field.name


def test_every_option_of_every_semi_supervised_method_is_documented():
    from ssl_pretrain.registry import UNLABELED_METHODS

    text = _docs_text()
    options = {f"finetune.unlabeled.{name}" for cls in UNLABELED_METHODS.values() for name in option_signature(cls)}
    assert options and not {key for key in options if f"`{key}`" not in text}, options


def test_every_documented_key_exists():
    sections = set(_FIXED_SECTIONS)
    task_options = {name for task in TASKS.values() for name in option_signature(task)} | {"name"}
    model_options = {name for factory in ENCODERS.values() for name in option_signature(factory)} | {"backbone"}
    unknown = []
    for section, key in set(KEY.findall(_docs_text())):
        name = f"{section}.{key}"
        if key in FILE_SUFFIXES:  # probe.json, encoder.pt: files, not keys
            continue
        if section in sections and name not in _validator_keys() and name not in _renamed_keys():
            unknown.append(name)
        elif section == "task" and key not in task_options:
            unknown.append(name)
        elif section == "model" and key not in model_options:
            unknown.append(name)
    assert not unknown, f"docs/ mention keys the validator does not know: {sorted(unknown)}"


def test_every_script_the_readme_and_results_cite_exists():
    cited = set()
    for path in [REPO / "README.md", REPO / "benchmarks" / "RESULTS.md", *DOCS]:
        cited |= set(re.findall(r"((?:benchmarks|examples)/[a-z_]+\.py)", path.read_text()))
    missing = sorted(c for c in cited if not (REPO / c).is_file())
    assert cited and not missing, f"cited but missing: {missing}"


def test_the_readme_is_an_entrance_and_links_resolve():
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= 12 * 1024, "README.md over 12 KB: move reference to docs/"
    for page in ("docs/configuration.md", "docs/tasks.md", "docs/evaluation.md", "docs/api.md"):
        assert page in readme, page
    for path in [REPO / "README.md", *DOCS]:
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", path.read_text()):
            assert (path.parent / target).is_file(), f"{path.name} links to missing {target}"


def _runnable_blocks() -> list[tuple[str, str]]:
    """Code blocks preceded by ``<!-- docs-test -->``: run by the test (commands that take seconds)."""
    blocks = []
    for path in [REPO / "README.md", *DOCS]:
        for match in re.finditer(r"<!-- docs-test -->\s*```(\w+)\n(.*?)```", path.read_text(), re.S):
            blocks.append((f"{path.name}:{match.group(1)}", match.group(2)))
    return blocks


@pytest.mark.parametrize("where, code", _runnable_blocks(), ids=[b[0] for b in _runnable_blocks()])
def test_documented_commands_run(where, code, tmp_path, fashion_mnist_root):
    """Each block runs in a fresh directory holding the repository's configs; Fashion-MNIST is Debian's where
    installed, else a tiny stand-in in the data cache (``SSL_PRETRAIN_DATA``)."""
    (tmp_path / "configs").symlink_to(REPO / "configs")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "fashion_mnist").symlink_to(fashion_mnist_root)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "SSL_PRETRAIN_DATA": str(tmp_path / "cache")}
    if where.endswith(":python"):
        command = [sys.executable, "-c", code]
    else:
        command = ["bash", "-euo", "pipefail", "-c", code]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, f"{where}:\n{code}\n{done.stderr[-2000:]}"
