"""The ``glacgrid`` command line: one verb per pipeline stage, calling the same functions as Python.

Every command takes ``-v/--verbose`` (repeatable) and ``-q/--quiet`` (also before the verb:
``glacgrid -q run run.toml``); the commands with an output directory write ``glacgrid.log`` there
(:mod:`glacgrid.logs`). Choices are checked against glacgrid's own lists (``MODEL_KINDS``, ``SCHEMES``,
``CLUSTER_KINDS``, ``EXPORT_FORMATS``, ...), so the help and the error of a wrong value list them.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import inspect
import logging
import sys
from pathlib import Path
from typing import List, NoReturn, Optional

import typer

from . import __version__
from .atomic import write_csv
from .config import CLUSTER_KINDS, TRAININGS
from .exceptions import ConfigError, GlacgridError, InputDataError
from .logs import CLI_LOGGER, LogSession, current_session
from .logs import session as log_session

log = logging.getLogger(CLI_LOGGER)

_HELP = ("glacgrid: glacier surface mass balance and geometry on chunked grids.\n\n"
         "Example: glacgrid demo --out demo-output")
# rich_markup_mode=None: plain click help, so that "[cluster]" and other bracketed text is printed as written
_SETTINGS = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, help=_HELP,
                  context_settings=_SETTINGS, pretty_exceptions_enable=False)

_META_VERBOSE, _META_QUIET = "glacgrid.verbose", "glacgrid.quiet"
_VERBOSE_HELP = ("more output, repeatable: -v glacgrid's INFO messages and third-party warnings, -vv DEBUG "
                 "(the run log glacgrid.log then holds DEBUG too)")
_QUIET_HELP = "print errors only (results, progress and warnings still go to the run log glacgrid.log)"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"glacgrid {__version__}")
        raise typer.Exit()


@app.callback()
def _main(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="print the version and exit"),
          verbose: int = typer.Option(0, "--verbose", "-v", count=True, help=_VERBOSE_HELP, show_default=False),
          quiet: bool = typer.Option(False, "--quiet", "-q", help=_QUIET_HELP)) -> None:
    ctx.meta[_META_VERBOSE] = verbose
    ctx.meta[_META_QUIET] = quiet


class _OneOf:
    """The parser of an option whose value is one of a tuple that glacgrid defines once (``MODEL_KINDS``,
    ``SCHEMES``, ... or the keys of a mapping such as ``ANN_PRESETS``), imported when a value is first
    checked, so that ``glacgrid --help`` and ``--version`` do not import torch and xarray. A wrong value
    is a usage error that lists the valid ones. ``comma=True``: a comma-separated list of them.

    Parameters
    ----------
    module : str or None
        Where the tuple lives, relative to glacgrid (``".models"``); None: ``name`` is the tuple.
    name : str or tuple of str
        Its name in ``module`` (or the tuple itself).
    extra : tuple of str
        Values in front of those, e.g. ``("none",)``.
    comma : bool
        Accept a comma-separated list.
    """

    def __init__(self, module: str | None, name, extra: tuple[str, ...] = (), *, comma: bool = False) -> None:
        self._spec = (module, name, tuple(extra))
        self._loaded: tuple[str, ...] | None = None
        self.comma = comma

    @property
    def choices(self) -> tuple[str, ...]:
        """The valid values."""
        if self._loaded is None:
            module, name, extra = self._spec
            values = name if module is None else getattr(importlib.import_module(module, __package__), name)
            self._loaded = (*extra, *values)
        return self._loaded

    def __call__(self, value: str) -> str:
        items = (_csv_list(value) or []) if self.comma else [value]
        bad = [v for v in items if v not in self.choices]
        if bad or (self.comma and not items):
            listed = ", ".join(self.choices)
            what = " (comma-separated)" if self.comma else ""
            raise typer.BadParameter(f"{', '.join(map(repr, bad or [value]))} is not one of {listed}{what}.")
        return value


def _check_cluster(value: str | None) -> str | None:
    """``--cluster``: one of ``CLUSTER_KINDS`` or a scheduler address (checked like ``[cluster] kind``)."""
    import dataclasses

    from .config import ClusterConfig, cluster_problems

    if value is None or value.strip() in CLUSTER_KINDS:
        return value
    if cluster_problems(dataclasses.replace(ClusterConfig(), kind=value.strip())):
        raise typer.BadParameter(f"{value!r} is neither one of {', '.join(CLUSTER_KINDS)} nor a scheduler "
                                 "address such as tcp://10.0.0.5:8786.")
    return value


def _logs() -> LogSession:
    """The logging session of the running command (a quiet-less one outside a command)."""
    return current_session() or LogSession()


def _say(message: object) -> None:
    """A line of the command's output: stdout (not with -q) and the run log."""
    log.info("%s", message)


def _note(message: object) -> None:
    """A line for a person beside a machine-readable stdout: stderr (not with -q) and the run log."""
    log.info("%s", message, extra={"terminal": False})
    if not _logs().quiet:
        typer.echo(message, err=True)


def _file_only(message: object) -> None:
    """A line for the run log only (what rich has already shown on the terminal)."""
    log.info("%s", message, extra={"terminal": False})


def _run_log(directory) -> None:
    """Write ``glacgrid.log`` into ``directory`` for the rest of the command."""
    path = _logs().add_run_log(directory)
    if path is not None:
        log.debug("run log: %s", path)


def _route_cluster_logs(client, settings) -> None:
    """Once the cluster is up: distributed (imported by now) prints through the session's handlers, and the
    worker processes of the LocalCluster this command started route their messages and warnings like this
    process, into the same run log. The workers of other clusters (Slurm, MPI, a gateway, a scheduler
    someone else runs) are left as they are: they keep their own logs."""
    logs = _logs()
    logs.reroute()
    if client is None or settings.kind != "local":
        return
    from .logs import worker_logging

    path = str(logs.log_files[-1].resolve()) if logs.log_files else None
    try:
        client.run(worker_logging, path, logs.verbose, logs.quiet)
    except Exception as err:  # noqa: BLE001 - a worker that cannot be reached never stops the run
        log.debug("worker logging not set up: %s", err)


def _scheduler_alias(scheduler: str | None, cluster: str | None) -> str | None:
    """The deprecated ``--scheduler ADDRESS``: the same as ``--cluster ADDRESS``, with a warning."""
    if scheduler is None:
        return cluster
    log.warning("--scheduler is deprecated and will be removed; use --cluster %s", scheduler)
    if cluster is not None and cluster != scheduler:
        raise typer.BadParameter(f"--scheduler {scheduler} and --cluster {cluster} disagree: give --cluster only.",
                                 param_hint="--scheduler")
    return scheduler


