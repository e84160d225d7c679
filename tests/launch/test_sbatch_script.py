"""The rendered sbatch script: it parses, carries the config, keeps hostile strings inert,
derives the rendezvous endpoint, and turns USR2 into STOP -> requeue.

These run the script under real bash with stand-ins for `srun` and `scontrol`
that record what they were given; the real-SLURM runs are in test_slurm_jobs.py.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from longctx.launch.rendezvous import port_for_job
from longctx.launch.resolve import quote_override_value
from tests.launch.conftest import run_launch_cli

HOSTILE = "it's \"q\" $(touch {canary}) `touch {canary}` ; touch {canary}\nsecond line \\ $HOME $((1+1)) * ?"

SRUN_STUB = """#!/bin/bash
printf '%s\\0' "$@" > "$STUB_DIR/srun.args"
printf '%s' "${MSG-unset}" > "$STUB_DIR/msg"
if [ -n "${STUB_TRAINER:-}" ]; then  # behave like the trainer's graceful-stop contract
  for _ in $(seq 200); do [ -f "$OUTPUT_DIR_SEEN/STOP" ] && break; sleep 0.05; done
  [ -f "$OUTPUT_DIR_SEEN/STOP" ] && echo 7 > "$OUTPUT_DIR_SEEN/PREEMPTED"
fi
exit 0
"""
SCONTROL_STUB = """#!/bin/bash
case "$1 $2" in
  "show hostnames") printf 'n7\\nn8\\n' ;;
  "show node") echo "NodeName=$3 Arch=x86_64 CoresPerSocket=1 NodeAddr=10.1.2.3 NodeHostName=h7" ;;
  *) printf '%s\\n' "$*" >> "$STUB_DIR/scontrol.log" ;;
