"""Non-finite guard on 3 gloo ranks (a non-power-of-two world): every rank stops at the same step with a
message naming the step and the rank; finite values pass. Metrics JSON never holds NaN/Infinity.
The end-to-end stop of `longctx train` (exit 3, no checkpoint of the step) is in test_training_faults."""
from __future__ import annotations

import json

import pytest

from longctx.tracking import JsonlTracker, strict_json
from tests.faults import finite_cases

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("bad_rank, what, words", [
    (1, "loss", "non-finite loss nan on rank 1 at step 7;"),
    (2, "grad", "non-finite gradient norm inf on rank 2 at step 7;"),
])
def test_a_non_finite_value_on_one_rank_stops_every_rank_naming_it(gloo_pool, bad_rank, what, words):
    messages = gloo_pool(3).run(finite_cases.local_check, bad_rank, what, 7)
    assert len(set(messages)) == 1, messages
    assert messages[0].startswith(words) and "stopped before the optimizer step 7" in messages[0]


def test_finite_values_pass_on_every_rank(gloo_pool):
    assert gloo_pool(3).run(finite_cases.local_check, -1, "loss", 1) == [None, None, None]
    assert gloo_pool(3).run(finite_cases.global_check, 2.5, 1) == [None, None, None]


def test_a_non_finite_global_norm_stops_the_step(gloo_pool):
    messages = gloo_pool(3).run(finite_cases.global_check, float("inf"), 4)
    assert all(m.startswith("non-finite global gradient norm inf at step 4") for m in messages)


def _strict_load(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_metrics_json_holds_null_never_nan(tmp_path):
    assert _strict_load(strict_json.dumps({"loss": float("nan"), "x": [float("-inf"), 1.5]})) == {
        "loss": None, "x": [None, 1.5]}
    tracker = JsonlTracker(str(tmp_path))
    tracker.log({"loss": float("nan"), "grad_norm": float("inf"), "lr": 0.1}, step=3)
    tracker.finish()
    assert _strict_load((tmp_path / "metrics.jsonl").read_text()) == {"step": 3, "loss": None, "grad_norm": None,
                                                                     "lr": 0.1}