_SCHEDULER_ALIAS = typer.Option(None, "--scheduler", hidden=True, callback=_check_cluster,
                                help="deprecated: use --cluster ADDRESS")

#: What to do about the operating-system errors a user can fix (by errno).
_OS_FIXES = {
    errno.ENOSPC: "Free space on that filesystem (or point the output elsewhere) and run the same command again: "
                  "what was finished is kept and the rest resumes.",
    errno.EDQUOT: "Your disk quota is exhausted: free space (or point the output elsewhere) and run the same "
                  "command again; what was finished is kept.",
    errno.EACCES: "Check the permissions of that path (ls -ld), or write to a directory you own.",
    errno.EPERM: "Check the permissions of that path (ls -ld), or write to a directory you own.",
    errno.EROFS: "That filesystem is read-only: write the output to another directory.",
    errno.EFBIG: "A file grew past the size limit of this process or filesystem (see `ulimit -f`): raise the "
                 "limit or write to another filesystem, and run the same command again.",
    errno.ENOENT: "Check the path: it (or its parent directory) does not exist.",
}


def _os_message(err: OSError) -> str:
    """One line for an operating-system error: what failed, on which file, and what to do."""
    what = err.strerror or str(err)
    files = [f for f in (err.filename, err.filename2) if f is not None]
    where = f": {' -> '.join(map(str, files))}" if files else ""
    code = f" ({errno.errorcode[err.errno]})" if err.errno in errno.errorcode else ""
    fix = _OS_FIXES.get(err.errno, "Check the file system and the path, then run the same command again.")
    return f"{what}{code}{where}. {fix}"


def _fail(err: BaseException) -> NoReturn:
    """Print the error as one line, ``error (Type): message`` (never a traceback), and exit with status 2."""
    text = _os_message(err) if isinstance(err, OSError) and not isinstance(err, GlacgridError) else str(err)
    line = f"error ({type(err).__name__}): {' '.join(text.split())}"
    log.error("%s", line, extra={"terminal": False})
    typer.secho(line, fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


_VERBOSITY = (
    inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                      default=typer.Option(0, "--verbose", "-v", count=True, help=_VERBOSE_HELP, show_default=False)),
    inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                      default=typer.Option(False, "--quiet", "-q", help=_QUIET_HELP)),
    inspect.Parameter("glacgrid_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
)


def _command(typer_app: typer.Typer, *args, **kwargs):
    """``typer_app.command(...)`` whose command takes ``-v/--verbose`` and ``-q/--quiet`` (added to its own
    options, combined with those before the verb), runs inside a :func:`glacgrid.logs.session`, and turns
    a :class:`GlacgridError` or an :class:`OSError` (disk full, permission denied) into the one-line
    message of :func:`_fail`."""
    register = typer_app.command(*args, **kwargs)

    def decorate(fn):
        @functools.wraps(fn)
        def guarded(*a, verbose: int = 0, quiet: bool = False, glacgrid_context: typer.Context, **kw):
            meta = glacgrid_context.meta  # shared with the group's context: -v/-q given before the verb
            verbose += meta.get(_META_VERBOSE, 0)
            quiet = quiet or meta.get(_META_QUIET, False)
            with log_session(verbose, quiet):
                try:
                    return fn(*a, **kw)
                except (GlacgridError, OSError) as err:
                    _fail(err)

        sig = inspect.signature(fn)
        guarded.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *_VERBOSITY])
        guarded.__annotations__ = {**fn.__annotations__, "verbose": int, "quiet": bool,
                                   "glacgrid_context": typer.Context}
        return register(guarded)

    return decorate


def _csv_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _chunks(value: str | None) -> dict[str, int] | None:
    if not value:
        return None
    try:
        return {k.strip(): int(v) for k, v in (item.split("=") for item in value.split(",") if item.strip())}
    except ValueError:
        raise typer.BadParameter(f"--chunks {value!r}: expected e.g. time=-1,lat=64,lon=64") from None


@_command(app)
def ingest(files: List[Path] = typer.Argument(..., help="a recipe (.toml), or ERA5-Land monthly netCDF/GRIB files"),
           out: Optional[Path] = typer.Option(None, "--out", help="target Zarr store (with files)"),
           invariant: Optional[Path] = typer.Option(None, help="invariant file with geopotential z"),
           variables: Optional[str] = typer.Option(None, help="comma-separated, e.g. t2m,tp"),
           chunks: Optional[str] = typer.Option(None, help="store chunks, e.g. time=-1,lat=64,lon=64"),
           append: bool = typer.Option(False, help="add new months to an existing store"),
           engine: str = typer.Option("dask", parser=_OneOf(".ingest", "ENGINES"), metavar="{dask|beam}",
                                       help="ingest engine"),
           beam_option: Optional[List[str]] = typer.Option(None, help="Beam pipeline option, repeatable"),
           overwrite: bool = typer.Option(False, help="replace an existing store with another schema")):
    """Ingest ERA5-Land monthly files into an analysis-ready Zarr cube.

    Example: glacgrid ingest era5land/*.nc --invariant invariant.nc --variables t2m,tp --out cube.zarr

    Example: glacgrid ingest recipes/era5land_monthly.toml --engine beam
    """
    from .ingest import ingest as run_ingest
    from .ingest import run_recipe

    if len(files) == 1 and files[0].suffix == ".toml":
        if out is not None or invariant is not None or variables or chunks:
            raise typer.BadParameter("a recipe names its store, invariant, variables and chunks; "
                                     "drop --out/--invariant/--variables/--chunks or pass files")
        path = run_recipe(files[0], engine=engine, overwrite=overwrite, append=append or None,
                          beam_options=beam_option)
    else:
        if out is None:
            raise typer.BadParameter("--out STORE.zarr is needed when ingesting files (or give one recipe .toml)")
        path = run_ingest(files, out, invariant=invariant, variables=_csv_list(variables), chunks=_chunks(chunks),
                          overwrite=overwrite, append=append, engine=engine, beam_options=beam_option)
    _say(f"wrote {path}")


@_command(app)
def rechunk(store: Path = typer.Argument(..., help="cube from `glacgrid ingest`"),
            out: Path = typer.Option(..., "--out", help="target Zarr store"),
            chunks: str = typer.Option("time=1,lat=-1,lon=-1", help="target chunks (-1: whole dimension)"),
            overwrite: bool = typer.Option(False, help="replace an existing target store")):
    """Copy a cube with other chunks: one map per chunk by default, for map-like access.

    Example: glacgrid rechunk cube.zarr --out cube-maps.zarr --chunks time=12,lat=-1,lon=-1
    """
    from .ingest import rechunk as run_rechunk

    path = run_rechunk(store, out, chunks=_chunks(chunks), overwrite=overwrite)
    _say(f"wrote {path}")


