"""The Plan: the contract between the scheduler, the runtime and outside tools.

JSON form (more fields allowed; these keep their meaning)::

    {"world_size": int, "lengths": [int per sequence],
     "waves": [{"groups": [{"ranks": [int], "kind": "ring|ulysses|hybrid|local",
                            "ulysses_degree": int, "sequences": [int]}]}],
     "method": str, "predicted_step_time_ms": float,
     "lower_bound_ms": float, "solve_time_s": float, "notes": [str]}

Semantics: sequence i has ``lengths[i]`` tokens. The ranks of a group process
that group's sequences one after another (or packed together while they fit);
a rank takes part in at most one group per wave; waves run in order on every
rank, so no collective can deadlock; a rank absent from every group of a wave
idles in that wave. Ranks of a group are ascending; a one-rank group has kind
"local"; a Ulysses group has ``ulysses_degree == len(ranks)``; a hybrid group
runs Ulysses over ``ulysses_degree`` consecutive ranks and a ring across those
sub-groups; a ring has ``ulysses_degree == 1``.
"""
from __future__ import annotations

import json
from itertools import chain
from dataclasses import dataclass, field, fields

import numpy as np

from longctx.scheduler.cost_model import KINDS, GroupShape
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.plan_screen import groups_pass


class PlanInvalidError(SchedulerInputError):
    """A plan that breaks the contract; the message names the wave, group and numbers."""


@dataclass
class PlanGroup:
    """One group of one wave: `ranks` (ascending) run `sequences` (indices into Plan.lengths)."""

    ranks: list[int]
    kind: str
    ulysses_degree: int
    sequences: list[int]

    @property
    def shape(self) -> GroupShape:
        return GroupShape(len(self.ranks), self.kind, self.ulysses_degree)


@dataclass
class PlanWave:
    groups: list[PlanGroup]


