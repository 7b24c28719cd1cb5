"""Glacier-wide mass-balance observations (WGMS or a plain table) linked to outline ids."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .exceptions import InputDataError
from .units import mm_we_to_m_we

__all__ = ["read_observations", "link_units"]


def read_observations(files: Sequence[str | Path], *, fmt: str = "wgms", id_column: str = "RGI_ID") -> pd.DataFrame:
    """Read observations into a frame with columns ``obs_id``, ``year``, ``smb`` (m w.e.).

    ``fmt="wgms"``: WGMS ``mbdata`` CSVs with YEAR and ANNUAL_BALANCE (mm w.e.); rows without an annual
    balance are skipped (they are seasonal-only records). ``fmt="table"``: columns ``id_column``,
    ``year``, ``smb`` (m w.e.).
    """
    frames = []
    for f in files:
        f = Path(f)
        if not f.exists():
            raise InputDataError(f"Observation file {f} does not exist.")
        df = pd.read_csv(f)
        if fmt == "wgms":
            need = ["YEAR", "ANNUAL_BALANCE", id_column]
            rename = {"YEAR": "year", "ANNUAL_BALANCE": "smb", id_column: "obs_id"}
        elif fmt == "table":
            need = [id_column, "year", "smb"]
            rename = {id_column: "obs_id"}
        else:
            raise InputDataError(f"Unknown observation format {fmt!r}; use 'wgms' or 'table'.")
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise InputDataError(f"Observation file {f} lacks columns {missing} (has {list(df.columns)}); "
                                 f"format {fmt!r} needs {need}.")
        df = df[need].rename(columns=rename).dropna(subset=["smb"])
        if fmt == "wgms":
            df["smb"] = mm_we_to_m_we(df["smb"].to_numpy())
        df["obs_id"] = df["obs_id"].astype(str)
        df["year"] = df["year"].astype(int)
        df["source"] = f.name
        frames.append(df)
    if not frames:
        raise InputDataError("No observation files were given.")
    obs = pd.concat(frames, ignore_index=True)
    dup = obs.duplicated(["obs_id", "year"])
    if dup.any():
        raise InputDataError(f"Duplicated observations (id, year): {obs.loc[dup, ['obs_id', 'year']].values.tolist()[:5]}.")
    return obs


def link_units(obs_ids: Sequence[str], outline_ids: Sequence[str], links: Mapping[str, Sequence[str]]):
    """Map observation ids to groups of outline indices (1-based, in outline order).

    Returns ``(unit_of_outline, units, unmatched)``: an int array giving, for every outline index
    (position 0 unused), the 1-based observation unit it belongs to (0 = none); the list of unit
    observation ids; and the observation ids that match no outline (reported by the caller, not dropped
    silently).
    """
    position = {rid: i + 1 for i, rid in enumerate(outline_ids)}
    unit_of_outline = np.zeros(len(outline_ids) + 1, dtype="int32")
    units: list[str] = []
    unmatched: list[str] = []
    for oid in sorted(set(obs_ids)):
        members = list(links.get(oid, [oid]))
        idx = [position[m] for m in members if m in position]
        absent = [m for m in members if m not in position]
        if absent and oid in links:
            raise InputDataError(f"Observation link {oid!r} -> {members} names outline ids {absent} that the outlines lack.")
        if not idx:
            unmatched.append(oid)
            continue
        taken = [i for i in idx if unit_of_outline[i]]
        if taken:
            raise InputDataError(f"Outline(s) {[outline_ids[i - 1] for i in taken]} are linked to two observation ids.")
        units.append(oid)
        unit_of_outline[idx] = len(units)
    return unit_of_outline, units, unmatched