@_command(app)
def mask(outlines: Path = typer.Argument(..., help="RGI v6 or v7 outlines (shapefile or GeoPackage)"),
         grid: Path = typer.Option(..., "--grid", help="DEM GeoTIFF defining the target grid"),
         out: Path = typer.Option(..., "--out", help="target Zarr store"),
         id_column: str = typer.Option("auto", help="column with glacier ids (auto: RGIId or rgi_id)"),
         chunks: int = typer.Option(512, help="chunk size in pixels"),
         supersample: int = typer.Option(4, help="sub-pixels per side for glacier_fraction"),
         rel_tol: float = typer.Option(0.01, help="relative area tolerance (at least half a pixel of perimeter)")):
    """Rasterise glacier outlines into a glacier-index raster and fractional cover, with an area report.

    Writes STORE (glacier_id, glacier_fraction, pixel_area) and STORE.glaciers.csv (one row per
    outline: outline, inventory and raster area, tolerance, overlap, status).

    Example: glacgrid mask rgi.shp --grid dem.tif --out masks.zarr
    """
    from .cube import write_dataset
    from .grid import TargetGrid
    from .masks import glacier_table, rasterize_glaciers, read_outlines

    g = TargetGrid.from_raster(grid, chunks=chunks)
    gdf = read_outlines(outlines, id_column)
    ds = rasterize_glaciers(gdf, g, supersample=supersample)
    ds["pixel_area"] = g.pixel_area()
    write_dataset(ds, out, region_dim="y", overwrite=True)
    table = glacier_table(gdf, ds["glacier_id"], ds["pixel_area"], grid=g, rel_tol=rel_tol)
    write_csv(table, out.with_suffix(".glaciers.csv"))
    _say(table.to_string(max_rows=40))
    flagged = table[table["status"] != "ok"]
    _say(f"{len(table)} outlines (RGI v{gdf.attrs['rgi_version'] or '?'}), {len(flagged)} flagged, "
               f"{len(gdf.attrs['overlaps'])} overlapping pairs, {len(gdf.attrs['repaired'])} repaired geometries")
    _say(f"wrote {out} and {out.with_suffix('.glaciers.csv')}")


@_command(app)
def mosaic(thickness_dir: Path = typer.Argument(..., help="folder of RGIvv-rr.NNNNN_thickness.tif tiles"),
           dem_dir: Path = typer.Argument(..., help="folder of dem_NNNNN.asc.tif tiles (same grids)"),
           out: Path = typer.Option(..., "--out", help="output folder: one <name>_<EPSG>.zarr per projection"),
           name: str = typer.Option("alps", help="store name prefix"),
           epsg: Optional[str] = typer.Option(None, help="comma-separated EPSG codes (default: all present)"),
           chunks: int = typer.Option(2048, help="square chunk size in pixels"),
           overwrite: bool = typer.Option(False, help="rebuild existing stores (default: resume them)")):
    """Assemble per-glacier thickness and DEM tiles into one regional Zarr cube per projection.

    Example: glacgrid mosaic ../shared/data/alps/farinotti_thickness ../shared/data/alps/farinotti_dem --out alps/
    """
    from .mosaic import build_mosaic, mosaic_totals, open_mosaic

    try:
        codes = [int(c) for c in _csv_list(epsg)] if epsg else None
        done = build_mosaic(thickness_dir, dem_dir, out, chunks=chunks, epsgs=codes, overwrite=overwrite, name=name)
        for s in done:
            tab = mosaic_totals(open_mosaic(s.path))
            write_csv(tab, s.path.with_suffix(".glaciers.csv"))
            _say(f"EPSG:{s.epsg}: {s.glaciers} glaciers, {s.shape[0]} x {s.shape[1]} px, "
                       f"area {tab['area_km2'].sum():.2f} km2 (tiles {tab['tile_area_km2'].sum():.2f}), "
                       f"volume {tab['volume_km3'].sum():.3f} km3 + overlap {tab.attrs['overlap_volume_km3']:.3f} "
                       f"(tiles {tab['tile_volume_km3'].sum():.3f}); resampled: {', '.join(s.resampled) or 'none'}; "
                       f"wrote {s.path}")
    except ValueError as err:  # a tile that rasterio or pyproj refuses
        _fail(err)


@_command(app)
def downscale(cube: Path = typer.Argument(..., help="climate cube from `glacgrid ingest`"),
              grid: Path = typer.Option(..., "--grid", help="DEM GeoTIFF: target grid and elevation"),
              out: Path = typer.Option(..., "--out", help="target Zarr store"),
              lapse_rate: float = typer.Option(-0.0065, help="K m-1"),
              monthly_lapse_rates: bool = typer.Option(False, help="fit monthly lapse rates on the ERA5-Land cells "
                                                                  "around the grid (replaces --lapse-rate)"),
              precip_factor: float = typer.Option(1.0),
              precip_gradient: float = typer.Option(0.0, help="m-1"),
              snow_threshold: float = typer.Option(0.0, help="degC: all solid below"),
              rain_threshold: float = typer.Option(2.0, help="degC: all liquid above"),
              method: str = typer.Option("bilinear", parser=_OneOf(".downscale.regrid", "METHODS"),
                                        metavar="{bilinear|conservative}", help="regridding method"),
              engine: str = typer.Option("auto", parser=_OneOf(".downscale.regrid", "ENGINES"),
                                        metavar="{auto|glacgrid|xarray-regrid|odc-geo}",
                                        help="regridding engine (xarray-regrid: lat/lon grids)"),
              chunks: int = typer.Option(512)):
    """Downscale the climate cube to a DEM grid (regridding + lapse rate + precipitation correction).

    Writes temp (degC), prcp and prcp_solid (kg m-2) and reference_elevation (m).

    Example: glacgrid downscale cube.zarr --grid dem.tif --out downscaled.zarr --lapse-rate -0.0065
    """
    from .config import DownscaleParams
    from .cube import open_store, write_dataset
    from .downscale import downscale as run_downscale
    from .downscale import solid_precipitation
    from .downscale.lapse import fit_lapse_rates
    from .grid import TargetGrid
    from .units import convert

    g = TargetGrid.from_raster(grid, chunks=chunks)
    params = DownscaleParams(lapse_rate=lapse_rate, precip_factor=precip_factor, precip_gradient=precip_gradient,
                             snow_threshold=snow_threshold, rain_threshold=rain_threshold)
    climate = open_store(cube, require_complete=True)  # never downscale the cube of a killed ingest
    rates = fit_lapse_rates(climate, g) if monthly_lapse_rates else None
    ds = run_downscale(climate, g, g.read(grid), params, method=method, engine=engine, lapse_rates=rates)
    ds["prcp_solid"] = solid_precipitation(ds["temp"], ds["prcp"], params)
    write_dataset(ds, out, region_dim="time", overwrite=True)
    if rates is not None:
        _say("monthly lapse rates (K/km): " + ", ".join(f"{v:.2f}" for v in convert(rates.values, "K m-1", "K km-1")))
    _say(f"wrote {out}")


