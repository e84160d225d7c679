"""The one exception type the scheduler raises for bad user input."""
from __future__ import annotations


class SchedulerInputError(ValueError):
    """Bad input to the scheduler: the message names the field, the value and the fix."""
