"""The inputs of the delta-h update and their checks: solver settings, the pixel fields of the state, the
glacier-wide SMB, and the per-glacier pixel checks (typed :class:`~glacgrid.exceptions.GeometryError`).

The per-glacier pixel checks are :mod:`glacgrid.glaciers.checks`' (one implementation for every stage);
the messages here say how to fix the state before an update.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..exceptions import GeometryError, GridMismatchError, InputDataError, MissingVariableError
from ..glaciers import STATE_VARS, glacier_problems
from ..units import canonical, require_units

__all__ = ["REQUIRED", "DIMS", "check_params", "pixel_fields", "smb_vectors", "check_pixels", "check_negative",
           "is_dask"]

#: The pixel variables of a state, in the order of the kernels' arguments.
REQUIRED = STATE_VARS
#: The dims of the pixel variables.
DIMS = ("y", "x")


def is_dask(obj) -> bool:
    """Whether a DataArray (or any variable of a Dataset) is dask-backed."""
    if isinstance(obj, xr.Dataset):
        return any(is_dask(v) for v in obj.data_vars.values())
    return obj.chunks is not None


def check_params(rho_ice, rho_water, max_iter, rtol) -> None:
    """Raise :class:`InputDataError` on a non-positive density, ``max_iter < 1`` or a bad ``rtol``."""
    for name, value in (("rho_ice", rho_ice), ("rho_water", rho_water)):
        if not (np.isfinite(value) and value > 0):
            raise InputDataError(f"{name} must be a positive density in kg m-3; got {value!r}. "
                                 f"Pass e.g. {name}={900.0 if name == 'rho_ice' else 1000.0}.")
    if int(max_iter) != max_iter or max_iter < 1:
        raise InputDataError(f"max_iter must be an integer >= 1; got {max_iter!r}.")
    if not (np.isfinite(rtol) and rtol > 0):
        raise InputDataError(f"rtol must be a positive relative tolerance; got {rtol!r}. Try 1e-9.")


def pixel_fields(state: xr.Dataset) -> xr.Dataset:
    """The four pixel variables, on ``(y, x)``, with one chunking when any of them is dask."""
    if not isinstance(state, xr.Dataset):
        raise InputDataError(f"state must be an xarray.Dataset with {REQUIRED}; got {type(state)}.")
    missing = [v for v in REQUIRED if v not in state.variables]
    if missing:
        raise MissingVariableError(
            f"state lacks variable(s) {missing}; it has {sorted(map(str, state.data_vars))}. "
            f"deltah_update needs {list(REQUIRED)} on dims {DIMS}.")
    for name in REQUIRED:
        if set(state[name].dims) != set(DIMS) or state[name].ndim != 2:
            raise GridMismatchError(
                f"state[{name!r}] has dims {state[name].dims} and shape {state[name].shape}; expected "
                f"dims {DIMS} with sizes {dict(state.sizes)}. Broadcast it to the grid, e.g. "
                f"state[{name!r}].broadcast_like(state['thickness']).")
    if not np.issubdtype(state["glacier_id"].dtype, np.integer):
        raise GeometryError(
            f"state['glacier_id'] has dtype {state['glacier_id'].dtype}; expected an integer index "
            "(0 = no glacier). Cast it with .astype('int32') after filling NaN with 0.")
    fields = xr.Dataset({v: state[v].variable for v in REQUIRED}).transpose(*DIMS)
    dask_vars = [v for v in REQUIRED if is_dask(fields[v])]
    if dask_vars:
        fields = fields.chunk(fields[dask_vars[0]].chunksizes)
    return fields


def smb_vectors(smb: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted glacier indices and the SMB (m w.e.) aligned with them."""
    if not isinstance(smb, xr.DataArray) or smb.dims != ("glacier",) or "glacier" not in smb.coords:
        raise InputDataError(
            f"smb must be a DataArray with the single dim 'glacier' and an integer 'glacier' "
            f"coordinate of glacier indices; got {type(smb).__name__} with dims "
            f"{getattr(smb, 'dims', None)}. Build it with xr.DataArray(values, "
            "coords={'glacier': indices}, dims='glacier').")
    if canonical(smb.attrs.get("units", "m")) != "m" and smb.attrs.get("units") != "m yr-1":
        require_units(smb, "m", source="smb (glacier-wide SMB in m w.e.; m yr-1 in CF stores: per year)")
    ids = smb["glacier"].values
    if not np.issubdtype(ids.dtype, np.integer):
        raise GeometryError(f"smb's 'glacier' coordinate has dtype {ids.dtype}; expected integer "
                            "glacier indices matching state['glacier_id'].")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise InputDataError(f"smb lists glacier indices {uniq[counts > 1][:10].tolist()} more than "
                             "once; give one SMB per glacier.")
    if ids.size and ids.min() < 1:
        raise GeometryError(f"smb has glacier indices {ids[ids < 1][:10].tolist()}; indices start at "
                            "1 (0 marks pixels without a glacier). Drop them from smb.")
    order = np.argsort(ids)
    return ids[order].astype("int64"), np.asarray(smb.values, dtype="float64")[order]


def check_pixels(glaciers: np.ndarray, counts: dict[str, np.ndarray], negative: int) -> None:
    """Raise :class:`GeometryError` for the first problem of the updated ``glaciers``.

    ``counts``: per-glacier sums of :func:`glacgrid.glaciers.pixel_check_terms` (on the ice pixels),
    aligned with ``glaciers``; ``negative``: pixels with negative thickness off the updated glaciers.
    """
    absent = glaciers[~(counts["pixels"] > 0)]
    if absent.size:
        raise GeometryError(
            f"smb has glacier indices {absent[:10].tolist()} (of {absent.size}) that no pixel of "
            "state['glacier_id'] carries; expected indices present in the raster. Select "
            "smb.sel(glacier=...) with the raster's glaciers or rebuild the glacier index raster.")
    for check, failing in glacier_problems(counts):
        bad = glaciers[failing]
        if bad.size:
            raise GeometryError(f"Glacier indices {bad[:10].tolist()} (of {bad.size}) have pixels with "
                                f"{check.detail}. Fix or fill these pixels in the state before the update.")
    check_negative(negative)


def check_negative(negative: int) -> None:
    """Raise :class:`GeometryError` when ``negative`` pixels have a negative thickness."""
    if negative:
        raise GeometryError(f"state['thickness'] has {negative} negative pixel(s); thickness must be "
                            ">= 0 everywhere. Clip with thickness.clip(min=0) if they are noise.")