#: Table formats of `glacgrid features` (glacgrid.features.io.write_features checks the same two).
_TABLE_FORMATS = ("csv", "parquet")


@_command(app)
def features(config: Path = typer.Argument(..., help="run configuration (TOML)"),
             out: Path = typer.Option(..., "--out", help="directory for features.zarr and features.csv"),
             fmt: str = typer.Option("csv", "--format", parser=_OneOf(None, _TABLE_FORMATS),
                                     metavar="{csv|parquet}", help="table format"),
             monthly: bool = typer.Option(False, help="also the 12 monthly temperatures and snowfalls"),
             reference: Optional[str] = typer.Option(None, help="anomaly reference years, e.g. 1991-2010"),
             ablation: str = typer.Option("0.1,0.9", help="CPDD fractions opening/closing the ablation season"),
             era5: Optional[str] = typer.Option(None, "--era5-variables",
                                                help="comma-separated ingested ERA5-Land variables as monthly features")):
    """Glacier-wide features for every glacier and hydrological year of a config's period.

    Writes OUT/features.zarr (with its FeatureSchema), OUT/features.csv (glacier, rgi_id, year, features)
    and, when the config names observations, OUT/observed.csv with an `smb` column for `glacgrid cv`.

    Example: glacgrid features examples/hef.toml --out hef-features --monthly --reference 1982-2018
    """
    from .config import load_config
    from .pipeline import run_features

    ref = None
    if reference:
        parts = reference.split("-")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ConfigError(f"--reference must look like 1991-2010, got {reference!r}.")
        ref = (int(parts[0]), int(parts[1]))
    try:
        abl = tuple(float(v) for v in ablation.split(","))
    except ValueError:
        abl = ()
    if len(abl) != 2:
        raise ConfigError(f"--ablation must be two fractions like 0.1,0.9, got {ablation!r}.")
    cfg = load_config(config)
    _run_log(out)
    paths = run_features(cfg, out, fmt=fmt, monthly=monthly, reference=ref, ablation=abl,
                         era5_variables=_csv_list(era5) or ())
    _say("wrote " + ", ".join(str(p) for p in paths.values()))


def _read_table(path: Path):
    import pandas as pd

    if not path.exists():
        raise InputDataError(f"Table {path} does not exist. Check the path (a feature table from `glacgrid "
                             "features`, CSV or Parquet).")
    return pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)


def _search_grid(value: str | None) -> dict | None:
    """``--search``: JSON (``{"C": [0.3, 1, 3]}``) or ``C=0.3,1,3;epsilon=0.05,0.1`` -> option -> values."""
    import json

    if not value:
        return None
    try:
        if value.lstrip().startswith("{"):
            grid = json.loads(value)
        else:
            grid = {}
            for item in (i for i in value.split(";") if i.strip()):
                name, values = item.split("=", 1)
                grid[name.strip()] = [_scalar(v) for v in values.split(",") if v.strip()]
    except ValueError as err:
        raise ConfigError(f"--search {value!r} is not understood ({err}); expected e.g. 'C=0.3,1,3;epsilon=0.05,0.1' "
                          "or JSON '{\"hidden\": [[32, 16], [64]]}'.") from None
    if not isinstance(grid, dict) or not grid or any(not isinstance(v, list) or not v for v in grid.values()):
        raise ConfigError(f"--search {value!r}: every option needs a non-empty list of values, e.g. 'C=0.3,1,3'.")
    return grid


def _scalar(text: str):
    """A number (int or float) when ``text`` is one, else the stripped string."""
    import json

    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


@_command(app)
def train(table: Path = typer.Argument(..., help="feature table (CSV or Parquet)"),
          target: str = typer.Option(..., help="target column (m w.e.)"),
          features: str = typer.Option(..., help="comma-separated feature columns"),
          model: str = typer.Option("lasso", parser=_OneOf(".models", "MODEL_KINDS"),
                              metavar="{lasso|ols|ridge|svr|rf|gbm|ann}", help="model kind"),
          ann_preset: Optional[str] = typer.Option(None, parser=_OneOf(".models", "ANN_PRESETS"),
                                                   metavar="{alpgm|point}",
                                                   help="ANN preset"),
          weights: str = typer.Option("none", parser=_OneOf(".models", "WEIGHTINGS", ("none",)),
                              metavar="{none|kde|frequency}",
                                      help="sample weights"),
          monotone: bool = typer.Option(False, "--monotone", help="SMB monotone in temperature / snowfall "
                                        "features by construction (lasso, ols, ridge, rf, gbm, ann)"),
          threads: int = typer.Option(1, help="torch threads of the ANN"),
          seed: int = typer.Option(0),
          out: Path = typer.Option(..., "--out", help="model artifact directory")):
    """Fit an SMB model on a feature table and save it without pickle.

    Linear models: JSON; SVR/forests: JSON + numeric .npz; ANN: JSON + tensor-only state dict.
    Feature units come from glacgrid's variable registry ("1" for unknown columns).

    Example: glacgrid train features.csv --target smb --features cpdd,snow_winter --model ann
    --ann-preset alpgm --out model
    """
    from .metadata import registry
    from .models import FeatureSchema, make_model, sample_weights

    df = _read_table(table)
    names = tuple(_csv_list(features) or ())
    missing = [c for c in (*names, target) if c not in df.columns]
    if missing:
        raise InputDataError(f"Columns {missing} are not in {table} (columns: {list(df.columns)}).")
    reg = registry()
    schema = FeatureSchema(names, tuple(reg.get(n, {}).get("units", "1") for n in names))
    y = df[target].to_numpy("float64")
    w = sample_weights(y, None if weights == "none" else weights)
    opts = {"preset": ann_preset} if ann_preset else {}
    if monotone:
        opts["monotone"] = True
    if model == "ann":
        opts["threads"] = threads
    m = make_model(model, seed=seed, **opts).fit(df[list(names)].to_numpy("float64"), y, schema,
                                                 sample_weight=w)
    path = m.to_artifact(out)
    _say(f"wrote {path}")