@dataclass
class Plan:
    world_size: int
    lengths: list[int]
    waves: list[PlanWave]
    method: str
    predicted_step_time_ms: float = 0.0
    lower_bound_ms: float = 0.0
    solve_time_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    # ---- checks ---------------------------------------------------------------------------
    def validate(self, max_tokens_per_rank: int | None = None, ranks_per_node: int | None = None) -> "Plan":
        """Raise PlanInvalidError unless every sequence is placed once, groups are disjoint per
        wave, shapes are legal, and (when given) memory and node alignment are respected.

        The groups are screened all at once (`plan_screen.groups_pass`, numpy); only a plan the screen
        rejects is checked group by group, which names the first problem."""
        if self.world_size < 1:
            raise PlanInvalidError(f"Plan.world_size={self.world_size}: must be >= 1")
        if not groups_pass(self.waves, self.world_size, ranks_per_node):
            self._check_groups(ranks_per_node)
        self._check_sequences(max_tokens_per_rank)
        return self

    def _check_groups(self, ranks_per_node: int | None) -> None:
        """Check each group in turn; raise PlanInvalidError naming the first broken rule."""
        for w, wave in enumerate(self.waves):
            used: set[int] = set()
            for g, group in enumerate(wave.groups):
                where = f"wave {w} group {g}"
                if not group.ranks or group.ranks != sorted(set(group.ranks)):
                    raise PlanInvalidError(f"{where}: ranks {group.ranks} must be non-empty, unique and ascending")
                if group.ranks[0] < 0 or group.ranks[-1] >= self.world_size:
                    raise PlanInvalidError(f"{where}: ranks {group.ranks} outside 0..{self.world_size - 1}")
                clash = used.intersection(group.ranks)
                if clash:
                    raise PlanInvalidError(f"{where}: ranks {sorted(clash)} already in another group of this wave")
                used.update(group.ranks)
                if group.kind not in KINDS:
                    raise PlanInvalidError(f"{where}: kind {group.kind!r} not one of {list(KINDS)}")
                try:
                    group.shape
                except SchedulerInputError as err:
                    raise PlanInvalidError(f"{where}: {err}") from None
                if ranks_per_node is not None:
                    _check_node_alignment(group.ranks, ranks_per_node, where)

    def _check_sequences(self, max_tokens_per_rank: int | None) -> None:
        """Every sequence index valid and placed exactly once; memory per group (vectorised)."""
        groups = [group for wave in self.waves for group in wave.groups]
        counts = np.fromiter(map(len, (group.sequences for group in groups)), dtype=np.int64, count=len(groups))
        seqs = np.fromiter(chain.from_iterable(group.sequences for group in groups), dtype=np.int64,
                           count=int(counts.sum()))
        owner = np.repeat(np.arange(len(groups)), counts)
        bad = np.flatnonzero((seqs < 0) | (seqs >= len(self.lengths)))
        if len(bad):
            w, g = self._position(owner[bad[0]])
            raise PlanInvalidError(f"wave {w} group {g}: sequence index {seqs[bad[0]]} outside "
                                   f"0..{len(self.lengths) - 1}")
        times = np.bincount(seqs, minlength=len(self.lengths))
        if (times > 1).any():
            i = int(np.flatnonzero(times > 1)[0])
            homes = [self._position(o) for o in owner[seqs == i]]
            raise PlanInvalidError(f"sequence {i} is placed {times[i]} times, in (wave, group) {homes}")
        missing = np.flatnonzero(times == 0).tolist()
        if missing:
            raise PlanInvalidError(f"sequences {missing[:10]}{'...' if len(missing) > 10 else ''} are in no group")
        if max_tokens_per_rank is not None and len(seqs):
            sizes = np.fromiter(map(len, (group.ranks for group in groups)), dtype=np.int64, count=len(groups))
            lengths = np.fromiter(self.lengths, dtype=np.int64, count=len(self.lengths))
            over = np.flatnonzero(lengths[seqs] > max_tokens_per_rank * sizes[owner])
            if len(over):
                w, g = self._position(owner[over[0]])
                raise PlanInvalidError(
                    f"wave {w} group {g}: a sequence of {self.lengths[seqs[over[0]]]} tokens exceeds the "
                    f"memory of {sizes[owner[over[0]]]} ranks ({max_tokens_per_rank} tokens per rank)"
                )

    def _position(self, index: int) -> tuple[int, int]:
        """(wave, group in the wave) of the `index`-th group in execution order."""
        for w, wave in enumerate(self.waves):
            if index < len(wave.groups):
                return w, int(index)
            index -= len(wave.groups)
        raise IndexError(index)

    # ---- views ----------------------------------------------------------------------------
    def groups(self):
        """(wave index, group) for every group, in execution order."""
        for w, wave in enumerate(self.waves):
            for group in wave.groups:
                yield w, group

    def gap_to_bound(self) -> float:
        """predicted / lower bound - 1 (0 when no bound is known)."""
        if self.lower_bound_ms <= 0:
            return 0.0
        return self.predicted_step_time_ms / self.lower_bound_ms - 1.0

    # ---- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain data, lists copied (what dataclasses' asdict gives, without its per-element recursion:
        a 1.6M-sequence plan converts in a fraction of a second instead of seconds)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(lengths=list(self.lengths), notes=list(self.notes), waves=[
            {"groups": [{"ranks": list(g.ranks), "kind": g.kind, "ulysses_degree": g.ulysses_degree,
                         "sequences": list(g.sequences)} for g in wave.groups]} for wave in self.waves])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Plan":
        try:
            waves = [PlanWave([PlanGroup(list(g["ranks"]), g["kind"], int(g["ulysses_degree"]), list(g["sequences"]))
                               for g in wave["groups"]]) for wave in data["waves"]]
            return cls(
                world_size=int(data["world_size"]),
                lengths=[int(x) for x in data["lengths"]],
                waves=waves,
                method=str(data["method"]),
                predicted_step_time_ms=float(data.get("predicted_step_time_ms", 0.0)),
                lower_bound_ms=float(data.get("lower_bound_ms", 0.0)),
                solve_time_s=float(data.get("solve_time_s", 0.0)),
                notes=list(data.get("notes", [])),
            )
        except (KeyError, TypeError) as err:
            raise PlanInvalidError(f"plan JSON is missing or mistypes field {err}") from None

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        return cls.from_dict(json.loads(text))


def _check_node_alignment(ranks: list[int], ranks_per_node: int, where: str) -> None:
    nodes = sorted({r // ranks_per_node for r in ranks})
    if len(ranks) <= ranks_per_node:
        if len(nodes) != 1:
            raise PlanInvalidError(f"{where}: group of {len(ranks)} ranks straddles nodes {nodes}")
    elif len(ranks) != len(nodes) * ranks_per_node:
        raise PlanInvalidError(f"{where}: group of {len(ranks)} ranks must be whole nodes, spans nodes {nodes}")
