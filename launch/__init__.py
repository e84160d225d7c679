"""longctx.launch: SLURM and local job launch (`longctx launch ...`).

    cli.py              `longctx launch slurm|local|status|logs|cancel|collect`
    launcher_config.py  the launcher's options (configs/launcher/*.yaml, `launcher.<field>=...`)
    overrides.py        Hydra overrides: parsing, launcher vs run split
    resolve.py          the run config composed with Hydra (`pkg://longctx.configs`)
    job_spec.py         command line -> validated job (runs, directories, world size)
    program_checks.py   the program's own config check at submit time (`longctx train`)
    sbatch.py           the readable sbatch script (job arrays for sweeps)
    rendezvous.py       c10d endpoint: first node's NodeAddr, port from the job id
    preemption.py       USR2 -> STOP file -> checkpoint -> requeue, as bash
    node.py             per node: torchrun with a rendezvous watchdog, per-rank logs
    job_dir.py          one output directory per job and what launch writes there
    slurm_launch.py     render, write, sbatch
    local.py            the same entry point through torchrun --standalone
    jobs.py             status / logs / cancel of a job id or job directory
    slurm_commands.py   bounded wrappers over sbatch, squeue, scontrol, scancel
    sweep.py            -m expansion and `collect` into one CSV
    shell.py            shell quoting of every config value
"""
