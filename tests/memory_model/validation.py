"""Prediction vs measurement of saved activations, the rows of the test and of the README table.

    python -m tests.memory_model.validation      # prints the Markdown table (tiny and small, every mode)
"""
from __future__ import annotations

from dataclasses import dataclass

from longctx.model.config import ModelConfig
from longctx.runtime.config import MemoryConfig
from longctx.scheduler.memory_model import MemoryModel
from tests.memory_model.measure import saved_bytes

TOKENS = 96
#: every valid (checkpointing, offload) pair
MODES = [(c, o) for c in ("none", "full", "selective", "tiled") for o in ("none", "checkpoints", "all")
         if not (o == "checkpoints" and c == "none")]
#: (precision, optimizer_offload): fp32 on CPU; bf16 autocast with fp32 weights; bf16 weights (sharded path)
PRECISIONS = [("fp32", False), ("bf16", False), ("bf16", True)]


@dataclass
class Row:
    model: str
    mode: str
    #: layer key -> (measured resident, measured offloaded, predicted resident, predicted offloaded), bytes
    layers: dict

    def worst_error(self) -> float:
        """Largest relative error over the layers and the resident/offloaded totals."""
        errors = [abs(p - m) / m if m else float(p != 0) for mr, mo, pr, po in self.layers.values()
                  for m, p in ((mr, pr), (mo, po))]
        totals = [sum(v[i] for v in self.layers.values()) for i in range(4)]
        errors += [abs(totals[2] - totals[0]) / max(totals[0], 1), abs(totals[3] - totals[1]) / max(totals[1], 1)]
        return max(errors)


def measure_row(model: str, checkpointing: str, offload: str, tiles: int | None, precision: str,
                optimizer_offload: bool) -> Row:
    memory = MemoryConfig(checkpointing=checkpointing, offload=offload, mlp_tile_tokens=tiles,
                          loss_tile_tokens=tiles, optimizer_offload=optimizer_offload)
    measured = saved_bytes(model, memory, TOKENS, precision)
    predicted = MemoryModel(ModelConfig.preset(model), memory, precision).saved_bytes(TOKENS)
    missing = set(measured) - set(predicted)
    if missing:
        raise AssertionError(f"the runtime counted layers {missing} the memory model does not know")
    mode = (f"{precision}{' bf16-weights' if optimizer_offload else ''} ckpt={checkpointing} offload={offload} "
            f"tiles={tiles}")
    return Row(model, mode, {k: (*measured[k], predicted[k].resident, predicted[k].offloaded) for k in measured})


def cases() -> list[tuple[str, str, int | None, str, bool]]:
    """(checkpointing, offload, tiles, precision, bf16 weights): every mode tiled and untiled in fp32 (tiled
    recompute: tiled only); under bf16 every mode once, tiled and untiled alternating."""
    out = []
    for precision, weights in PRECISIONS:
        for i, (checkpointing, offload) in enumerate(MODES):
            choices = (32,) if checkpointing == "tiled" else (None, 32)  # tiled recompute needs a tile
            for tiles in (choices if precision == "fp32" else (choices[i % len(choices)],)):
                out.append((checkpointing, offload, tiles, precision, weights))
    return out


def rows() -> list[Row]:
    return [measure_row(model, *case) for model in ("tiny", "small") for case in cases()]


def markdown(table: list[Row]) -> str:
    lines = ["| model | mode | measured resident / offloaded (KB) | predicted (KB) | worst error |",
             "|---|---|---|---|---|"]
    for row in table:
        totals = [sum(v[i] for v in row.layers.values()) / 1e3 for i in range(4)]
        lines.append(f"| {row.model} | {row.mode} | {totals[0]:.1f} / {totals[1]:.1f} | "
                     f"{totals[2]:.1f} / {totals[3]:.1f} "
                     f"| {100 * row.worst_error():.2f}% |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(rows()))
