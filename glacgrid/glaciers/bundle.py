"""The glacier geometry bundle: what the features, inference and simulate stages take about the glaciers."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import xarray as xr

from ..exceptions import MissingVariableError
from ..grid import TargetGrid
from .names import STATE_VARS

__all__ = ["GlacierGeometry"]


@dataclass(frozen=True, eq=False)
class GlacierGeometry:
    """The glaciers of a run on their grid: index raster, surface, pixel areas, thickness.

    One frozen hand-off for :func:`glacgrid.features.compute_features`, :func:`glacgrid.inference.infer`
    and :func:`glacgrid.simulate.annual_step`. Arrays may be numpy- or dask-backed (lazy).

    Attributes
    ----------
    glacier_id : xr.DataArray
        Glacier index raster ``(y, x)``: 0 off the glaciers, 1..N on them.
    surface : xr.DataArray
        Surface elevation ``(y, x)`` (m).
    pixel_area : xr.DataArray
        Pixel areas ``(y, x)`` (m2).
    index : numpy.ndarray
        Sorted glacier indices the stages report on (dim ``glacier``).
    grid : TargetGrid or None
        The grid of the rasters (CRS and transform: slope, aspect, lon/lat); None where not needed.
    thickness : xr.DataArray or None
        Ice thickness ``(y, x)`` (m), NaN or None where unknown.
    """

    glacier_id: xr.DataArray
    surface: xr.DataArray
    pixel_area: xr.DataArray
    index: np.ndarray
    grid: TargetGrid | None = None
    thickness: xr.DataArray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", np.asarray(self.index))

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, index: np.ndarray | None = None,
                     grid: TargetGrid | None = None) -> "GlacierGeometry":
        """From a Dataset with ``glacier_id``, ``surface``, ``pixel_area`` (and optionally ``thickness``).

        ``index`` defaults to the glacier indices present in ``glacier_id`` (which computes it).
        """
        missing = [v for v in ("glacier_id", "surface", "pixel_area") if v not in ds]
        if missing:
            raise MissingVariableError(f"The glacier geometry needs {missing}; the dataset has "
                                       f"{sorted(ds.data_vars)}. Add them (glacgrid.masks builds glacier_id).")
        if index is None:
            ids = np.unique(np.asarray(ds["glacier_id"].values))
            index = ids[ids > 0]
        return cls(ds["glacier_id"], ds["surface"], ds["pixel_area"], np.asarray(index), grid,
                   ds["thickness"] if "thickness" in ds else None)

    @property
    def active(self) -> xr.DataArray:
        """The glacier pixels (``glacier_id > 0``)."""
        return self.glacier_id > 0

    def with_surface(self, surface: xr.DataArray) -> "GlacierGeometry":
        """The same glaciers on another surface (an evolved or dated DEM)."""
        return replace(self, surface=surface)

    def with_thickness(self, thickness: xr.DataArray | None) -> "GlacierGeometry":
        """The same glaciers with another thickness."""
        return replace(self, thickness=thickness)

    def with_index(self, index: np.ndarray) -> "GlacierGeometry":
        """The same rasters, reporting on other glaciers."""
        return replace(self, index=np.asarray(index))

    def as_dataset(self) -> xr.Dataset:
        """``glacier_id``, ``thickness``, ``surface``, ``pixel_area`` as one Dataset (the state of the update)."""
        thickness = self.thickness if self.thickness is not None else xr.full_like(self.surface, np.nan)
        return xr.Dataset(dict(zip(STATE_VARS, (self.glacier_id, thickness, self.surface, self.pixel_area))))