@_command(app)
def cv(table: Path = typer.Argument(..., help="feature table (CSV or Parquet)"),
       target: str = typer.Option(..., help="target column (m w.e.)"),
       glacier_col: str = typer.Option(..., help="glacier id column"),
       year_col: str = typer.Option(..., help="year column"),
       features: str = typer.Option(..., help="comma-separated feature columns"),
       model: str = typer.Option(..., parser=_OneOf(".models", "MODEL_KINDS"),
                              metavar="{lasso|ols|ridge|svr|rf|gbm|ann}", help="model kind"),
       scheme: str = typer.Option(..., parser=_OneOf(".models", "SCHEMES"),
                               metavar="{logo|loyo|lsygo|kfold|random}", help="cross-validation scheme"),
       ann_preset: Optional[str] = typer.Option(None, parser=_OneOf(".models", "ANN_PRESETS"), metavar="{alpgm|point}",
                                                help="ANN preset"),
       weighting: str = typer.Option("none", parser=_OneOf(".models", "WEIGHTINGS", ("none",)),
                              metavar="{none|kde|frequency}",
                                     help="sample weights from each fold's training target"),
       ensemble: int = typer.Option(0, help="members of an ensemble per fold (0: one model)"),
       ensemble_method: str = typer.Option("seeds", parser=_OneOf(".models", "ENSEMBLE_METHODS"),
                                           metavar="{seeds|bootstrap}",
                                           help="how ensemble members differ"),
       search: Optional[str] = typer.Option(None, help="nested hyperparameter search inside each outer fold, "
                                            "e.g. 'C=0.3,1,3;epsilon=0.05,0.1' or JSON"),
       monotone: bool = typer.Option(False, "--monotone", help="monotone models (lasso, ols, ridge, rf, gbm, ann)"),
       threads: int = typer.Option(1, help="torch threads of the ANN"),
       n_splits: int = typer.Option(5, help="folds of the kfold scheme"),
       k: int = typer.Option(2, help="lsygo group size (k glaciers x k years)"),
       seed: int = typer.Option(0),
       out: Path = typer.Option(..., "--out", help="RESULT.json")):
    """Cross-validate a model on a feature table; print metrics and write out-of-fold predictions.

    RESULT.json holds the overall and per-fold metrics (r, r2, rmse, mae, bias) and one record per
    held-out row (glacier, year, observed, predicted, fold), and the options used.

    Example: glacgrid cv features.csv --target smb --glacier-col rgi_id --year-col year
    --features cpdd,snow_winter,snow_summer --model gbm --monotone --scheme kfold --weighting kde
    --search 'learning_rate=0.05,0.1' --out cv.json
    """
    from .models import cross_validate

    df = _read_table(table)
    if ensemble < 0 or ensemble == 1:
        raise ConfigError(f"--ensemble {ensemble}: use 0 for one model or at least 2 members.")
    opts = {"preset": ann_preset} if ann_preset else {}
    if monotone:
        opts["monotone"] = True
    if model == "ann":
        opts["threads"] = threads
    if ensemble:
        opts.update(ensemble=ensemble, ensemble_method=ensemble_method)
    res = cross_validate(df, target=target, features=_csv_list(features) or [], glacier_col=glacier_col,
                         year_col=year_col, kind=model, scheme=scheme, seed=seed,
                         weighting=None if weighting == "none" else weighting, search=_search_grid(search),
                         k=k, n_splits=n_splits, **opts)
    res.to_json(out)
    _say(res.per_fold.to_string(index=False, float_format=lambda v: f"{v:.3f}", max_colwidth=60))
    _say("overall: " + "  ".join(f"{k}={v:.3f}" for k, v in res.metrics.items())
               + f"  (n={len(res.predictions)}, {len(res.per_fold)} folds)")
    _say(f"wrote {out}")


@_command(app, "check-physics")
def check_physics_cmd(model_dir: Path = typer.Argument(..., help="model artifact directory from `glacgrid train`"),
                      table: Optional[Path] = typer.Option(None, help="probe rows: a feature table (CSV or Parquet) "
                                                           "holding the model's features; default: the training "
                                                           "means stored in the model"),
                      n_probe: int = typer.Option(50, help="at most this many probe rows (a seeded sample)"),
                      amplitude: float = typer.Option(10.0, help="amplitude (K) of the sinusoidal annual cycle "
                                                      "that warms degree days when monthly temperatures are "
                                                      "not features"),
                      json_out: Optional[Path] = typer.Option(None, "--json", help="also write the report as JSON")):
    """Sweep each temperature / snowfall feature of a model and report monotonicity violations and the
    SMB sensitivity per K at +1..+4 K.

    A violation is a probe row on which SMB rises with degree days or temperature, or falls with
    snowfall or precipitation, anywhere on a sweep of the feature over its training mean +- 2.5 std.
    The exit status is 0 whatever is found: read the table.

    Example: glacgrid check-physics model --table features.csv --json physics.json
    """
    from rich.console import Console
    from rich.table import Table

    from .models import check_physics, load_model
    from .models.schema import write_json_atomic

    m = load_model(model_dir)
    rep = check_physics(m, None if table is None else _read_table(table), n_probe=n_probe,
                        amplitude=amplitude)
    console = Console(soft_wrap=True, quiet=_logs().quiet)
    label = "monotone by construction" if rep.monotone else "not constrained"
    console.print(f"{model_dir}: {rep.kind} model, {label}; {rep.n_probe} probe row(s) from {rep.probe_source}",
                  highlight=False)
    viol = Table(title="Monotonicity sweeps")
    for col in ("feature", "SMB must", "rows violating", "max violation (m w.e.)"):
        viol.add_column(col, justify="left" if col in ("feature", "SMB must") else "right")
    for v in rep.violations:
        viol.add_row(v.feature, "not rise" if v.sign < 0 else "not fall", f"{v.rows_violating}/{v.n_rows}",
                     f"{v.max_violation:.4f}")
    console.print(viol)
    sens = Table(title=f"Warming (degree days {rep.degree_days})")
    for col in ("step", "mean SMB after (m w.e.)", "sensitivity (m w.e./K)"):
        sens.add_column(col, justify="right")
    sens.add_row("+0 K", f"{rep.smb_mean[0]:.3f}", "")
    for a, b, smb, s in zip(rep.warming, rep.warming[1:], rep.smb_mean[1:], rep.sensitivity):
        sens.add_row(f"+{a:g} -> +{b:g} K", f"{smb:.3f}", f"{s:+.3f}")
    console.print(sens)
    console.print(f"sensitivity 0..+2 K: {rep.sensitivity_0_2:+.3f} m w.e./K; +2..+4 K: {rep.sensitivity_2_4:+.3f} "
                  f"m w.e./K (snowfall held); total violations: {rep.total_violations}", highlight=False)
    for note in rep.notes:
        console.print(f"note: {note}", highlight=False)
    if json_out is not None:
        write_json_atomic(json_out, rep.to_dict())
        _say(f"wrote {json_out}")


