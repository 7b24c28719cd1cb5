"""The climate of a run with a ``[forcing]``: the forcing bias-adjusted into the ``[climate]`` reference and
spliced with it.

:func:`spliced_cube` reads the forcing (:func:`glacgrid.ingest.read_forcing`), adjusts it into the reference
cube per calendar month on the overlap (:func:`glacgrid.downscale.bias_adjust`) and takes the adjusted
forcing only for the months the reference does not have: a reconstruction 1901-2018 runs on CERA-20C
adjusted before 1981 and on ERA5-Land from 1981; a projection 2019-2100 on the adjusted GCM after the
reference ends. The forcing's members become a ``member`` dimension of the cube (size 1 for a single run);
in the reference's months every member carries the reference.

:func:`reference_years` gives the complete hydrological years of the reference: a run with a forcing trains
its model on those only (:func:`training_config`; the forcing never enters the training), within its
``[period]`` or not.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import xarray as xr

from ..config import RunConfig
from ..downscale import bias_adjust
from ..exceptions import GridMismatchError, InputDataError, TimeAxisError
from ..features import HydroYear
from ..ingest import read_forcing

__all__ = ["spliced_cube", "splice", "reference_years", "training_config", "FORCING_MEMBER"]

#: The dimension of the downscaled climate that holds the forcing's members (:attr:`Prepared.member_down`).
FORCING_MEMBER = "forcing_member"
_VARS = ("t2m", "tp")


def _months(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da["time"].values).astype("datetime64[M]")


def splice(adjusted: xr.Dataset, reference: xr.Dataset) -> xr.Dataset:
    """The reference where it has months, the adjusted forcing where it has none.

    Parameters
    ----------
    adjusted : xarray.Dataset
        The forcing on the reference grid (:func:`glacgrid.downscale.bias_adjust`): ``t2m``, ``tp`` on
        ``(time[, member], lat, lon)``.
    reference : xarray.Dataset
        The reference cube: ``t2m``, ``tp`` on ``(time, lat, lon)`` and ``orog`` (m).

    Returns
    -------
    xarray.Dataset
        ``t2m``, ``tp`` (float32) on ``(time, member, lat, lon)`` over the months of either, without a gap,
        every member equal to the reference in the reference's months; ``orog`` (and ``lsm``) of the
        reference; attribute ``reference_months`` (first and last month of the reference).

    Raises
    ------
    GridMismatchError, TimeAxisError
        Cubes on different grids; months missing between the forcing and the reference.
    """
    for dim in ("lat", "lon"):
        if adjusted.sizes.get(dim) != reference.sizes.get(dim) or not np.allclose(adjusted[dim], reference[dim]):
            raise GridMismatchError(f"The adjusted forcing's {dim} ({adjusted.sizes.get(dim)} values) differs from the "
                                    f"reference's ({reference.sizes.get(dim)}); adjust it with bias_adjust(forcing, "
                                    "reference), which puts it on the reference grid.")
    if "member" not in adjusted.dims:
        adjusted = adjusted.expand_dims(member=[0])
    ref_m, adj_m = _months(reference), _months(adjusted)
    ref = reference[list(_VARS)].assign_coords(time=ref_m.astype("datetime64[ns]"))
    own = adjusted[list(_VARS)].assign_coords(time=adj_m.astype("datetime64[ns]"))
    own = own.isel(time=np.flatnonzero(~np.isin(adj_m, ref_m)))
    ref = ref.expand_dims(member=adjusted["member"].values).transpose("time", "member", "lat", "lon")
    own = own.transpose("time", "member", "lat", "lon").assign_coords(lat=ref["lat"], lon=ref["lon"])
    out = xr.concat([own, ref], dim="time", coords="minimal", compat="override", combine_attrs="drop").sortby("time")
    months = _months(out)
    step = np.diff(months.astype("int64"))
    if np.any(step != 1):
        k = int(np.flatnonzero(step != 1)[0])
        raise TimeAxisError(f"The forcing and the reference leave months out between {months[k]} and {months[k + 1]} "
                            f"(forcing {adj_m[0]}..{adj_m[-1]}, reference {ref_m[0]}..{ref_m[-1]}). Use a forcing "
                            "that reaches the reference, or a [period] inside one of them.")
    out = out.astype("float32")
    for v in _VARS:
        out[v].attrs = dict(reference[v].attrs)
    for name in ("orog", "lsm"):
        if name in reference.data_vars and "time" not in reference[name].dims:
            out[name] = reference[name]
    out.attrs = {"reference_months": [str(ref_m[0]), str(ref_m[-1])],
                 "forcing_months": [str(adj_m[0]), str(adj_m[-1])],
                 "bias_adjustment": str(adjusted.attrs.get("bias_adjustment", "")),
                 "source_files": f"{reference.attrs.get('source_files', '')};{adjusted.attrs.get('source_files', '')}"}
    return out


def spliced_cube(cfg: RunConfig, reference: xr.Dataset) -> xr.Dataset:
    """The run's climate cube from ``[forcing]`` and the ``[climate]`` reference cube.

    Parameters
    ----------
    cfg : RunConfig
        A run with a ``[forcing]`` section (files, kind, invariant, members, method, overlap, n_quantiles).
    reference : xarray.Dataset
        The ingested reference cube (``t2m`` K, ``tp`` kg m-2 per month, ``orog`` m).

    Returns
    -------
    xarray.Dataset
        See :func:`splice`; loaded in memory (coarse: CERA-20C's 10 members over 1901-2018 on 42
        ERA5-Land cells are 48 MB).

    Raises
    ------
    InputDataError
        Without ``[forcing]``, or when the forcing and the reference share no month to fit on.
    """
    fc = cfg.forcing
    if fc is None:
        raise InputDataError("spliced_cube needs a run with a [forcing] section; this configuration has none. Add "
                             "[forcing] files/kind (see docs/user-guide/forcing.md) or use the [climate] cube alone.")
    forcing = read_forcing([str(p) for p in fc.files], fc.kind, invariant=fc.invariant,
                           members=list(fc.members) or None)
    ref = reference[[v for v in (*_VARS, "orog", "lsm") if v in reference]].load()
    period = (fc.overlap[0], fc.overlap[1]) if fc.overlap else None
    adjusted = bias_adjust(forcing, ref, method=fc.method, period=period, n_quantiles=fc.n_quantiles)
    return splice(adjusted, ref)


def reference_years(cfg: RunConfig, reference: xr.Dataset) -> tuple[int, int] | None:
    """The first and last complete hydrological year of the reference (None: none), the training years of a
    run with a forcing: inside ``[period]`` or not (an evolve run 2019-2100 trains on ERA5-Land 1982-2018)."""
    have = pd.DatetimeIndex(_months(reference).astype("datetime64[ns]"))
    full, _ = HydroYear(cfg.period.hemisphere).complete_years(have)
    return (min(full), max(full)) if full else None


def training_config(cfg: RunConfig, prep) -> RunConfig:
    """``cfg`` with ``[period]`` narrowed to the reference's years (``prep.reference_years``, from
    :func:`reference_years`), to build the training table from the reference climate only; ``cfg`` itself
    for a run without a ``[forcing]``.

    Raises
    ------
    InputDataError
        When no hydrological year of the period lies inside the reference.
    """
    if cfg.forcing is None:
        return cfg
    span = getattr(prep, "reference_years", None)
    if span is None:
        raise InputDataError("The [climate] reference holds no complete hydrological year: a run with a forcing "
                             "trains its model on the reference's years only. List reference files that cover at "
                             "least one whole hydrological year.")
    return replace(cfg, period=replace(cfg.period, start=span[0], end=span[1]))
