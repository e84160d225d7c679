"""Evaluation: loss by position bucket on held-out documents (`longctx eval`), the check that a context extension worked."""
from longctx.evaluation.position_loss import PositionBucket, bucket_edges, loss_by_position

__all__ = ["PositionBucket", "bucket_edges", "loss_by_position"]
