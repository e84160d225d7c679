"""`longctx launch` renders and submits jobs without importing torch (login nodes often lack a CUDA torch).

Each case runs the launcher in a fresh interpreter and prints whether torch
ended up in `sys.modules`; the submit-time check of `longctx train`'s
arguments (composed config, validation) runs in every case.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: runs `longctx launch <argv>` in this interpreter, then prints {"code": ..., "torch": ...} on the last line
PROBE = (
    "import json, sys\n"
    "from longctx.launch.cli import main\n"
    "code = main(json.loads(sys.argv[1]))\n"
    "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules}))\n"
)


def launch_in_fresh_interpreter(argv: list[str], code: str = PROBE) -> dict:
    done = subprocess.run([sys.executable, "-c", code, json.dumps(argv)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "stdout": done.stdout, "stderr": done.stderr}


@pytest.mark.parametrize("launcher", [
    ["slurm", "--dry-run", "launcher.nodes=2", "launcher.gpus_per_node=4", "launcher.partition=gpu"],
    ["local", "--dry-run", "launcher.procs_per_node=2"],
])
def test_rendering_a_job_never_imports_torch(launcher, tmp_path):
    result = launch_in_fresh_interpreter([*launcher, f"launcher.output_root={tmp_path}",
                                          f"train.output_dir={tmp_path / 'run'}"])
    assert result["code"] == 0, result["stderr"]
    assert "longctx" in result["stdout"], "the dry run printed no script"
    assert result["torch"] is False, "longctx launch imported torch while rendering the job"


def test_a_submit_time_check_that_imports_torch_is_refused(tmp_path):
    probe = PROBE.replace(
        "from longctx.launch.cli import main\n",
        "from longctx.launch.cli import main\nfrom longctx.launch import program_checks\n"
        "program_checks.PROGRAM_CHECKS[('longctx.cli', 'train')] = 'longctx.runtime.trainer:train'\n",
    )
    done = subprocess.run([sys.executable, "-c", probe, json.dumps(["slurm", "--dry-run", "launcher.partition=gpu",
                                                                    f"launcher.output_root={tmp_path}"])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "longctx.runtime.trainer:train imported torch; the launcher must never import torch" in done.stderr, \
        done.stderr


@pytest.mark.slurm
def test_submitting_a_job_never_imports_torch(slurm_cluster, tmp_path):
    result = launch_in_fresh_interpreter(["slurm", f"launcher.output_root={tmp_path}", "experiment=smoke",
                                          "train.steps=1", "launcher.job_name=no-torch"])
    assert result["code"] == 0, result["stderr"]
    job_id = result["stdout"].split("submitted job", 1)[1].split()[0]
    subprocess.run(["scancel", job_id], capture_output=True, timeout=30)
    assert result["torch"] is False, "longctx launch imported torch while submitting the job"
