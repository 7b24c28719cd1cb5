"""Numpy kernels of batched inference: the features of one (y, x) block built in place, then the model.

:func:`infer_block` receives the raw inputs of one spatial block -- monthly temperature and
precipitation of a few hydrological years, the reference elevation of the downscaled cube, the surface
with a one-pixel halo, the glacier-index raster, the active mask and the block's coordinates -- and
returns the SMB of its active pixels. Features are computed only on the active pixels (gathered once),
exactly as :func:`glacgrid.features.pixel_features` defines them (same expressions, same dtypes, same
order of operations: bitwise the same values), so the full feature cube never exists: the
year-independent ones with numpy, then one compiled pass (:mod:`glacgrid.inference._fused`) writes every
row -- climate from the 12 months, the static columns, the standardisation of a torch model -- straight
to its place in the layout the model gets. Every pixel's value depends on that pixel's inputs only,
never on the block's shape: results are bitwise the same for any chunking. This module imports no
xarray; the model is any object with ``predict``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from ..downscale import PixelClimate
from ..features import annual_climate, slope_aspect_at, snow_bucket
from ..features.profile import DDF_SNOW, REFERENCE_ELEVATION
from ..glaciers import CLIMATE, CLIMATE_PRODUCTS, CONSTANTS, DERIVED, EXPOSURE, PIXEL_TOPO, glacier_positions
from ..models import LinearModel, linear_predict
from ..models.ann import PAD_ROWS
from ..units import T0

__all__ = ["BlockSpec", "ROW_BATCH", "ALIGN_ROWS", "buildable", "infer_block", "block_features", "assemble",
           "assemble_rows", "assemble_climate", "static_at", "infer_pixels", "aligned_layout"]

#: Pixel-years per call of the numpy climate path (float64 climate or ablation-season predictors): bounds
#: its float64 temporaries (~1 kB per row). The compiled path works in chunks of `_fused.CHUNK` pixels.
ROW_BATCH = 32_768
#: Torch models: each pixel's row sits at a position congruent to its grid index modulo this many rows.
#: CPU GEMM kernels round a row differently depending on its position in the batch (seen: its parity),
#: so without this layout a pixel's prediction would change with the chunking at float32 rounding.
ALIGN_ROWS = 16

_tls = threading.local()


@dataclass(frozen=True, eq=False)
class BlockSpec:
    """Everything a block needs besides its arrays (small; one copy per graph).

    ``index`` is the sorted glacier index and ``constants`` the glacier constants in that order (float64).
    ``dx_scale``/``dy``: pixel size in metres; on geographic grids the pixel width is
    ``dx_scale * cos(lat)``, on projected grids ``dx_scale`` itself.
    """

    features: tuple[str, ...]
    lapse_rate: float
    snow_threshold: float
    rain_threshold: float
    winter: np.ndarray
    summer: np.ndarray
    ablation: tuple[float, float]
    crs: str
    geographic: bool
    dx_scale: float
    dy: float
    index: np.ndarray
    constants: dict = field(default_factory=dict)


def buildable(constants) -> tuple[str, ...]:
    """Feature names a block can compute given the names of the available glacier constants."""
    names = [*CLIMATE, *PIXEL_TOPO, *(c for c in CONSTANTS if c in constants), "snow_winter_dz", *EXPOSURE]
    if "max_elevation" in constants and "min_elevation" in constants:
        names += [*DERIVED, "cpdd_low"]
    return tuple(names)


#: The climate products (name -> the climate predictor it multiplies).
_PRODUCTS = dict(CLIMATE_PRODUCTS)
#: The per-pixel-year values of the compiled passes, in their order: three 12-month sums, the snow bucket.
_SUMS = ("cpdd", "snow_winter", "snow_summer", *EXPOSURE)


def _transformer(crs: str):
    """A pyproj transformer to lon/lat, one per thread and CRS."""
    cache = getattr(_tls, "transformers", None)
    if cache is None:
        cache = _tls.transformers = {}
    tr = cache.get(crs)
    if tr is None:
        from pyproj import Transformer

        tr = cache[crs] = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return tr


def _static_features(spec: BlockSpec, zpad: np.ndarray, gid_rows: np.ndarray, r: np.ndarray, c: np.ndarray,
                     ycoord: np.ndarray, xcoord: np.ndarray) -> dict[str, np.ndarray]:
    """Year-independent features (float32, one value per active pixel) that ``spec.features`` needs."""
    need = set(spec.features)
    rp, cp = r + 1, c + 1
    z = zpad[rp, cp]  # (its own dtype: the factor of snow_winter_dz is computed in it, as the xarray path does)
    yy, xx = ycoord[r].astype("float64"), xcoord[c].astype("float64")
    lon = lat = None
    if spec.geographic:
        lon, lat = xx, yy
    elif need & {"lat", "lon"}:
        lon, lat = _transformer(spec.crs).transform(xx, yy)
        lon, lat = np.asarray(lon, "float64"), np.asarray(lat, "float64")
    sa = None
    if need & {"slope", "aspect_cos", "aspect_sin", "aspect"}:
        # central differences on the halo-padded block (row - 1 is north), as np.gradient computes them
        dx = spec.dx_scale * np.cos(np.deg2rad(lat)) if spec.geographic else spec.dx_scale
        sa = slope_aspect_at(zpad[rp, cp - 1], zpad[rp, cp + 1], zpad[rp - 1, cp], zpad[rp + 1, cp], dx, spec.dy)
    return static_at(spec, z, gid_rows, lon, lat, sa)


def static_at(spec: BlockSpec, z: np.ndarray, gid: np.ndarray, lon: np.ndarray | None, lat: np.ndarray | None,
              sa: np.ndarray | None) -> dict[str, np.ndarray]:
    """Year-independent features (float32 per pixel) from each pixel's surface ``z`` (m), glacier index
    ``gid``, longitude/latitude (float64 degrees) and slope/aspect ``sa`` ((n, 3) float32: slope, cos and
    sin of the aspect, from :func:`glacgrid.features.slope_aspect_at`); ``lon``/``lat``/``sa`` may be None
    when no feature needs them. Shared by the (y, x) blocks and the packed pixels of a glacier domain.

    For the climate products (:data:`glacgrid.glaciers.CLIMATE_PRODUCTS`) the entry is the pixel's factor
    (float64): ``(z - REFERENCE_ELEVATION) / 1000`` in the dtype of ``z`` for ``snow_winter_dz``,
    ``1 - elevation_norm`` (float32) for ``cpdd_low``, the expressions of
    :func:`glacgrid.features.profile_pixel_features`."""
    need = set(spec.features)
    out: dict[str, np.ndarray] = {}
    if sa is not None:
        out["slope"], out["aspect_cos"], out["aspect_sin"] = sa[:, 0], sa[:, 1], sa[:, 2]
        if "aspect" in need:
            out["aspect"] = (np.arctan2(sa[:, 2], sa[:, 1]) % (2 * np.pi)).astype("float32")
    elev = np.asarray(z, "float64").astype("float32")
    out["mean_elevation"] = elev
    if "lat" in need:
        out["lat"] = lat.astype("float32")
    if "lon" in need:
        out["lon"] = lon.astype("float32")
    want_norm = "elevation_norm" in need or "cpdd_low" in need
    painted = [name for name in CONSTANTS if name in spec.constants and (
        name in need or (name in ("max_elevation", "min_elevation") and want_norm))]
    if painted:  # one search of the pixels' glacier ids for every constant
        at, found = glacier_positions(gid, spec.index)
        for name in painted:
            out[name] = np.where(found, spec.constants[name][at], np.nan).astype("float32")
    if want_norm:
        zmin, zmax = out["min_elevation"], out["max_elevation"]
        rng = zmax - zmin
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = (elev - zmin) / np.where(rng > 0, rng, np.float32(np.nan))
        out["elevation_norm"] = np.where(np.isnan(norm), np.float32(0.0), norm).astype("float32")
    if "snow_winter_dz" in need:
        zz = np.asarray(z)
        zz = zz if zz.dtype.kind == "f" else zz.astype("float64")
        out["snow_winter_dz"] = ((zz - REFERENCE_ELEVATION) / 1000.0).astype("float64")
    if "cpdd_low" in need:
        out["cpdd_low"] = (1.0 - out["elevation_norm"]).astype("float64")
    return out


def _climate(spec: BlockSpec, t: np.ndarray, p: np.ndarray, days: np.ndarray, kcols: list[int],
             within: np.ndarray | None = None) -> np.ndarray:
    """Columns ``kcols`` of :func:`glacgrid.features.annual_climate` for rows of 12 months (summed over the
    months ``within`` only, when given)."""
    clim = annual_climate(t, p, days, spec.winter, spec.summer, spec.snow_threshold, spec.rain_threshold,
                          spec.ablation, within)
    return clim[:, kcols]


def block_features(spec: BlockSpec, temp: np.ndarray, prcp: np.ndarray, days: np.ndarray, ref: np.ndarray,
                   zpad: np.ndarray, gid: np.ndarray, active: np.ndarray, ycoord: np.ndarray,
                   xcoord: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The feature matrix of a block's active pixels.

    Parameters
    ----------
    temp, prcp : (year, 12, ny, nx) monthly temperature (degC) at ``ref`` and precipitation (kg m-2)
    days : (year, 12) days of each month
    ref : (ny, nx) reference elevation of the downscaled temperature (m)
    zpad : (ny + 2, nx + 2) surface elevation (m) with a one-pixel halo (edge-replicated at the raster edge)
    gid, active : (ny, nx) glacier index and active-pixel mask
    ycoord, xcoord : (ny,), (nx,) pixel-centre coordinates in the grid's CRS

    Returns
    -------
    X : (year * n_active, n_features) float32, rows ordered (year, pixel), columns ``spec.features``
    r, c : (n_active,) row and column of each active pixel in the block
    """
    r, c = np.nonzero(np.asarray(active, bool))
    X, _ = assemble(spec, temp, prcp, days, ref, zpad, gid, r, c, ycoord, xcoord)
    return X, r, c


