"""`longctx launch local`: the same node entry point through torchrun --standalone, no SLURM needed."""
from __future__ import annotations

import json
from pathlib import Path

from tests.launch.conftest import run_launch_cli


def test_local_launch_runs_the_program_on_a_standalone_world_with_rank_logs(in_repo_root, tmp_path, probe_config_dir):
    code, out, err = run_launch_cli([
        "local", f"--config-dir={probe_config_dir}", f"launcher.output_root={tmp_path / 'runs'}",
        "launcher.module=tests.launch.probe", "launcher.args=[]", "launcher.procs_per_node=2", "train.steps=5",
    ])  # fmt: skip
    assert code == 0, err
    job_dir = Path(out.split("job directory:", 1)[1].split()[0])
    report = json.loads((job_dir / "probe.json").read_text())
    assert (report["world_size"], report["sum"]) == (2, 3.0)
    assert report["argv"] == ["train.steps=5", f'train.output_dir="{job_dir}"']
    assert len(list((job_dir / "logs" / "ranks-local").glob("*/*/attempt_0/*/stdout.log"))) == 2
    assert (job_dir / "run_local.sh").is_file() and (job_dir / "config.yaml").is_file()
    code, out, _ = run_launch_cli(["status", str(job_dir)])
    assert code == 0 and f"job directory: {job_dir}" in out
