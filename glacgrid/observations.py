"""Mass-balance observations linked to outline ids: glacier-wide (WGMS or a plain table, with seasonal
balances), WGMS elevation bands, and point (stake) balances with their nearest pixels."""

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

__all__ = ["ObservedUnits", "observed_units", "read_observations", "link_units", "unit_raster", "read_profiles",
           "read_areas", "profile_files", "read_stakes", "stake_pixels"]


def read_observations(files: Sequence[str | Path], *, fmt: str = "wgms", id_column: str = "RGI_ID") -> pd.DataFrame:
    """Read observations into a frame with columns ``obs_id``, ``year``, ``smb``, ``winter``, ``summer``
    (m w.e.; ``winter`` and ``summer`` are NaN where not observed) and ``source`` (file name).

    ``fmt="wgms"``: WGMS ``mbdata`` CSVs with YEAR and ANNUAL_BALANCE (mm w.e.) and, optionally,
    WINTER_BALANCE and SUMMER_BALANCE (mm w.e.; a file without them gives NaN seasonal values). Rows
    without an annual balance are skipped, even when they hold a winter or summer balance (seasonal-only
    records). ``fmt="table"``: columns ``id_column``, ``year``, ``smb`` and optionally ``winter``,
    ``summer`` (all m w.e.).

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
        seasons = {}
        for name, column in zip(_SEASONS, _WGMS_SEASONS if fmt == "wgms" else _SEASONS):
            seasons[name] = table.numbers(column)[0][keep] if column in table.columns else np.full(keep.sum(), np.nan)
        values = {"smb": smb[keep], **seasons}
        if fmt == "wgms":
            values = {k: mm_we_to_m_we(v) for k, v in values.items()}
        frames.append(pd.DataFrame({"obs_id": ids, "year": years, **values, "source": f.name}))
    if not frames:
        raise InputDataError("No observation files were given.")
    obs = pd.concat(frames, ignore_index=True)
    dup = obs.duplicated(["obs_id", "year"])
    if dup.any():
        pairs = [[str(i), int(y)] for i, y in obs.loc[dup, ["obs_id", "year"]].itertuples(index=False)]
        raise InputDataError(f"Duplicated observations (id, year): {pairs[:5]}; keep one row per glacier and year.")
    return obs


#: Seasonal balance columns: the names in the returned frames and in WGMS ``mbdata`` files.
_SEASONS = ("winter", "summer")
_WGMS_SEASONS = ("WINTER_BALANCE", "SUMMER_BALANCE")
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
    def read(cls, path: Path, delimiter: str = ",") -> "_CsvTable":
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            text = path.read_text(encoding="latin-1")
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
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

    def required(self, column: str, rows: np.ndarray, low: float = -np.inf, high: float = np.inf) -> np.ndarray:
        """The column at ``rows`` as float64: each such cell must hold a number in ``[low, high]``."""
        values, blank = self.numbers(column)
        empty = blank & rows
        if empty.any():
            raise InputDataError(f"{self.path}: column {column!r} is empty in {int(empty.sum())} row(s) that hold a "
                                 f"value ({self._where(column, empty)}); fill it in or remove the row(s).")
        out = rows & ~blank & ((values < low) | (values > high))
        if out.any():
            raise InputDataError(f"{self.path}: column {column!r} must lie in [{low:g}, {high:g}]; got "
                                 f"{self._where(column, out)}. Check the column (lat and lon swapped? projected "
                                 "coordinates instead of degrees?).")
        return values[rows]

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
        One row per observed (``obs_id``, ``year``) with ``smb``, ``winter``, ``summer`` (m w.e.; seasonal
        values NaN where absent), from :func:`read_observations`.
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
                              **{c: pd.Series(dtype="float64") for c in ("smb", *_SEASONS)},
                              "source": pd.Series(dtype=str)})
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


# --------------------------------------------------------------------------------------------- stakes

#: Columns of the frame :func:`read_stakes` returns.
_STAKE_COLUMNS = ("obs_id", "stake", "year", "lon", "lat", "elevation", "smb", "winter", "summer", "source")
#: NVE date cells, e.g. ``07.11.2013 00:00``.
_NVE_DATE = "%d.%m.%Y %H:%M"


def read_stakes(files: Sequence[str | Path], *, fmt: str = "table", id_column: str = "RGI_ID") -> pd.DataFrame:
    """Read point (stake) mass balances into one frame, one row per stake and hydrological year.

    Parameters
    ----------
    files : sequence of str or pathlib.Path
        Stake files, all of format ``fmt``.
    fmt : {"table", "nve", "iceland"}
        ``"table"``: a CSV with columns ``id_column``, ``stake``, ``year``, ``lon``, ``lat`` (degrees,
        WGS84), at least one of ``smb``, ``winter``, ``summer`` (m w.e.) and optionally ``elevation``
        (m). ``"nve"``: the ``;``-separated NVE stake file (``RGIID``, ``location_id``, ``stake_no``,
        ``lat``, ``lon``, ``altitude``, ``balance_winter/summer/netto`` in m w.e. and survey dates
        ``dd.mm.yyyy HH:MM``). ``"iceland"``: the Icelandic ``{HOFS,LANG,VATN}_RGIIDV6.csv`` files
        (``RGIId``, ``stake``, ``yr``, ``lat``, ``lon``, ``elevation``, ``b{w,s,a}_stratigraphic`` in
        m w.e.).
    id_column : str
        The glacier-id column of ``fmt="table"`` files (the other formats name their own).

    Returns
    -------
    pandas.DataFrame
        Columns ``obs_id`` (str, the RGI id), ``stake`` (str), ``year`` (int64, the hydrological year:
        the calendar year in which the balance year ends), ``lon``, ``lat`` (degrees), ``elevation`` (m,
        NaN if unknown), ``smb``, ``winter``, ``summer`` (m w.e., NaN where not observed) and ``source``
        (file name), in file order.

    Raises
    ------
    InputDataError
        For a missing file or column, a cell that is not a number or a date, a latitude outside
        [-90, 90] or longitude outside [-180, 180], a blank id, stake or year in a row with a balance
        (naming file, line and column), or a duplicated (``obs_id``, ``stake``, ``year``).

    Notes
    -----
    A row with none of ``smb``, ``winter``, ``summer`` is not an observation and is left out.

    NVE: the year is that of the autumn survey ``dt_curr_year_min_date``, the end of the balance year.
    Where it is blank (winter-only rows) the spring survey's year (``dt_curr_year_max_date``) is used.
    About ten rows of the 2023-08-28 file have a mistyped year in one of their dates (e.g. an autumn survey
    on 27.08.1980 after a previous autumn survey on 24.11.1980): where the autumn and spring years
    differ, the year two of the three dates agree on wins (the previous autumn survey counting as the
    year before), and a row where no two agree is an error. The stake is named ``location_id/stake_no``:
    NVE reuses a stake number at two locations in the same year (e.g. STO964 at STO7 and STO9 in 1967).

    Iceland: the year is ``yr``; a row with a blank ``RGIId`` (five rows in LANG and VATN: stakes
    outside the RGI outlines) keeps an empty ``obs_id``, so it matches no glacier and is reported as
    unmatched rather than dropped.
    """
    readers = {"table": _table_stakes, "nve": _nve_stakes, "iceland": _iceland_stakes}
    if fmt not in readers:
        raise InputDataError(f"Unknown stake format {fmt!r}; use one of {sorted(readers)}.")
    frames = []
    for f in map(Path, files):
        if not f.is_file():
            raise InputDataError(f"Stake file {f} does not exist.")
        frames.append(readers[fmt](f, id_column))
    if not frames:
        raise InputDataError("No stake files were given.")
    out = pd.concat(frames, ignore_index=True)
    dup = out.duplicated(["obs_id", "stake", "year"], keep=False)
    if dup.any():
        rows = out.loc[dup, ["obs_id", "stake", "year", "source"]].values.tolist()
        raise InputDataError(f"Duplicated stake observations (id, stake, year, file): {rows[:6]}"
                             f"{' ...' if len(rows) > 6 else ''}; keep one row per stake and year, or give the "
                             "stakes distinct names.")
    return out


def _stake_frame(table: _CsvTable, ids: str | np.ndarray, stakes: str | np.ndarray, year: str | np.ndarray,
                 coords: tuple[str, str, str | None],
                 balances: tuple[str | None, str | None, str | None]) -> pd.DataFrame:
    """The standard stake frame from the columns of ``table``; ``ids``, ``stakes``, ``year``: a column
    name, or the values of all rows (already checked)."""
    values = {}
    for name, column in zip(("smb", "winter", "summer"), balances):
        values[name] = table.numbers(column)[0] if column is not None else np.full(table.lines.size, np.nan)
    keep = np.isfinite(np.column_stack(list(values.values()))).any(axis=1)
    lon_col, lat_col, elev_col = coords
    frame = {
        "obs_id": table.text(ids, keep) if isinstance(ids, str) else np.asarray(ids, dtype=object)[keep].astype(str),
        "stake": table.text(stakes, keep) if isinstance(stakes, str) else stakes[keep].astype(str),
        "year": table.integers(year, keep) if isinstance(year, str) else np.asarray(year)[keep].astype("int64"),
        "lon": table.required(lon_col, keep, -180.0, 180.0),
        "lat": table.required(lat_col, keep, -90.0, 90.0),
        "elevation": table.numbers(elev_col)[0][keep] if elev_col is not None else np.full(keep.sum(), np.nan),
        **{k: v[keep] for k, v in values.items()},
        "source": table.path.name,
    }
    return pd.DataFrame(frame, columns=list(_STAKE_COLUMNS))


def _need(table: _CsvTable, columns: Sequence[str], fmt: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputDataError(f"Stake file {table.path} lacks columns {missing} (has {table.columns}); format "
                             f"{fmt!r} needs {list(columns)}.")


def _table_stakes(path: Path, id_column: str) -> pd.DataFrame:
    table = _CsvTable.read(path)
    _need(table, [id_column, "stake", "year", "lon", "lat"], "table")
    balances = tuple(c if c in table.columns else None for c in ("smb", "winter", "summer"))
    if all(c is None for c in balances):
        raise InputDataError(f"Stake file {path} has none of the balance columns 'smb', 'winter', 'summer' (m w.e.) "
                             f"(has {table.columns}); add at least one.")
    return _stake_frame(table, id_column, "stake", "year",
                        ("lon", "lat", "elevation" if "elevation" in table.columns else None), balances)


def _iceland_stakes(path: Path, id_column: str) -> pd.DataFrame:
    table = _CsvTable.read(path)
    _need(table, ["RGIId", "stake", "yr", "lat", "lon", "elevation", "bw_stratigraphic", "bs_stratigraphic",
                  "ba_stratigraphic"], "iceland")
    return _stake_frame(table, table.cells["RGIId"], "stake", "yr", ("lon", "lat", "elevation"),
                        ("ba_stratigraphic", "bw_stratigraphic", "bs_stratigraphic"))


def _dates(table: _CsvTable, column: str, fmt: str) -> np.ndarray:
    """The column as calendar years (float, NaN where blank); a cell that is not a date is an error."""
    raw = table.cells[column]
    blank = np.array([c.lower() in _MISSING for c in raw], dtype=bool)
    when = pd.to_datetime(pd.Series(np.where(blank, None, raw)), format=fmt, errors="coerce")
    bad = ~blank & when.isna().to_numpy()
    if bad.any():
        raise InputDataError(f"{table.path}: column {column!r} holds {int(bad.sum())} cell(s) that are not dates "
                             f"like 07.11.2013 00:00 ({table._where(column, bad)}); correct or empty them.")
    return when.dt.year.to_numpy(dtype="float64", na_value=np.nan)


def _nve_stakes(path: Path, id_column: str) -> pd.DataFrame:
    table = _CsvTable.read(path, delimiter=";")
    dates = ["dt_prev_year_min_date", "dt_curr_year_max_date", "dt_curr_year_min_date"]
    balances = ("balance_netto", "balance_winter", "balance_summer")
    _need(table, ["RGIID", "location_id", "stake_no", "lat", "lon", "altitude", *balances, *dates], "nve")
    previous, spring, autumn = (_dates(table, c, _NVE_DATE) for c in dates)
    previous = previous + 1  # the previous autumn survey closes the year before
    year = np.where(np.isnan(autumn), spring, np.where(np.isnan(spring), autumn, np.nan))
    agree = np.isnan(year) & (autumn == spring)
    year[agree] = autumn[agree]
    for candidate in (autumn, spring):  # autumn and spring years differ: the previous survey decides
        pick = np.isnan(year) & ~np.isnan(autumn) & ~np.isnan(spring) & (previous == candidate)
        year[pick] = candidate[pick]
    keep = np.isfinite(np.column_stack([table.numbers(c)[0] for c in balances])).any(axis=1)
    unresolved = keep & np.isnan(year)
    if unresolved.any():
        listed = ", ".join(f"line {line}: {' / '.join(table.cells[c][k] or '-' for c in dates)}"
                           for line, k in zip(table.lines[unresolved][:5], np.flatnonzero(unresolved)[:5]))
        raise InputDataError(f"{path}: cannot tell the balance year of {int(unresolved.sum())} row(s) from the "
                             f"survey dates {dates} ({listed}): no two of them agree. Correct the mistyped date.")
    numbers = table.text("stake_no", keep)
    places = table.cells["location_id"][keep]
    stake = np.array([f"{a}/{b}" if a.lower() not in _MISSING else b for a, b in zip(places, numbers)], dtype=object)
    full = np.empty(keep.size, dtype=object)
    full[keep] = stake
    return _stake_frame(table, "RGIID", full, year, ("lon", "lat", "altitude"), balances)


#: Mean Earth radius (IUGG), m.
_EARTH_RADIUS = 6371008.8


def stake_pixels(stake_lon: np.ndarray, stake_lat: np.ndarray, stake_unit: np.ndarray, pixel_lon: np.ndarray,
                 pixel_lat: np.ndarray, pixel_unit: np.ndarray, max_distance: float) -> np.ndarray:
    """The nearest pixel of the same observation unit for every stake.

    Parameters
    ----------
    stake_lon, stake_lat : numpy.ndarray
        Stake positions (degrees, WGS84), 1-D, one per stake.
    stake_unit : numpy.ndarray
        The 1-based observation unit of every stake (int; 0 = none).
    pixel_lon, pixel_lat : numpy.ndarray
        Pixel centres (degrees, WGS84), 1-D (flatten a grid first).
    pixel_unit : numpy.ndarray
        The unit of every pixel (int; 0 = none), e.g. the flattened :func:`unit_raster`.
    max_distance : float
        The largest stake-to-pixel-centre distance accepted (m); about one pixel size keeps stakes just
        outside the outline and refuses stakes off the glacier or off the grid.

    Returns
    -------
    numpy.ndarray
        For every stake, the int64 index into the pixel arrays of the nearest pixel of the stake's unit
        within ``max_distance``; -1 where there is none (no unit, no pixel of that unit, stake too far or
        with a NaN position).

    Notes
    -----
    Distances are measured in a local equirectangular projection per unit, centred on the unit's pixels
    (``x = R cos(lat0) dlon``, ``y = R dlat``, R = 6371008.8 m): within a few km of ``lat0`` its error is
    well under 1 %, and a cKDTree finds the nearest pixel. The loop runs over units only.
    """
    from scipy.spatial import cKDTree

    stakes = [np.asarray(a) for a in (stake_lon, stake_lat, stake_unit)]
    pixels = [np.asarray(a) for a in (pixel_lon, pixel_lat, pixel_unit)]
    for kind, arrays in (("stake", stakes), ("pixel", pixels)):
        if any(a.ndim != 1 for a in arrays) or len({a.size for a in arrays}) != 1:
            raise InputDataError(f"The {kind} lon, lat and unit arrays must be 1-D and of one length; got shapes "
                                 f"{[a.shape for a in arrays]}. Flatten grids with .ravel() first.")
    if not (np.isfinite(max_distance) and max_distance >= 0):
        raise InputDataError(f"max_distance must be a distance >= 0 in m; got {max_distance!r}.")
    slon, slat = (a.astype("float64") for a in stakes[:2])
    plon, plat = (a.astype("float64") for a in pixels[:2])
    sunit, punit = stakes[2].astype("int64"), pixels[2].astype("int64")
    out = np.full(slon.size, -1, dtype="int64")
    usable_pixel = (punit > 0) & np.isfinite(plon) & np.isfinite(plat)
    usable_stake = (sunit > 0) & np.isfinite(slon) & np.isfinite(slat)
    for unit in np.unique(sunit[usable_stake]):
        pix = np.flatnonzero(usable_pixel & (punit == unit))
        if pix.size == 0:
            continue
        sel = np.flatnonzero(usable_stake & (sunit == unit))
        lon0 = plon[pix[0]]
        lon0 = lon0 + np.mean(_wrap(plon[pix] - lon0))
        lat0 = np.mean(plat[pix])
        scale = np.array([_EARTH_RADIUS * np.cos(np.deg2rad(lat0)), _EARTH_RADIUS]) * np.pi / 180.0

        def xy(lon, lat):
            return np.column_stack([_wrap(lon - lon0), lat - lat0]) * scale

        dist, k = cKDTree(xy(plon[pix], plat[pix])).query(xy(slon[sel], slat[sel]), distance_upper_bound=max_distance)
        found = np.isfinite(dist)
        out[sel[found]] = pix[k[found]]
    return out


def _wrap(dlon: np.ndarray) -> np.ndarray:
    """Longitude differences into [-180, 180) degrees."""
    return (dlon + 180.0) % 360.0 - 180.0