@_command(app)
def infer(model_dir: Path = typer.Argument(..., help="model artifact directory from `glacgrid train`"),
          table: Path = typer.Argument(..., help="feature table (CSV or Parquet)"),
          out: Path = typer.Option(..., "--out", help="CSV with a `predicted` column added")):
    """Apply a saved model to a feature table (columns are checked against the model's schema).

    Example: glacgrid infer model features.csv --out predictions.csv
    """
    from .models import load_model, predict_frame

    m = load_model(model_dir)
    df = _read_table(table)
    df["predicted"] = predict_frame(m, df)
    write_csv(df, out, index=False)
    _say(f"wrote {out} ({len(df)} rows)")


@_command(app)
def evolve(state: Path = typer.Argument(..., help="Zarr store with glacier_id, thickness, surface, pixel_area"),
           smb: Path = typer.Option(..., help="CSV with columns glacier (index), smb (m w.e.) and optionally year"),
           out: Path = typer.Option(..., "--out", help="Zarr store of the new state"),
           rho_ice: float = typer.Option(900.0, help="kg m-3"),
           rho_water: float = typer.Option(1000.0, help="kg m-3"),
           curves: Optional[Path] = typer.Option(None, help="glacier-specific delta-h curves (.zarr or .csv) "
                                                 "from `glacgrid calibrate-deltah`"),
           report: Optional[Path] = typer.Option(None, help="CSV of the per-glacier (and per-year) report")):
    """Delta-h geometry update (Huss et al. 2010, mass conserving) for all glaciers at once.

    With a `year` column in the SMB CSV the years are applied in order and the report gives area,
    volume and volume change per glacier and year and the year each glacier disappeared in.

    Example: glacgrid evolve work/static.zarr --smb smb.csv --out state-next.zarr --curves curves.csv
    """
    import pandas as pd
    import xarray as xr

    from .cube import open_store, write_dataset
    from .geometry import deltah_update
    from .geometry import evolve as evolve_years
    from .geometry.calibrate import read_curves

    st = open_store(state, require_complete=True)
    st = st[["glacier_id", "thickness", "surface", "pixel_area"]]
    st["thickness"] = st["thickness"].fillna(0.0)
    df = pd.read_csv(smb)
    missing = [c for c in ("glacier", "smb") if c not in df.columns]
    if missing:
        raise InputDataError(f"SMB table {smb} lacks column(s) {missing}; it has {list(df.columns)}. "
                             "Expected glacier, smb (m w.e.) and optionally year.")
    cur = read_curves(curves) if curves is not None else None
    kw = dict(rho_ice=rho_ice, rho_water=rho_water, curves=cur)
    if "year" in df.columns:
        table = df.set_index(["year", "glacier"])["smb"].to_xarray()
        new, rep = evolve_years(st, table.astype("float64"), **kw)
    else:
        da = xr.DataArray(df["smb"].to_numpy("float64"), dims="glacier",
                          coords={"glacier": df["glacier"].to_numpy()})
        new, rep = deltah_update(st, da, **kw)
    write_dataset(new, out, region_dim="y", overwrite=True)
    frame = rep.compute().drop_vars("disappeared_year", errors="ignore").to_dataframe()
    if report is not None:
        write_csv(frame, report)
    _say(frame.to_string(max_rows=40))
    if "disappeared_year" in rep:
        gone = rep["disappeared_year"].to_series()
        _say(f"glaciers that disappeared: {int((gone > 0).sum())}")
    _say(f"wrote {out}")


@_command(app, "calibrate-deltah")
def calibrate_deltah_cmd(
        dh_dir: Path = typer.Argument(..., help="folder of dh_<name>.tif elevation-change rasters (m)"),
        dem_dir: Path = typer.Argument(..., help="folder of DEM_<name>.tif rasters on the same grids (m)"),
        out: List[Path] = typer.Option(..., "--out", help="curves file(s): .zarr (all) and/or .csv (table)"),
        outlines: Optional[Path] = typer.Option(None, help="outlines; only pixels inside the outline named "
                                                "like the raster are used"),
        name_field: str = typer.Option("Glacier", help="outline attribute with the glacier name"),
        encoding: str = typer.Option("latin-1", help="encoding of the outline attributes"),
        plot: Optional[Path] = typer.Option(None, help="PNG of the calibrated curves")):
    """Calibrate glacier-specific delta-h curves from observed elevation change (dh rasters + DEM).

    Example: glacgrid calibrate-deltah ../shared/data/alps/dh_1979_2011 ../shared/data/alps/dem_1979_2011_mean
    --outlines ../shared/data/alps/outlines_2015/glaciers_2015_05.shp --out curves.zarr --out curves.csv
    --plot curves.png
    """
    from .geometry.calibrate import STATUS, calibrate_deltah, plot_curves, read_dh_pairs, write_curves

    px = read_dh_pairs(dh_dir, dem_dir, outlines, name_field=name_field, encoding=encoding)
    cur = calibrate_deltah(px["glacier_id"], px["dem"], px["dh"], names=px["name"])
    for path in out:
        write_curves(cur, path)
        _say(f"wrote {path}")
    if plot is not None:
        plot_curves(cur, plot)
        _say(f"wrote {plot}")
    counts = cur["status"].to_series().value_counts().sort_index()
    for code, n in counts.items():
        _say(f"{STATUS[int(code)]:>28s}: {n}")


def _early_lock(target, purpose: str, settings, *, shared: bool = False):
    """The run lock of an output directory, taken before a dask cluster starts, so that a second run on it
    is refused at once (the pipeline takes it again, re-entrantly). Not under dask-mpi: there the scheduler
    and worker ranks never return from starting the cluster, and the run's rank takes the lock in the
    pipeline."""
    from .pipeline.outdir import run_lock

    if settings.kind == "mpi":
        return contextlib.nullcontext()
    return run_lock(target, purpose=purpose, shared=shared)


_CLUSTER_HELP = (f"dask cluster, one of {', '.join(CLUSTER_KINDS)} or a scheduler ADDRESS: local (default; "
                 "worker processes on this machine), threads (no worker processes), slurm (SLURMCluster from the "
                 "[cluster] section), mpi (dask-mpi), gateway (dask-gateway), or an address such as "
                 "tcp://host:8786")
_CLUSTER = typer.Option(None, "--cluster", callback=_check_cluster, help=_CLUSTER_HELP,
                        metavar="{" + "|".join(CLUSTER_KINDS) + "|ADDRESS}")


def _print_summary(result) -> None:
    from rich.console import Console

    from .outputs import summary_lines

    console = Console(quiet=_logs().quiet)
    console.rule("[bold]glacgrid summary")
    for line in summary_lines(result):
        console.print(line, highlight=False)
        _file_only(line)


