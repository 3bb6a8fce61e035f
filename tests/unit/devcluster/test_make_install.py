"""``make install``'s two environments, made by the Makefile in a folder of the test's own with
a stand-in Python (it makes a venv, or half of one, and logs what pip is asked to do).

A fresh Debian has python3 without python3-venv: ``python3 -m venv`` left bin/python and no
pip, and every later make took that for a made environment. MLServer 1.7.1 runs on no
Python above 3.12, and an environment made by another Python stayed when PYTHON changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
IMAGE_LOCK = Path("hack/images/mlserver-sklearn/requirements.txt")

STUB_PYTHON = """\
#!{python}
import os, sys
from pathlib import Path

VERSION = "{version}"
args = sys.argv[1:]


def log(line: str) -> None:
    with open(os.environ["STUB_PYTHON_LOG"], "a") as handle:
        handle.write(line + "\\n")


if args[0] == "-c":
    print(VERSION)
elif args[:2] == ["-m", "venv"]:
    folder = Path(args[2]) / "bin"
    folder.mkdir(parents=True)
    (folder / "python").write_text(Path(__file__).read_text())
    (folder / "python").chmod(0o755)
    log(f"venv {{args[2]}} {{VERSION}}")
    if os.environ.get("STUB_NO_ENSUREPIP"):
        sys.exit("The virtual environment was not created successfully because ensurepip is "
                 "not available. On Debian/Ubuntu systems, you need to install the python3-venv "
                 "package")
    (folder / "pip").write_text("#!/bin/sh\\n")
    (folder / "pip").chmod(0o755)
elif args[:2] == ["-m", "pip"]:
    pins = [Path(args[i + 1]).read_text().split() for i, a in enumerate(args) if a == "-c"]
    venv = Path(sys.argv[0]).parent.parent.name
    log(f"pip {{venv}} {{' '.join(args[2:])}} constraints={{pins}}")
else:
    sys.exit(f"stub python: {{args}}")
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The Makefile, a pyproject.toml and the image's lock, as make install reads them."""
    folder = tmp_path / "checkout"
    (folder / IMAGE_LOCK).parent.mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", folder)
    shutil.copy(ROOT / IMAGE_LOCK, folder / IMAGE_LOCK)
    (folder / "pyproject.toml").write_text("[project]\nname = 'stub'\n")
    return folder


def _python(tmp_path: Path, version: str) -> Path:
    stub = tmp_path / f"python{version}"
    stub.write_text(STUB_PYTHON.format(python=sys.executable, version=version))
    stub.chmod(0o755)
    return stub


def _make(
    checkout: Path, python: Path, *targets: str, **env: str
) -> subprocess.CompletedProcess[str]:
    log = checkout.parent / "python.log"
    return subprocess.run(
        ["make", "--no-print-directory", f"PYTHON={python}", *targets],
        cwd=checkout,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "STUB_PYTHON_LOG": str(log), **env},
        timeout=60,
    )


def _mlserver_venv_made_by(checkout: Path, tmp_path: Path, version: str) -> None:
    """A .venv-mlserver made earlier by Python ``version`` (its log apart from make's)."""
    subprocess.run(
        [_python(tmp_path, version), "-m", "venv", ".venv-mlserver"],
        cwd=checkout,
        env={"STUB_PYTHON_LOG": str(tmp_path / "made-before.log")},
        check=True,
    )


def _logged(checkout: Path) -> list[str]:
    log = checkout.parent / "python.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_venv_python_could_not_finish_is_removed_and_python3_venv_named(
    checkout: Path, tmp_path: Path
) -> None:
    python = _python(tmp_path, "3.11")
    failed = _make(checkout, python, ".venv/.installed", STUB_NO_ENSUREPIP="1")
    assert failed.returncode != 0
    assert not (checkout / ".venv").exists(), "a venv without pip stayed for the next run"
    assert "apt-get install python3-venv" in failed.stderr
    made = _make(checkout, python, ".venv/.installed")
    assert made.returncode == 0, made.stderr
    assert any(line.startswith("pip .venv install --quiet") for line in _logged(checkout))


def test_the_mlserver_environment_refuses_a_python_mlserver_does_not_run_on(
    checkout: Path, tmp_path: Path
) -> None:
    refused = _make(checkout, _python(tmp_path, "3.13"), ".venv-mlserver/.installed")
    assert refused.returncode != 0
    assert "MLServer 1.7.1 runs on Python 3.11 or 3.12" in refused.stderr
    assert "make PYTHON=python3.12 install (or PYTHON=python3.11)" in refused.stderr
    assert not (checkout / ".venv-mlserver").exists()


def test_the_mlserver_environment_made_by_another_python_is_made_again(
    checkout: Path, tmp_path: Path
) -> None:
    _mlserver_venv_made_by(checkout, tmp_path, "3.13")
    result = _make(checkout, _python(tmp_path, "3.11"), ".venv-mlserver/.installed")
    assert result.returncode == 0, result.stderr
    assert "venv .venv-mlserver 3.11" in _logged(checkout)
    venv_python = checkout / ".venv-mlserver" / "bin" / "python"
    said = subprocess.run(
        [venv_python, "-c", "version"], capture_output=True, text=True, check=True
    ).stdout
    assert said.strip() == "3.11"


def test_an_environment_made_by_a_python_mlserver_runs_on_stays_whatever_python_is_now(
    checkout: Path, tmp_path: Path
) -> None:
    # python3 upgraded to 3.13: any Makefile edit made every make refuse the good venv.
    _mlserver_venv_made_by(checkout, tmp_path, "3.12")
    result = _make(checkout, _python(tmp_path, "3.13"), ".venv-mlserver/.installed")
    assert result.returncode == 0, result.stderr
    assert not any(line.startswith("venv .venv-mlserver") for line in _logged(checkout))


def test_both_environments_install_scikit_learn_at_the_images_version(
    checkout: Path, tmp_path: Path
) -> None:
    """Models trained in .venv are loaded by the image's MLServer, which refuses a pickle
    of a newer scikit-learn: pyproject.toml allows any 1.x."""
    pin = re.search(r"^scikit-learn==\S+$", (ROOT / IMAGE_LOCK).read_text(), re.M)
    assert pin is not None
    result = _make(checkout, _python(tmp_path, "3.11"), "install")
    assert result.returncode == 0, result.stderr
    installs = [line for line in _logged(checkout) if "--upgrade pip" not in line]
    installs = [line for line in installs if line.startswith("pip ")]
    assert sorted(line.split()[1] for line in installs) == [".venv", ".venv-mlserver"]
    for line in installs:
        assert line.endswith(f"constraints={[[pin.group(0)]]}"), line


def test_make_demo_builds_no_mlserver_environment(checkout: Path, tmp_path: Path) -> None:
    """The demo runs MLServer from its image; .venv-mlserver is the integration tests'."""
    planned = _make(checkout, _python(tmp_path, "3.13"), "-n", "demo-builds")
    assert planned.returncode == 0, planned.stderr
    assert "-m pip install" in planned.stdout
    assert ".venv-mlserver" not in planned.stdout
