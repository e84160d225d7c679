"""Preemption glue of the batch script: USR2 -> STOP file -> checkpoint -> requeue.

SLURM sends USR2 to the batch shell `grace_seconds` before the time limit
(`#SBATCH --signal=B:USR2@<grace>`; by hand: `scancel --signal=USR2 --batch <job>`).
The shell cannot signal the trainer through srun and torchrun reliably, so it
uses the trainer's contract instead: it creates `<output_dir>/STOP`; the trainer
finishes its step, saves a checkpoint, writes `<output_dir>/PREEMPTED` and exits
0. The shell then requeues the job (`scontrol requeue`); the restart removes the
STOP file and the trainer resumes from its latest checkpoint (`train.resume=auto`)
into the same output directory and tracker run.
"""
from __future__ import annotations

STOP_FILE = "STOP"
PREEMPTED_FILE = "PREEMPTED"


def signal_directive(grace_seconds: int) -> str:
    """The sbatch option that delivers USR2 to the batch shell before the time limit."""
    return f"B:USR2@{grace_seconds}"


def trap_lines() -> list[str]:
    """Bash lines before the step starts: clear a stale STOP, turn USR2 into STOP."""
    return [
        f'rm -f "$OUTPUT_DIR/{STOP_FILE}"',
        "STOP_REQUESTED=0",
        "request_stop() {",
        "  STOP_REQUESTED=1",
        f'  echo "longctx launch: USR2 received; asking the trainer to stop via $OUTPUT_DIR/{STOP_FILE}"',
        f'  touch "$OUTPUT_DIR/{STOP_FILE}"',
        "}",
        "trap request_stop USR2",
    ]


def wait_lines() -> list[str]:
    """Bash lines that wait for the backgrounded step ($STEP_PID) across trapped signals."""
    return [
        "STEP_PID=$!",
        'wait "$STEP_PID"; STEP_RC=$?',
        'while kill -0 "$STEP_PID" 2>/dev/null; do wait "$STEP_PID"; STEP_RC=$?; done',
    ]


def requeue_lines(requeue: bool) -> list[str]:
    """Bash lines after the step: requeue when the stop was ours and the trainer saved its state."""
    then = (
        ['  echo "longctx launch: requeueing job $SLURM_JOB_ID; it resumes from its latest checkpoint"',
         '  scontrol requeue "$SLURM_JOB_ID"']
        if requeue
        else ['  echo "longctx launch: requeue is off (launcher.requeue=false); resubmit the job script to resume"']
    )  # fmt: skip
    return [
        f'if [ "$STOP_REQUESTED" = 1 ] && [ -f "$OUTPUT_DIR/{PREEMPTED_FILE}" ]; then',
        f'  rm -f "$OUTPUT_DIR/{STOP_FILE}"',
        f'  echo "longctx launch: trainer stopped after step $(cat "$OUTPUT_DIR/{PREEMPTED_FILE}")"',
        *then,
        "  exit 0",
        "fi",
        'exit "$STEP_RC"',
    ]
