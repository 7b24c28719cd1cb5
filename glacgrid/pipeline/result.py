"""What a run wrote and reports: :class:`RunResult` (the dense run and the domain run alike)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import RunConfig
from ..models import CVResult
from ..outputs import RunFiles

__all__ = ["RunResult"]


@dataclass(frozen=True, eq=False)
class RunResult:
    """What a run wrote and reports.

    Attributes
    ----------
    config : RunConfig
        The run.
    output : Path
        The output folder (``[output] directory``).
    glacier_years : pandas.DataFrame
        One row per glacier and year (``glacier_years.csv``).
    validation : pandas.DataFrame
        Modelled against observed balance of each observation unit and year (``validation.csv``).
    cv : CVResult
        The cross-validation of the model stage.
    timings : dict of str to float
        Seconds per stage, and ``total``.
    notes : tuple of str
        What the stages reported (repaired outlines, unmatched observations, isolated glacier-years).
    files : RunFiles
        The paths of the written files.
    """

    config: RunConfig
    output: Path
    glacier_years: pd.DataFrame
    validation: pd.DataFrame
    cv: CVResult
    timings: dict[str, float]
    notes: tuple[str, ...]
    files: RunFiles

    def __post_init__(self) -> None:
        object.__setattr__(self, "notes", tuple(self.notes))
