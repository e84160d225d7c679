"""`longctx launch` from a working directory whose name holds a newline: refused with one line, no script, nothing run.

Before: the directory landed in the sbatch comment and ``#SBATCH --chdir`` lines
(quoted, but a newline inside quotes still ends the line), so the rest of the
name ran as a command.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from longctx.launch.launcher_config import LauncherConfig
from longctx.launch.sbatch import SbatchJob
from longctx.launch.shell import ScriptValueError, comment, directive
from tests.launch.conftest import run_launch_cli


@pytest.fixture
def newline_cwd(tmp_path, monkeypatch) -> Path:
    """Chdir into ``<tmp>/job\\ntouch PWNED``; returns that directory."""
    workdir = tmp_path / "job\ntouch PWNED"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


@pytest.mark.parametrize("kind", ["slurm", "local"])
def test_launch_from_a_newline_directory_is_refused(tmp_path, newline_cwd, kind):
    overrides = [f"launcher.output_root={tmp_path / 'jobs'}", "parallel.max_tokens_per_rank=null"]
    code, out, err = run_launch_cli([kind, "--dry-run", *overrides])
    assert code == 2 and out == "", out
    assert err.count("\n") == 1 and "working directory=" in err and "contains a newline" in err, err
    assert not (tmp_path / "jobs").exists() and list(newline_cwd.iterdir()) == []


def test_a_relative_output_root_under_a_newline_directory_is_refused_too(tmp_path):
    job_dir = tmp_path / "a\nb" / "job"
    with pytest.raises(ScriptValueError, match="job directory="):
        SbatchJob(LauncherConfig(), job_dir, [job_dir], [[]], workdir=tmp_path)


def test_directives_and_comments_refuse_multi_line_values():
    with pytest.raises(ScriptValueError, match=r"#SBATCH --chdir='/a\\nrm -rf x'"):
        directive("chdir", "/a\nrm -rf x")
    with pytest.raises(ScriptValueError, match="job_dir="):
        comment("Job directory: {job_dir}", job_dir="/a\rb")
    assert directive("chdir", "/a b") == "#SBATCH --chdir='/a b'"