esac
"""


def _dry_run(overrides: list[str]) -> str:
    code, out, err = run_launch_cli(["slurm", "--dry-run", *overrides])
    assert code == 0, err
    return out


def _stubbed_env(stub_dir: Path, job_id: int) -> dict[str, str]:
    stub_dir.mkdir(exist_ok=True)
    for name, text in (("srun", SRUN_STUB), ("scontrol", SCONTROL_STUB)):
        (stub_dir / name).write_text(text)
        (stub_dir / name).chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{stub_dir}:{os.environ['PATH']}",
        "STUB_DIR": str(stub_dir),
        "SLURM_JOB_ID": str(job_id),
        "SLURM_JOB_NODELIST": "n[7-8]",
        "SLURM_JOB_NUM_NODES": "2",
    }


def test_dry_run_parses_and_carries_the_config(tmp_path, probe_config_dir):
    script = _dry_run([
        f"--config-dir={probe_config_dir}", f"launcher.output_root={tmp_path / 'runs'}",
        "launcher.nodes=4", "launcher.gpus_per_node=8", "launcher.cpus_per_task=32", "launcher.mem=480G",
        "launcher.partition=gpu", "launcher.account=proj42", "launcher.qos=high", "launcher.time=02:30:00",
        "launcher.constraint='h100&ib'", "launcher.grace_seconds=90", "launcher.env.NCCL_DEBUG=INFO",
        "launcher.container.runtime=pyxis", "launcher.container.image='nvcr.io#nvidia/pytorch:25.01-py3'",
        "launcher.container.mounts=[/data:/data,/scratch:/scratch]", "train.steps=7",
    ])  # fmt: skip
    syntax = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    directives = dict(re.findall(r"^#SBATCH --([a-z-]+)(?:=(.*))?$", script, flags=re.M))
    expected = {
        "nodes": "4", "ntasks-per-node": "1", "gpus-per-node": "8", "cpus-per-task": "32", "mem": "480G",
        "partition": "gpu", "account": "proj42", "qos": "high", "time": "02:30:00", "constraint": "'h100&ib'",
        "signal": "B:USR2@90", "open-mode": "append", "requeue": "",
    }  # fmt: skip
    assert {k: directives.get(k) for k in expected} == expected
    assert "--nproc-per-node=8" in script and "--nnodes=4" in script  # procs per node default to GPUs
    assert "--container-image='nvcr.io#nvidia/pytorch:25.01-py3'" in script
    assert "--container-mounts=/data:/data,/scratch:/scratch" in script
    assert "export NCCL_DEBUG=INFO" in script
    assert re.search(r"^RUN_ARGS=\(train.steps=7 ", script, flags=re.M)
    assert "--rdzv-endpoint=\"$RDZV_HOST:$RDZV_PORT\"" in script
    assert not (tmp_path / "runs").exists(), "a dry run must not create the job directory"


def test_multirun_dry_run_is_a_job_array_with_one_output_dir_per_point(tmp_path, probe_config_dir):
    script = _dry_run(["-m", f"--config-dir={probe_config_dir}", f"launcher.output_root={tmp_path}",
                       "train.steps=1,2", "train.run_name=a,b"])  # fmt: skip
    assert "#SBATCH --array=0-3" in script
    tasks = re.findall(r"^  (\d)\) OUTPUT_DIR=(\S+); RUN_ARGS=\((.*)\) ;;$", script, flags=re.M)
    assert [t[0] for t in tasks] == ["0", "1", "2", "3"]
    assert len({t[1] for t in tasks}) == 4 and all(t[1].endswith(f"/{t[0]}") for t in tasks)
    assert [t[2].split()[:2] for t in tasks] == [
        ["train.steps=1", "train.run_name=a"], ["train.steps=1", "train.run_name=b"],
        ["train.steps=2", "train.run_name=a"], ["train.steps=2", "train.run_name=b"],
    ]  # fmt: skip


def test_hostile_config_strings_reach_the_job_literally_and_run_nothing(tmp_path, probe_config_dir):
    canary = tmp_path / "pwned"
    hostile = HOSTILE.format(canary=canary)
    run_override = f"train.run_name={quote_override_value(hostile)}"
    script = _dry_run([
        f"--config-dir={probe_config_dir}", f"launcher.output_root={tmp_path / 'runs'}",
        f"launcher.env.MSG={quote_override_value(hostile)}",
        f"launcher.job_name={quote_override_value(hostile.replace(chr(10), ' '))}",
        f"launcher.args=[{quote_override_value(hostile)}]", run_override,
    ])  # fmt: skip
    script_path = tmp_path / "job.sbatch"
    script_path.write_text(script)
    env = _stubbed_env(tmp_path / "stubs", job_id=4242)
    done = subprocess.run(["bash", str(script_path)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    srun_args = (tmp_path / "stubs" / "srun.args").read_text().split("\0")[:-1]
    program_args = srun_args[srun_args.index("--") + 1 :]
    assert program_args[0] == hostile and program_args[1] == run_override
    assert (tmp_path / "stubs" / "msg").read_text() == hostile
    assert not canary.exists(), "a config value was executed by the shell"


def test_rendezvous_endpoint_is_first_node_addr_and_port_from_job_id(tmp_path, probe_config_dir):
    script_path = tmp_path / "job.sbatch"
    script_path.write_text(_dry_run([f"--config-dir={probe_config_dir}", f"launcher.output_root={tmp_path}"]))
    env = _stubbed_env(tmp_path / "stubs", job_id=31337)
    done = subprocess.run(["bash", str(script_path)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    srun_args = (tmp_path / "stubs" / "srun.args").read_text().split("\0")
    assert port_for_job(31337) == 16337 and "--rdzv-endpoint=10.1.2.3:16337" in srun_args
    assert "--rdzv-id=31337" in srun_args


def test_usr2_makes_stop_file_and_requeues_after_trainer_saved(tmp_path, probe_config_dir):
    script_path = tmp_path / "job.sbatch"
    script_path.write_text(_dry_run([f"--config-dir={probe_config_dir}", f"launcher.output_root={tmp_path / 'r'}"]))
    output_dir = re.search(r"^OUTPUT_DIR=(\S+)$", script_path.read_text(), flags=re.M).group(1)
    Path(output_dir).mkdir(parents=True)
    (Path(output_dir) / "STOP").touch()  # stale from an earlier run: the script must clear it first
    env = {**_stubbed_env(tmp_path / "stubs", job_id=77), "STUB_TRAINER": "1", "OUTPUT_DIR_SEEN": output_dir}
    job = subprocess.Popen(["bash", str(script_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    assert not (Path(output_dir) / "STOP").exists(), "a stale STOP file survived the job start"
    job.send_signal(signal.SIGUSR2)
    out, err = job.communicate(timeout=30)
    assert job.returncode == 0, err
    assert (tmp_path / "stubs" / "scontrol.log").read_text().splitlines() == ["requeue 77"]
    assert not (Path(output_dir) / "STOP").exists()
    assert b"trainer stopped after step 7" in out


@pytest.mark.parametrize(
    "override, message",
    [
        ("launcher.partition='a\nb'", "newline"),
        ("launcher.nodes=0", "launcher.nodes=0 must be an integer >= 1"),
        ("launcher.env={A-B:x}", "'A-B'"),
        ("launcher.container.runtime=pyxis", "needs launcher.container.image"),
        ("launcher.container.runtime=docker", "is not supported"),
        ("launcher.nodez=2", "unknown launcher option 'launcher.nodez'"),
        ("launcher.output_root=/tmp/a%b", "file-name pattern"),
        ("train.steps=1,2", "add -m"),
        ("train.no_such_key=1", "do not compose"),
    ],
)
def test_bad_options_fail_before_any_work_with_a_clear_message(tmp_path, probe_config_dir, override, message):
    code, out, err = run_launch_cli(["slurm", "--dry-run", f"--config-dir={probe_config_dir}",
                                     f"launcher.output_root={tmp_path}", override])  # fmt: skip
    assert code == 2 and message in err, err
    assert out == ""


def test_trainer_config_errors_fail_at_submit_not_on_the_nodes(tmp_path):
    code, out, err = run_launch_cli(["slurm", "--dry-run", f"launcher.output_root={tmp_path}", "launcher.nodes=2",
                                     "experiment=smoke", "data.tokens_per_step=100"])  # fmt: skip
    assert code == 2 and "data.tokens_per_step=100" in err, err
    code, out, err = run_launch_cli(["slurm", "--dry-run", f"launcher.output_root={tmp_path}", "launcher.nodes=2",
                                     "parallel.nprocs=3"])  # fmt: skip
    assert code == 2 and "'parallel.nprocs=3' disagrees with the launch" in err, err
