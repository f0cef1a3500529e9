"""The tiny study, built once for every test of the pipeline folder that reads it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dfrobust.config import study_config
from dfrobust.pipeline import reproduce


@pytest.fixture(scope="session")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny study, run once for the session; tests read it and never change it."""
    run = tmp_path_factory.mktemp("run") / "tiny"
    reproduce(study_config("tiny"), run, device="cpu")
    return run


@pytest.fixture
def tiny_run(built_run: Path, tmp_path: Path) -> Path:
    """A private copy of the built run, for a test that reruns or changes it."""
    return Path(shutil.copytree(built_run, tmp_path / "tiny"))
