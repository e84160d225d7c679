"""`parallel.cost_profile` is checked when the config is composed: readable, and measured for this model."""
import pytest

from longctx.runtime.config import ConfigError
from longctx.runtime.train_cli import compose_run_config
from longctx.scheduler import CostModel
from longctx.scheduler.cost_profile import CostProfile

TINY = {"num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "head_dim": 16}


def _write(path, provenance: dict, **shape) -> str:
    CostProfile(cost_model=CostModel(**shape), provenance=provenance).write(path)
    return str(path)


def test_profile_of_this_model_is_accepted(tmp_path):
    path = _write(tmp_path / "tiny.yaml", {"model": "tiny"}, **TINY)
    assert compose_run_config([f"parallel.cost_profile={path}"]).parallel.cost_profile == path


def test_profile_of_another_model_is_refused_naming_the_difference(tmp_path):
    path = _write(tmp_path / "tiny.yaml", {"model": "tiny"}, **TINY)
    with pytest.raises(ConfigError, match=r"measured for model 'tiny'.*num_layers: profiled 2, given 4.*longctx profile model=small"):
        compose_run_config(["model=small", f"parallel.cost_profile={path}"])


def test_hand_written_profile_without_provenance_is_not_checked_against_the_model(tmp_path):
    path = _write(tmp_path / "h100.yaml", {})  # the 7B defaults, planning shape only
    compose_run_config([f"parallel.cost_profile={path}"])


def test_unreadable_profile_names_the_setting(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"cost_model": {"linear_ms_per_tokn": 1}}')
    with pytest.raises(ConfigError, match=r"parallel.cost_profile=.*linear_ms_per_tokn"):
        compose_run_config([f"parallel.cost_profile={path}"])