@_command(app)
def run(config: Optional[Path] = typer.Argument(None, help="run configuration (TOML)"),
        scheduler: Optional[str] = _SCHEDULER_ALIAS,
        cluster: Optional[str] = _CLUSTER,
        tile: Optional[int] = typer.Option(None, "--tile", help="run only this region tile into the shared results "
                                           "store (after `glacgrid tiles prepare`; one Slurm array task per tile)"),
        groups: Optional[str] = typer.Option(None, "--groups", help="domain run: only groups a..b-1 (a:b) into the "
                                             "shared results store, after `glacgrid domain-groups` (one Slurm "
                                             "array task per range: jobs/submit_domain.sh)"),
        template: bool = typer.Option(False, "--template", help="print a commented config template and exit"),
        progress: bool = typer.Option(True, help="show a progress display")):
    """Run the whole pipeline described by a config file.

    Example: glacgrid run examples/hef.toml --cluster slurm
    """
    from .cluster import client_for, describe_client, resolve_cluster
    from .config import TEMPLATE, load_config
    from .pipeline import run as run_pipeline
    from .pipeline.outdir import purpose_of, staged_output

    if template:
        typer.echo(TEMPLATE)
        return
    if config is None:
        _fail(ConfigError("Give a config file (glacgrid run CONFIG.toml), or --template to print one."))
    cluster = _scheduler_alias(scheduler, cluster)
    cfg = load_config(config)
    # an s3:// or gs:// output directory: the run works in a local staging copy pulled from the bucket under
    # the bucket's run lock and pushed back as it goes (glacgrid.pipeline.outdir.staged_output); the tasks
    # of a Slurm array (--tile, --groups) need a local or shared output directory
    target = str(cfg.output.directory)
    staging = staged_output(cfg) if groups is None and tile is None else contextlib.nullcontext(cfg)
    with staging as cfg:
        # the run lock of the output directory first (shared by the tasks of one Slurm array): a second run on
        # the same output is refused at once, before a dask cluster is started
        what = f" --groups {groups}" if groups is not None else f" --tile {tile}" if tile is not None else ""
        settings = resolve_cluster(cfg.cluster, cluster)
        _run_log(cfg.output.directory)
        with _early_lock(cfg, f"{purpose_of(cfg, 'run')}{what}", settings, shared=bool(what)), \
                client_for(None, settings) as client:
            _route_cluster_logs(client, settings)
            _say(f"dask: {describe_client(client)}")
            if groups is not None:
                from .pipeline.domain_jobs import run_domain_groups

                done = run_domain_groups(cfg, groups)
            elif tile is not None:
                from .pipeline import run_tile

                report = run_tile(cfg, tile)
            else:
                result = run_pipeline(cfg, progress=progress and not _logs().quiet)
    if groups is not None:
        g = done["groups"]
        _say(f"groups {g[0]}:{g[-1] + 1}: {done['pixels']} pixels, {done['years']} group-years computed, "
                   f"{done['resumed_years']} found done, {done['seconds']:.1f} s")
        return
    if tile is not None:
        state = ("already done, skipped" if report["skipped"] else
                 f"{report['resumed_years']} years resumed, written in {report['seconds']:.1f} s")
        _say(f"tile {tile}: {report['glaciers']} glaciers, {report['chunks']} chunks, {state}")
        return
    _print_summary(result)
    if "://" in target:
        _say(f"outputs pushed to {target} (the paths above were the run's local staging copy)")


tiles_app = typer.Typer(no_args_is_help=True, help="Region tiles for a Slurm job array (jobs/submit_tiles.sh).")
app.add_typer(tiles_app, name="tiles")


@_command(tiles_app, "prepare")
def tiles_prepare(config: Path = typer.Argument(..., help="run configuration (TOML)"),
                  tiles: int = typer.Option(..., "--tiles", help="number of tiles wanted (fewer if the glaciers "
                                            "do not allow as many)"),
                  cluster: Optional[str] = _CLUSTER):
    """Run the shared stages once, create the results store template and plan the tiles.

    Prints the number of tiles. Example: glacgrid tiles prepare run.toml --tiles 16
    """
    from .cluster import client_for, resolve_cluster
    from .config import load_config
    from .pipeline import prepare_tiles
    from .pipeline.outdir import purpose_of

    cfg = load_config(config)
    settings = resolve_cluster(cfg.cluster, cluster)
    _run_log(cfg.output.directory)
    with _early_lock(cfg, purpose_of(cfg, "tiles prepare"), settings), client_for(None, settings) as client:
        _route_cluster_logs(client, settings)
        layout = prepare_tiles(cfg, tiles)
    for k in range(layout.n_tiles):
        _note(f"# tile {k}: {len(layout.glaciers[k])} glaciers, {len(layout.blocks[k])} chunks")
    typer.echo(layout.n_tiles)


@_command(tiles_app, "finish")
def tiles_finish(config: Path = typer.Argument(..., help="run configuration (TOML)")):
    """Write the tables and the figure of a tiled run once every tile is in the results store.

    Example: glacgrid tiles finish run.toml
    """
    from .config import load_config
    from .pipeline import finish_tiles

    cfg = load_config(config)
    _run_log(cfg.output.directory)
    result = finish_tiles(cfg)
    _print_summary(result)


@_command(tiles_app, "missing")
def tiles_missing(config: Path = typer.Argument(..., help="run configuration (TOML)")):
    """Print the tiles not yet in the results store, comma-separated (for sbatch --array).

    Example: sbatch --array=$(glacgrid tiles missing run.toml) jobs/run_tiles.sbatch run.toml
    """
    from .config import load_config
    from .pipeline import missing_tiles

    missing = missing_tiles(load_config(config))
    typer.echo(",".join(map(str, missing)))


@_command(app, "domain-groups")
def domain_groups(config: Path = typer.Argument(..., help="run configuration (TOML) with [domain]")):
    """Run the shared stages of a domain run once (ingest, domain, training, model, results template).

    Prints the number of groups (stage times on stderr). Example: glacgrid domain-groups examples/alps.toml
    """
    from .config import load_config
    from .pipeline.domain_jobs import prepare_domain

    cfg = load_config(config)
    _run_log(cfg.output.directory)
    jobs = prepare_domain(cfg)
    for name, sec in jobs.timings:
        _note(f"# {name}: {sec:.1f} s")
    _note(f"# {jobs.n_glaciers} glaciers, {jobs.n_pixels} pixels")
    typer.echo(jobs.n_groups)


@_command(app, "domain-missing")
def domain_missing(config: Path = typer.Argument(..., help="run configuration (TOML) with [domain]")):
    """Print the groups of a domain run not done yet, comma-separated.

    Example: glacgrid domain-missing examples/alps.toml
    """
    from .config import load_config
    from .pipeline.domain_jobs import missing_groups

    missing = missing_groups(load_config(config))
    typer.echo(",".join(map(str, missing)))