def assemble(spec: BlockSpec, temp, prcp, days, ref, zpad, gid, r: np.ndarray, c: np.ndarray, ycoord, xcoord,
             pos: np.ndarray | None = None, length: int | None = None, mean: np.ndarray | None = None,
             std: np.ndarray | None = None, zero_bad: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The features of the pixels ``(r, c)`` of a block, row ``y * n + i`` written at ``pos[y * n + i]``.

    ``length`` rows in all (default ``year * n``); rows no pixel-year lands on are 0. With ``mean`` and
    ``std`` each column is standardised, ``float32((float64(x) - mean) / std)`` as ``ANNModel.predict``
    does; with ``zero_bad`` rows holding NaN are written as zeros. Arguments as :func:`block_features`.
    With float32 climate and without the ablation-season predictors the rows are filled by one compiled
    pass (:func:`glacgrid.inference._fused.fill_rows`, same values to the bit); otherwise by numpy, in
    batches of :data:`ROW_BATCH` pixel-years.

    Returns ``(X, ok)``: ``ok`` flags the rows (of ``length``) whose features are all finite; padding
    rows are flagged too.
    """
    static = _static_features(spec, zpad, gid[r, c], r, c, ycoord, xcoord) if r.size else {}
    # temperature moved from the reference elevation to the surface (dtypes as climate_pixel_features)
    corr = spec.lapse_rate * (zpad[r + 1, c + 1] - ref[r, c]).astype("float32")
    shape3 = (temp.shape[0], 12, temp.shape[-2] * temp.shape[-1])
    return assemble_rows(spec, temp.reshape(shape3), prcp.reshape(shape3), days, corr,
                         r.astype("int64") * temp.shape[-1] + c, static, pos=pos, length=length, mean=mean, std=std,
                         zero_bad=zero_bad)


def assemble_rows(spec: BlockSpec, temp: np.ndarray, prcp: np.ndarray, days: np.ndarray, corr: np.ndarray,
                  flat: np.ndarray, static: dict, pos: np.ndarray | None = None, length: int | None = None,
                  mean: np.ndarray | None = None, std: np.ndarray | None = None,
                  zero_bad: bool = False, within: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The feature rows of pixels ``flat`` of ``(year, 12, cell)`` climate arrays (see :func:`assemble`).

    ``corr`` (float32 per pixel) moves the temperature from its reference elevation to the surface;
    ``static`` holds the year-independent features per pixel (:func:`static_at`). The (y, x) blocks pass
    their raveled block, the packed pixels of a glacier domain ``(year, 12, pixel)`` arrays directly.
    ``within`` ((12,) bool): the climate sums of a period of the year, its months only (numpy;
    :meth:`glacgrid.features.ClimateFeatureParams.within`); the static columns are taken as given.
    """
    n, ny = flat.size, temp.shape[0]
    X, ok, pos, mean, std = _rows_layout(spec, ny, n, pos, length, mean, std)
    if n == 0:
        return X, ok
    if within is not None or not _compiled(spec, temp, prcp, corr):
        raw = _numpy_rows(spec, temp, prcp, days, flat, static, corr, within)
        fin = np.isfinite(raw).all(axis=1)
        z = ((raw.astype("float64") - mean) / std).astype("float32")
        if zero_bad:
            z[~fin] = 0.0
        X[pos], ok[pos] = z, fin
        return X, ok
    from ._fused import fill_rows

    scols, table, ccols, pcols, psrc, pfac = _columns(spec, static, n)
    fill_rows(np.ascontiguousarray(temp), np.ascontiguousarray(prcp),
              np.ascontiguousarray(days, dtype="float64").reshape(ny, 12), corr,
              np.ascontiguousarray(flat, dtype="int64"), np.asarray(spec.winter, bool), np.asarray(spec.summer, bool),
              np.float32(spec.rain_threshold), np.float32(spec.rain_threshold - spec.snow_threshold), table, scols,
              ccols, pcols, psrc, pfac, float(DDF_SNOW), np.ascontiguousarray(pos, dtype="int64"), mean, std,
              bool(zero_bad), X, ok)
    return X, ok


def _compiled(spec: BlockSpec, *arrays: np.ndarray) -> bool:
    """Whether the compiled passes build these rows: float32 climate and correction, no ablation-season
    predictors, and for the snow-bucket features every month in the winter or the summer season (else
    numpy does, :func:`_numpy_rows`)."""
    every_month = bool((np.asarray(spec.winter, bool) | np.asarray(spec.summer, bool)).all())
    return (all(a.dtype == np.float32 for a in arrays)
            and not any(f in ("cpdd_ablation", "ablation_months") for f in spec.features)
            and (every_month or not any(f in EXPOSURE for f in spec.features)))


def _rows_layout(spec: BlockSpec, ny: int, n: int, pos, length, mean, std, scratch: int = 0, reuse: bool = False):
    """The output of a feature pass: ``X`` (``length`` rows, default ``ny * n``; or ``scratch`` rows of a
    compiled pass that applies the model itself), ``ok``, the row positions and the standardisation.
    ``reuse``: ``X`` is this thread's feature buffer (see :func:`_buffer`), valid until its next use."""
    rows = ny * n if length is None else int(length)
    nf = len(spec.features)
    if scratch:
        X = np.empty((scratch, nf), dtype="float32")
    elif reuse:
        X = _buffer(rows, nf)
        if pos is not None:
            from ._fused import zero_unused

            zero_unused(X, np.ascontiguousarray(pos, dtype="int64"))  # the padding rows the model reads
    else:
        X = np.empty((rows, nf), dtype="float32") if pos is None else np.zeros((rows, nf), dtype="float32")
    pos = np.arange(ny * n, dtype="int64") if pos is None else np.ascontiguousarray(pos, dtype="int64")
    mean = np.zeros(nf) if mean is None else np.asarray(mean, dtype="float64")
    std = np.ones(nf) if std is None else np.asarray(std, dtype="float64")
    return X, np.ones(rows, dtype=bool), pos, mean, std


def _buffer(rows: int, nf: int) -> np.ndarray:
    """A ``(rows, nf)`` float32 view of this thread's feature buffer, kept between calls: a run's group
    tasks of one size reuse its pages instead of faulting in a new feature matrix (tens of MB) each time.
    Its contents are those of the last call; the caller writes every row it reads."""
    buf = getattr(_tls, "rows", None)
    if buf is None or buf.size < rows * nf:
        buf = _tls.rows = np.empty(rows * nf, dtype="float32")
    return buf[:rows * nf].reshape(rows, nf)


def _columns(spec: BlockSpec, static: dict, n: int) -> tuple[np.ndarray, ...]:
    """The compiled passes' layout: the static columns of ``X`` and their ``(n, k)`` float32 table, the
    columns of CPDD, winter and summer snowfall (-1: not wanted), and the climate products' columns, the
    sum each multiplies and the ``(n, p)`` float64 table of the pixels' factors."""
    scols = np.array([j for j, f in enumerate(spec.features) if not _yearly(f)], dtype="int64")
    table = np.empty((n, scols.size), dtype="float32")
    for k, j in enumerate(scols):
        table[:, k] = static[spec.features[j]]
    ccols = np.array([spec.features.index(f) if f in spec.features else -1
                      for f in _SUMS], dtype="int64")
    pcols = np.array([j for j, f in enumerate(spec.features) if f in _PRODUCTS], dtype="int64")
    psrc = np.array([_SUMS.index(_PRODUCTS[spec.features[j]]) for j in pcols], dtype="int64")
    pfac = np.empty((n, pcols.size), dtype="float64")
    for k, j in enumerate(pcols):
        pfac[:, k] = static[spec.features[j]]
    return scols, table, ccols, pcols, psrc, pfac


def _yearly(name: str) -> bool:
    """Whether a feature changes every year (computed from the months), not a per-pixel constant."""
    return name in CLIMATE or name in _PRODUCTS or name in EXPOSURE


def _numpy_rows(spec, temp, prcp, days, flat, static, corr, within=None) -> np.ndarray:
    """The feature rows in (year, pixel) order with numpy (any dtype, ablation-season predictors, the sums
    of a period ``within``); ``temp``/``prcp`` are ``(year, 12, cell)`` and ``flat`` the pixels' cells."""
    n, ny = flat.size, temp.shape[0]
    X = np.empty((ny * n, len(spec.features)), dtype="float32")
    # climate columns, then the products: (column, annual_climate column, pixel factor or None)
    clim_cols = [(j, CLIMATE.index(f), None) for j, f in enumerate(spec.features) if f in CLIMATE]
    clim_cols += [(j, CLIMATE.index(_PRODUCTS[f]), static[f]) for j, f in enumerate(spec.features)
                  if f in _PRODUCTS]
    bucket = [(j, EXPOSURE.index(f)) for j, f in enumerate(spec.features) if f in EXPOSURE]
    for j, f in enumerate(spec.features):
        if not _yearly(f):
            X[:, j] = np.tile(static[f], ny)
    if clim_cols or bucket:
        kcols = [k for _, k, _ in clim_cols]
        for y in range(ny):
            for a in range(0, n, ROW_BATCH):
                b = min(a + ROW_BATCH, n)
                t = np.ascontiguousarray((temp[y][:, flat[a:b]] + corr[a:b]).T)
                p = np.ascontiguousarray(prcp[y][:, flat[a:b]].T)
                clim = _climate(spec, t, p, days[y], kcols, within)
                for q, (j, _, fac) in enumerate(clim_cols):
                    v = clim[:, q] if fac is None else (clim[:, q].astype("float64") * fac[a:b]).astype("float32")
                    X[y * n + a:y * n + b, j] = v
                if bucket:
                    exp = snow_bucket(t, p, days[y], spec.snow_threshold, spec.rain_threshold, DDF_SNOW, within)
                    for j, q in bucket:
                        X[y * n + a:y * n + b, j] = exp[:, q]
    return X


def _position_sensitive(model) -> bool:
    """Whether a row's prediction depends on its position in the batch (torch networks)."""
    return any(getattr(m, "kind", None) == "ann" for m in (getattr(model, "members", None) or [model]))


def aligned_layout(key: np.ndarray, period: int = ALIGN_ROWS) -> tuple[np.ndarray, int]:
    """Positions ``pos`` (a permutation into ``length`` slots) with ``pos % period == key % period``.

    Rows of the same residue fill consecutive slots of their column; unused slots are padding.
    """
    from ._fused import aligned_positions

    key = np.ascontiguousarray(key, dtype="int64")
    if key.size == 0:
        return np.zeros(0, "int64"), 0
    pos, length = aligned_positions(key, int(period))
    return pos, int(length)


def _standardising(models) -> tuple | None:
    """``(mean, std)`` when a single torch model can take standardised rows (written by the kernel)."""
    if len(models) != 1 or not hasattr(models[0], "_predict_standardised"):
        return None
    norm = models[0].norm_
    return np.asarray(norm["x_mean"], dtype="float64"), np.asarray(norm["x_std"], dtype="float64")


def infer_block(temp: np.ndarray, prcp: np.ndarray, days: np.ndarray, ref: np.ndarray, zpad: np.ndarray,
                gid: np.ndarray, active: np.ndarray, ycoord: np.ndarray, xcoord: np.ndarray, spec: BlockSpec,
                model, row0: int = 0, col0: int = 0, ncols: int = 0) -> np.ndarray:
    """SMB (m w.e., float32) of one block: ``(n_members, year, ny, nx)``, NaN off the active pixels.

    Arguments as :func:`block_features`; ``model`` has ``predict`` (an ensemble: ``members``). ``row0``,
    ``col0``: position of the block in a grid of ``ncols`` columns (the global pixel index orders the
    rows of torch models, see :func:`aligned_layout`). For torch models the features are written straight
    into the aligned layout, and for a single ANN already standardised (``ANNModel._predict_standardised``:
    the same numbers ``predict`` would feed its network), so the feature matrix is written once and read
    once. Rows with a NaN feature are zeros for the model and NaN in the result.
    """
    models = getattr(model, "members", None) or [model]
    ny = temp.shape[0]
    out = np.full((len(models), ny, *gid.shape), np.nan, dtype="float32")
    r, c = np.nonzero(np.asarray(active, bool))
    n = r.size
    if n == 0:
        return out
    if _position_sensitive(model):
        pix = (r + row0).astype("int64") * max(int(ncols), 1) + (c + col0)
        pos, length = aligned_layout(np.tile(pix, ny))
        length = -(-length // PAD_ROWS) * PAD_ROWS  # whole forward tiles: no padded copy in the model
    else:
        pos, length = np.arange(ny * n, dtype="int64"), ny * n
    norm = _standardising(models)
    X, ok = assemble(spec, temp, prcp, days, ref, zpad, gid, r, c, ycoord, xcoord, pos=pos, length=length,
                     mean=None if norm is None else norm[0], std=None if norm is None else norm[1], zero_bad=True)
    for i, pred in enumerate(_predict(models, norm, X, ok, pos)):
        out[i][:, r, c] = pred.reshape(ny, n)
    return out


def _predict(models, norm, X: np.ndarray, ok: np.ndarray, pos: np.ndarray):
    """Each member's prediction (float32) of the rows at ``pos``; NaN where a feature was NaN."""
    from ._fused import rows_at

    pos = np.ascontiguousarray(pos, dtype="int64")
    for m in models:
        full = m._predict_standardised(X) if norm is not None else m.predict(X)
        pred = np.empty(pos.size, dtype="float32")
        rows_at(np.ascontiguousarray(full, dtype="float64"), pos, ok, pred)
        yield pred


def assemble_climate(spec: BlockSpec, climate, days: np.ndarray, corr: np.ndarray, static: dict,
                     pos: np.ndarray | None = None, length: int | None = None, mean: np.ndarray | None = None,
                     std: np.ndarray | None = None, zero_bad: bool = False, linear: tuple | None = None,
                     within: np.ndarray | None = None):
    """:func:`assemble_rows` of packed pixels whose climate is a :class:`glacgrid.downscale.PixelClimate`
    (each pixel-month interpolated where it is used: one compiled pass, the same rows to the bit) or a
    ``(temp, prcp)`` pair of ``(year, 12, n)`` arrays. ``within`` ((12,) bool): the climate sums of a period
    of the year (:func:`assemble_rows`; numpy, on the materialised climate).

    With ``linear = (coef, intercept)`` (a :class:`~glacgrid.models.LinearModel`'s) the same pass applies the
    model and returns ``(None, ok, prediction)``: the prediction of each row (float64, that of
    ``LinearModel.predict`` to the bit) without the feature matrix.
    """
    return _assemble_climate(spec, climate, days, corr, static, pos, length, mean, std, zero_bad, linear, False,
                             within)


def _assemble_climate(spec, climate, days, corr, static, pos, length, mean, std, zero_bad, linear, reuse: bool,
                      within=None):
    """:func:`assemble_climate`; ``reuse``: the compiled pass writes into this thread's feature buffer."""
    if within is not None or not isinstance(climate, PixelClimate) or not _compiled(spec, corr):  # materialised
        temp, prcp = climate.materialise() if isinstance(climate, PixelClimate) else climate
        flat = np.arange(temp.shape[-1], dtype="int64")
        if linear is not None:
            X, ok = assemble_rows(spec, temp, prcp, days, corr, flat, static, pos=pos, length=length, within=within)
            return None, ok, linear_predict(X, linear[0], linear[1])
        return assemble_rows(spec, temp, prcp, days, corr, flat, static, pos=pos, length=length, mean=mean, std=std,
                             zero_bad=zero_bad, within=within)
    from ._fused import CHUNK, fill_rows_cube

    ny, _, n = climate.shape
    X, ok, pos, mean, std = _rows_layout(spec, ny, n, pos, length, mean, std, scratch=CHUNK if linear else 0,
                                         reuse=reuse)
    coef, intercept = (np.zeros(0), 0.0) if linear is None else (np.asarray(linear[0], "float64"), float(linear[1]))
    pred = np.full(ok.size, np.nan) if linear is not None else np.zeros(0)
    if n == 0:
        return (None, ok, pred) if linear is not None else (X, ok)
    scols, table, ccols, pcols, psrc, pfac = _columns(spec, static, n)
    w = climate.weights
    fill_rows_cube(climate.t2m, climate.tp, w.lat_index, w.lat_weight, w.lon_index, w.lon_weight, climate.dz,
                   climate.scale, climate.gamma, np.float32(T0), np.ascontiguousarray(days, dtype="float64").reshape(ny, 12),
                   np.ascontiguousarray(corr), np.asarray(spec.winter, bool), np.asarray(spec.summer, bool),
                   np.float32(spec.rain_threshold), np.float32(spec.rain_threshold - spec.snow_threshold), table, scols,
                   ccols, pcols, psrc, pfac, float(DDF_SNOW), pos, mean, std, bool(zero_bad), X, ok, coef, intercept,
                   pred)
    return (None, ok, pred) if linear is not None else (X, ok)


def _linear(models):
    """``(coef, intercept)`` of a single linear model (applied in the feature pass), else None."""
    if len(models) != 1 or not isinstance(models[0], LinearModel) or getattr(models[0], "coef_", None) is None:
        return None
    return np.asarray(models[0].coef_, dtype="float64"), float(models[0].intercept_)


def infer_pixels(climate, days: np.ndarray, corr: np.ndarray, static: dict, spec: BlockSpec, model,
                 key: np.ndarray | None = None) -> np.ndarray:
    """SMB (m w.e., float32) of packed pixels: ``(n_members, year, n)``.

    ``climate``: a :class:`glacgrid.downscale.PixelClimate` or a ``(temp, prcp)`` pair of ``(year, 12, n)``
    monthly temperature (degC, at the reference elevation) and precipitation (kg m-2); ``corr`` (float32,
    n) the lapse-rate correction to the surface; ``static`` the year-independent features
    (:func:`static_at`). ``key``: a global index of each pixel (torch models place each row by it, see
    :func:`aligned_layout`, so predictions do not depend on how the pixels are grouped). Features and
    predictions are those of :func:`infer_block` at the same pixels, to the bit.
    """
    models = getattr(model, "members", None) or [model]
    ny, _, n = climate.shape if isinstance(climate, PixelClimate) else climate[0].shape
    out = np.full((len(models), ny, n), np.nan, dtype="float32")
    if n == 0:
        return out
    if _position_sensitive(model):
        key = np.arange(n, dtype="int64") if key is None else np.asarray(key, dtype="int64")
        pos, length = aligned_layout(np.tile(key, ny))
        length = -(-length // PAD_ROWS) * PAD_ROWS
    else:
        pos, length = np.arange(ny * n, dtype="int64"), ny * n
    linear = _linear(models)
    if linear is not None:  # the model in the feature pass: no feature matrix
        _, ok, full = assemble_climate(spec, climate, days, corr, static, pos=pos, length=length, linear=linear)
        pred = full[pos].astype("float32")
        pred[~ok[pos]] = np.nan
        out[0] = pred.reshape(ny, n)
        return out
    norm = _standardising(models)
    X, ok = _assemble_climate(spec, climate, days, corr, static, pos, length, None if norm is None else norm[0],
                              None if norm is None else norm[1], True, None, True)  # (X: this thread's buffer)
    for i, pred in enumerate(_predict(models, norm, X, ok, pos)):
        out[i] = pred.reshape(ny, n)
    return out
