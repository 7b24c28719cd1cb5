"""Glacier-wide mass-balance observations (WGMS or a plain table) linked to outline ids."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .exceptions import InputDataError
from .units import mm_we_to_m_we

__all__ = ["ObservedUnits", "observed_units", "read_observations", "link_units", "unit_raster", "read_profiles", "read_areas", "profile_files"]


def read_observations(files: Sequence[str | Path], *, fmt: str = "wgms", id_column: str = "RGI_ID") -> pd.DataFrame:
    """Read observations into a frame with columns ``obs_id``, ``year``, ``smb`` (m w.e.).

    ``fmt="wgms"``: WGMS ``mbdata`` CSVs with YEAR and ANNUAL_BALANCE (mm w.e.); rows without an annual
    balance are skipped (they are seasonal-only records). ``fmt="table"``: columns ``id_column``,
    ``year``, ``smb`` (m w.e.).

    Every cell is checked when the file is read (cheap: call it before any long stage). A row whose
    number of cells differs from the header's (typically an unquoted ``-1,234`` split in two), a
    balance that is not a number, a blank or non-integer year or a blank id in a row that has a
    balance is an :class:`InputDataError` naming the file, line and column. Thousands separators
    are read when unambiguous: a quoted cell such as ``"-1,234"`` or ``"12,345.5"`` (commas between
    groups of exactly three digits) is -1234 or 12345.5; any other comma (``"-1,5"``: a decimal comma?)
    is refused. Cells ``NA``, ``NaN``, ``null`` and blank ones are missing values.
    """
    if fmt not in ("wgms", "table"):
        raise InputDataError(f"Unknown observation format {fmt!r}; use 'wgms' or 'table'.")
    year_col, smb_col = ("YEAR", "ANNUAL_BALANCE") if fmt == "wgms" else ("year", "smb")
    frames = []
    for f in files:
        f = Path(f)
        if not f.exists():
            raise InputDataError(f"Observation file {f} does not exist.")
        table = _CsvTable.read(f)
        need = [year_col, smb_col, id_column] if fmt == "wgms" else [id_column, "year", "smb"]
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise InputDataError(f"Observation file {f} lacks columns {missing} (has {table.columns}); "
                                 f"format {fmt!r} needs {need}.")
        smb, blank = table.numbers(smb_col)
        keep = ~blank  # rows without an annual balance: seasonal-only records, skipped
        years = table.integers(year_col, keep)
        ids = table.text(id_column, keep)
        values = mm_we_to_m_we(smb[keep]) if fmt == "wgms" else smb[keep]
        cols = {"year": years, "smb": values, "obs_id": ids} if fmt == "wgms" else \
            {"obs_id": ids, "year": years, "smb": values}
        frames.append(pd.DataFrame({**cols, "source": f.name}))
    if not frames:
        raise InputDataError("No observation files were given.")
    obs = pd.concat(frames, ignore_index=True)
    dup = obs.duplicated(["obs_id", "year"])
    if dup.any():
        pairs = [[str(i), int(y)] for i, y in obs.loc[dup, ["obs_id", "year"]].itertuples(index=False)]
        raise InputDataError(f"Duplicated observations (id, year): {pairs[:5]}; keep one row per glacier and year.")
    return obs


#: Cells read as missing values (compared in lower case, stripped).
_MISSING = frozenset({"", "na", "nan", "-nan", "n/a", "null", "none", "#n/a", "<na>"})
#: A number with thousands separators: groups of exactly three digits after the first.
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")


@dataclass(frozen=True)
class _CsvTable:
    """The cells of a CSV file as text, with the file line of every row (for messages)."""

    path: Path
    columns: list[str]
    cells: dict[str, np.ndarray]
    lines: np.ndarray

    @classmethod
    def read(cls, path: Path) -> "_CsvTable":
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            text = path.read_text(encoding="latin-1")
        reader = csv.reader(io.StringIO(text))
        try:
            header = next(reader)
        except StopIteration:
            raise InputDataError(f"{path} is empty: expected a CSV file with a header line.") from None
        rows, lines, bad = [], [], []
        for row in reader:
            if not any(c.strip() for c in row):
                continue  # blank line
            if len(row) != len(header):
                bad.append(f"line {reader.line_num} has {len(row)} cells")
            rows.append(row)
            lines.append(reader.line_num)
        if bad:
            raise InputDataError(
                f"{path}: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''} but the header has {len(header)} "
                "columns. A number written with a thousands separator and not quoted (-1,234) splits into two "
                "cells; remove the separators (or quote the cell) and check the line."
            )
        cells = {c: np.array([r[j].strip() for r in rows], dtype=object) for j, c in enumerate(header)}
        return cls(path, header, cells, np.asarray(lines, dtype="int64"))

    def _where(self, column: str, mask: np.ndarray) -> str:
        listed = ", ".join(f"line {line}: {cell!r}" for line, cell in
                           zip(self.lines[mask][:5], self.cells[column][mask][:5]))
        return listed + (f" and {int(mask.sum()) - 5} more" if mask.sum() > 5 else "")

    def numbers(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """The column as float64 and the mask of its missing cells; unreadable cells are an error."""
        raw = self.cells[column]
        blank = np.array([c.lower() in _MISSING for c in raw], dtype=bool)
        text = np.array([c.replace(",", "") if _THOUSANDS.match(c) else c for c in raw], dtype=object)
        values = pd.to_numeric(pd.Series(np.where(blank, "nan", text), dtype=object), errors="coerce").to_numpy(
            dtype="float64")
        bad = ~blank & ~np.isfinite(values)
        if bad.any():
            raise InputDataError(
                f"{self.path}: column {column!r} holds {int(bad.sum())} cell(s) that are not numbers ("
                f"{self._where(column, bad)}). Write plain numbers (a decimal point, no unit; thousands "
                "separators only as 1,234 in a quoted cell), or leave the cell empty for no value."
            )
        return values, blank

    def integers(self, column: str, rows: np.ndarray) -> np.ndarray:
        """The column at ``rows`` as int64: each such cell must hold a whole number."""
        values, blank = self.numbers(column)
        empty = blank & rows
        if empty.any():
            raise InputDataError(f"{self.path}: column {column!r} is empty in {int(empty.sum())} row(s) that hold a "
                                 f"value ({self._where(column, empty)}); fill it in or remove the row(s).")
        fraction = rows & (values != np.round(values))
        if fraction.any():
            raise InputDataError(f"{self.path}: column {column!r} must hold whole numbers; got "
                                 f"{self._where(column, fraction)}.")
        return values[rows].astype("int64")

    def text(self, column: str, rows: np.ndarray) -> np.ndarray:
        """The column at ``rows`` as strings: each such cell must be filled in."""
        raw = self.cells[column]
        empty = rows & np.array([c.lower() in _MISSING for c in raw], dtype=bool)
        if empty.any():
            raise InputDataError(f"{self.path}: column {column!r} is empty in {int(empty.sum())} row(s) that hold a "
                                 f"value ({self._where(column, empty)}); fill in the id or remove the row(s).")
        return raw[rows].astype(str)


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


@dataclass(frozen=True, eq=False)
class ObservedUnits:
    """Observations read and linked to the outlines once per run, then handed to every stage that needs them.

    Attributes
    ----------
    observations : pandas.DataFrame
        One row per observed (``obs_id``, ``year``) with ``smb`` (m w.e.), from :func:`read_observations`.
    units : tuple of str
        The observation ids that match outlines; unit ``k`` (1-based) is ``units[k - 1]``.
    unit_of_outline : numpy.ndarray
        For every outline index (position 0 unused), the 1-based unit it belongs to (0 = none).
    unmatched : tuple of str
        Observation ids that match no outline (not used; reported in the run's notes).
    """

    observations: pd.DataFrame
    units: tuple[str, ...]
    unit_of_outline: np.ndarray
    unmatched: tuple[str, ...] = ()

    @property
    def unit_index(self) -> np.ndarray:
        """The unit indices ``1..len(units)``."""
        return np.arange(1, len(self.units) + 1)


def observed_units(files: Sequence[str | Path], outline_ids: Sequence[str], *, fmt: str = "wgms",
                   id_column: str = "RGI_ID", links: Mapping[str, Sequence[str]] | None = None) -> ObservedUnits:
    """Read the observation files and link them to the outlines (:func:`read_observations`, :func:`link_units`).

    ``files`` may be empty: no observations, no units.
    """
    if not files:
        empty = pd.DataFrame({"obs_id": pd.Series(dtype=str), "year": pd.Series(dtype="int64"),
                              "smb": pd.Series(dtype="float64")})
        return ObservedUnits(empty, (), np.zeros(len(outline_ids) + 1, dtype="int32"), ())
    obs = read_observations(files, fmt=fmt, id_column=id_column)
    unit_of_outline, units, unmatched = link_units(obs["obs_id"].unique(), list(outline_ids), links or {})
    return ObservedUnits(obs, tuple(units), unit_of_outline, tuple(unmatched))


_WGMS_FILE = re.compile(r"^(?:mbdata|profile)_WGMS-(\d+)\.csv$")


def _wgms_number(path: Path) -> str | None:
    m = _WGMS_FILE.match(path.name)
    return m.group(1) if m else None


def _first_id(path: Path, id_column: str) -> str:
    df = pd.read_csv(path, usecols=lambda c: c == id_column)
    if id_column not in df.columns or df[id_column].dropna().empty:
        raise InputDataError(f"{path} has no {id_column!r} values to name the glacier; pass ids= explicitly.")
    ids = df[id_column].dropna().astype(str).unique()
    if len(ids) > 1:
        raise InputDataError(f"{path} names several glaciers in {id_column!r}: {list(ids)}; expected one per file.")
    return ids[0]


def profile_files(observation_files: Sequence[str | Path]) -> dict[Path, Path]:
    """The WGMS elevation-band profile beside each WGMS ``mbdata_WGMS-NNNNN.csv`` (only those that exist).

    Returns ``{profile path: mbdata path}``: the ``mbdata`` file names the glacier (its id column).
    """
    out = {}
    for f in map(Path, observation_files):
        number = _wgms_number(f)
        if number is None:
            continue
        prof = f.with_name(f"profile_WGMS-{number}.csv")
        if prof.exists():
            out[prof] = f
    return out


def read_profiles(files: Sequence[str | Path] | Mapping[str | Path, str | Path], *, id_column: str = "RGI_ID",
                  ids: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read WGMS elevation-band profiles into a long frame: ``obs_id``, ``year``, ``band_mid`` (m),
    ``smb`` (m w.e.), ``source``.

    A WGMS profile CSV has one row per year (first column) and one column per elevation band, named by the
    band's mid-elevation; values are the annual balance of the band in mm w.e. Empty cells are not
    observations and are left out. The file itself names no glacier: the id comes from ``ids`` (keys:
    the file name or the WGMS number, e.g. ``"00491"``), else from the ``id_column`` of the matching
    ``mbdata`` file (``files`` as returned by :func:`profile_files`, or the ``mbdata_WGMS-NNNNN.csv``
    beside the profile). Band columns are kept as they are (WGMS mixes 50 m bands with a few others, e.g.
    100 m bands at 2750, 2850, ... for Kesselwandferner); the caller picks the bands it can compare.
    """
    pairs = dict(files) if isinstance(files, Mapping) else {f: None for f in files}
    frames = []
    for f, mb in pairs.items():
        f = Path(f)
        if not f.exists():
            raise InputDataError(f"Profile file {f} does not exist.")
        number = _wgms_number(f)
        if ids is not None and (f.name in ids or number in ids):
            oid = str(ids.get(f.name, ids.get(number)))
        else:
            mb = Path(mb) if mb is not None else (f.with_name(f"mbdata_WGMS-{number}.csv") if number else None)
            if mb is None or not mb.exists():
                raise InputDataError(f"Cannot tell which glacier the profile {f} belongs to: no ids= entry for "
                                     f"{f.name!r} and no mbdata_WGMS file beside it; pass ids={{{f.name!r}: 'RGI..'}}.")
            oid = _first_id(mb, id_column)
        table = _CsvTable.read(f)
        bands = table.columns[1:]
        try:
            mids = np.asarray([float(c) for c in bands])
        except ValueError as err:
            raise InputDataError(f"Profile {f}: band columns must be mid-elevations in m; got {bands[:5]}.") from err
        try:
            years = table.integers(table.columns[0], np.ones(table.lines.size, dtype=bool))
        except InputDataError as err:
            raise InputDataError(f"Profile {f}: the first column must hold years. {err}") from err
        values = np.column_stack([table.numbers(c)[0] for c in bands]) if bands else np.empty((years.size, 0))
        yy, bb = np.meshgrid(years, mids, indexing="ij")
        ok = np.isfinite(values)
        frames.append(pd.DataFrame({"obs_id": oid, "year": yy[ok].astype(int), "band_mid": bb[ok],
                                    "smb": mm_we_to_m_we(values[ok]), "source": f.name}))
    if not frames:
        raise InputDataError("No profile files were given.")
    out = pd.concat(frames, ignore_index=True)
    dup = out.duplicated(["obs_id", "year", "band_mid"])
    if dup.any():
        raise InputDataError(f"Duplicated profile values (id, year, band): "
                             f"{out.loc[dup, ['obs_id', 'year', 'band_mid']].values.tolist()[:5]}.")
    return out.sort_values(["obs_id", "year", "band_mid"], ignore_index=True)


def read_areas(files: Sequence[str | Path], *, id_column: str = "RGI_ID") -> pd.DataFrame:
    """The glacier area WGMS reports with each annual balance: ``obs_id``, ``year``, ``area_km2``,
    ``name`` (WGMS NAME, empty if absent), ``source``. Years without an AREA are left out."""
    frames = []
    for f in map(Path, files):
        if not f.exists():
            raise InputDataError(f"Observation file {f} does not exist.")
        table = _CsvTable.read(f)
        missing = [c for c in ("YEAR", "AREA", id_column) if c not in table.columns]
        if missing:
            raise InputDataError(f"{f} lacks columns {missing} (has {table.columns}); WGMS mbdata files have "
                                 "YEAR, AREA (km2) and the glacier id column.")
        area, blank = table.numbers("AREA")
        keep = ~blank
        frames.append(pd.DataFrame({
            "obs_id": table.text(id_column, keep), "year": table.integers("YEAR", keep), "area_km2": area[keep],
            "name": table.cells["NAME"][keep].astype(str) if "NAME" in table.cells else "", "source": f.name}))
    if not frames:
        raise InputDataError("No observation files were given.")
    return pd.concat(frames, ignore_index=True)


def unit_raster(glacier_id: xr.DataArray, unit_of_outline: np.ndarray) -> xr.DataArray:
    """The observation-unit index of every pixel (0: no unit) from the outline-index raster and the
    ``unit_of_outline`` map of :func:`link_units`; lazy with dask inputs."""
    lut = np.asarray(unit_of_outline)
    return xr.apply_ufunc(lambda g: lut[g], glacier_id, dask="parallelized", output_dtypes=[lut.dtype])