@_command(app, "domain-finish")
def domain_finish(config: Path = typer.Argument(..., help="run configuration (TOML) with [domain]")):
    """Write the glacier log, tables and validation of a domain run once every group is done.

    Example: glacgrid domain-finish examples/alps.toml
    """
    from .config import load_config
    from .pipeline.domain_jobs import finish_domain

    cfg = load_config(config)
    _run_log(cfg.output.directory)
    result = finish_domain(cfg)
    _print_summary(result)


#: How domain runs are cut into GeoTIFFs (glacgrid.domain.export.write_domain_geotiffs ``by``).
_EXPORT_BY = ("glacier", "zone")


@_command(app, "export")
def export(store: Path = typer.Argument(..., help="a finished store: results.zarr (dense or domain run), "
                                      "static.zarr, downscaled.zarr"),
           domain: Optional[Path] = typer.Argument(None, help="domain runs to GeoTIFF: the domain store "
                                                   "(default <store folder>/work/domain.zarr)"),
           out_folder: Optional[Path] = typer.Argument(None, help="output (the same as --out)"),
           to: str = typer.Option("geotiff", "--to", parser=_OneOf(".outputs", "EXPORT_FORMATS"),
                                  metavar="{netcdf|geotiff}", help="netcdf (one CF-1.10 netCDF-4 file) or geotiff "
                                  "(one Cloud-Optimised GeoTIFF per variable and year; domain runs: one per "
                                  "glacier or CRS zone, bands = years)"),
           out: Optional[Path] = typer.Option(None, "--out", help="the netCDF file or the GeoTIFF folder (default: "
                                              "beside the store, STORE.nc or STORE_tif)"),
           by: str = typer.Option("glacier", "--by", parser=_OneOf(None, _EXPORT_BY), metavar="{glacier|zone}",
                                  help="domain runs: glacier (one GeoTIFF per glacier window) "
                                  "or zone (one per CRS zone)")):
    """Write a store for other tools: CF netCDF (--to netcdf) or GeoTIFFs with their CRS (--to geotiff).

    Example: glacgrid export demo-output/results.zarr --to netcdf
    """
    from .outputs import export_store

    target = out if out is not None else out_folder
    files = export_store(store, to, target, domain=domain, by=by)  # (netcdf ignores domain and by)
    kind = "netCDF file" if to == "netcdf" else "GeoTIFF(s)"
    where = files[0] if to == "netcdf" else (target or (files[0].parent if files else store))
    _say(f"wrote {len(files)} {kind} ({where})")


#: Run modes (``mode`` of a run config; ``glacgrid demo --mode``).
_MODES = ("evolve", "reconstruct")


@_command(app)
def demo(out: Path = typer.Option(Path("demo-output"), "--out", help="output directory"),
         scheduler: Optional[str] = _SCHEDULER_ALIAS,
         cluster: Optional[str] = _CLUSTER,
         size: str = typer.Option("full", parser=_OneOf(".testing", "DEMO_SIZES"),
                                  metavar="{full|small}", help="region size"),
         seed: int = typer.Option(0),
         mode: str = typer.Option("evolve", parser=_OneOf(None, _MODES), metavar="{evolve|reconstruct}",
                                  help="evolve (annual delta-h loop) or reconstruct (static geometry)"),
         progress: bool = typer.Option(True, help="show a progress display")):
    """Build a seeded synthetic region and run the whole pipeline on it (evolution mode by default).

    Example: glacgrid demo --out demo-output  (or --mode reconstruct)
    """
    import time

    from .cluster import client_for, describe_client, resolve_cluster
    from .pipeline import run as run_pipeline
    from .config import ClusterConfig
    from .testing import prepare_demo

    t0 = time.perf_counter()
    cluster = _scheduler_alias(scheduler, cluster)
    # the lock covers the demo's inputs too: they are written into --out
    with _early_lock(out, f"glacgrid demo --out {out}", resolve_cluster(ClusterConfig(), cluster)):
        _run_log(out)
        cfg, region = prepare_demo(out, size=size, seed=seed, mode=mode)
        _say(f"synthetic region: {region.n_glaciers} glaciers, hydrological years {region.start}-{region.end}, "
             f"inputs in {region.directory}")
        with client_for(None, resolve_cluster(cfg.cluster, cluster)) as client:
            _route_cluster_logs(client, resolve_cluster(cfg.cluster, cluster))
            _say(f"dask: {describe_client(client)}")
            result = run_pipeline(cfg, progress=progress and not _logs().quiet)
    _print_summary(result)
    _say(f"demo finished in {time.perf_counter() - t0:.1f} s")


#: How models are trained (``[model] training``; ``glacgrid validate --training``).


@_command(app)
def validate(config: Path = typer.Argument(..., help="run configuration (TOML) with [observations]"),
             out: Path = typer.Option(Path("validation-output"), "--out", help="output directory"),
             schemes: str = typer.Option("logo,loyo", parser=_OneOf(".models", "SCHEMES", comma=True),
                                         metavar="SCHEME,...",
                                         help="cross-validation schemes, comma-separated (logo, loyo, lsygo, "
                                         "kfold)"),
             profiles: Optional[List[Path]] = typer.Option(None, "--profiles", help="WGMS profile_WGMS-*.csv "
                                                           "(default: those beside the WGMS mbdata files)"),
             evolve: Optional[bool] = typer.Option(None, "--evolve/--no-evolve", help="also run the evolution "
                                                   "and compare area and volume with WGMS (default: when "
                                                   "mode = \"evolve\")"),
             training: Optional[str] = typer.Option(None, "--training", parser=_OneOf(None, TRAININGS, comma=True),
                                                    metavar="{glacier|joint},...",
                                                    help="how the fold models are trained, "
                                                    "comma-separated: glacier (glacier-wide rows), joint "
                                                    "(glacier-wide + 50 m bands); default: [model] training")):
    """Validate a run against its observations: reconstruction LOGO/LOYO on the gridded path, 50 m
    elevation bands against WGMS profiles (band RMSE, bias and the gradients below and above the ELA),
    and (evolve) area and volume change against WGMS.

    Writes CSV tables and validation.md into --out and prints the tables. With --training glacier,joint
    glacier-wide-only and joint training are compared side by side (training_comparison.csv).

    Example: glacgrid validate examples/hef_evolve.toml --out hef-validation --training glacier,joint
    """
    from .config import load_config
    from .pipeline import validate as run_validation

    _run_log(out)
    report = run_validation(load_config(config), out, schemes=_csv_list(schemes) or ["logo"],
                            profiles=profiles or None, evolve=evolve,
                            trainings=_csv_list(training) or None)
    files = report.write(out)
    _say(report.markdown())
    _say(f"wrote {files['markdown']} and {len(files) - 1} CSV tables into {out}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
