"""The run configuration: one validated TOML file describes a whole run.

Every section maps to a frozen dataclass. Unknown keys, wrong types, missing required values and
missing files are reported together, each with the section, the key, what was received and what was
expected. Relative paths are resolved against the directory of the config file.

Print a commented template with ``glacgrid run --template``.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import hashlib
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exceptions import ConfigError, StoreError
from .storage import is_url, location

#: The type of ``storage_options`` fields: a table of fsspec options, passed as it is.
_StorageOptions = typing.NewType("_StorageOptions", dict)

__all__ = [
    "TRAININGS",
    "config_digest",
    "cluster_problems",
    "CLUSTER_KINDS",
    "RunConfig",
    "ClimateConfig",
    "ForcingConfig",
    "GridConfig",
    "GlaciersConfig",
    "PeriodConfig",
    "DownscaleParams",
    "ModelConfig",
    "ObservationsConfig",
    "GeometryParams",
    "OutputConfig",
    "ClusterConfig",
    "DomainConfig",
    "domain_has_tiles",
    "require_dense",
    "load_config",
    "config_from_dict",
    "TEMPLATE",
]


@dataclass(frozen=True)
class ClimateConfig:
    """ERA5-Land monthly files (netCDF) and the invariant file with geopotential ``z``."""

    files: tuple[Path, ...]
    invariant: Path
    variables: tuple[str, ...] = ("t2m", "tp")


@dataclass(frozen=True)
class ForcingConfig:
    """A climate forcing beside the ``[climate]`` reference: a GCM, CESM or a reanalysis ensemble, read with
    :func:`glacgrid.ingest.read_forcing` and bias-adjusted into the reference with
    :func:`glacgrid.downscale.bias_adjust`.

    files : the forcing's netCDF files (globs allowed), split per variable and/or period.

    kind : ``cf`` (CF/CMIP ``tas``, ``pr``), ``cesm`` (``TREFHT``, ``PRECC`` + ``PRECL``) or ``era5`` (ERA5,
        CERA-20C: ``t2m``, ``tp``; ``number`` becomes ``member``).

    invariant : the forcing's orography file (optional).

    members : ensemble members to use (values of ``number``); empty: all.

    method : bias adjustment per calendar month: ``delta`` (additive temperature, multiplicative
        precipitation), ``eqm`` (empirical quantile mapping) or ``qdm`` (quantile delta mapping, keeps the
        forcing's trend).

    overlap : first and last month of the fitting period, e.g. ``["1981-01", "2000-12"]``; empty: all the
        months the forcing and the reference share.

    n_quantiles : quantiles per calendar month (eqm, qdm).
    """

    files: tuple[Path, ...]
    kind: str
    invariant: Path | None = None
    members: tuple[int, ...] = ()
    method: str = "qdm"
    overlap: tuple[str, ...] = ()
    n_quantiles: int = 20


@dataclass(frozen=True)
class GridConfig:
    """The target grid: a DEM GeoTIFF; optionally cropped to the glaciers plus ``buffer`` (CRS units)."""

    dem: Path
    chunks: int = 256
    crop_to_glaciers: bool = True
    buffer: float = 500.0


@dataclass(frozen=True)
class GlaciersConfig:
    """Glacier outlines (shapefile / GeoPackage), their id column, and an optional thickness raster."""

    outlines: Path
    id_column: str = "RGIId"
    name_column: str = ""
    thickness: tuple[Path, ...] = ()


@dataclass(frozen=True)
class PeriodConfig:
    """Hydrological years to simulate, labelled by their end year (``start``..``end`` inclusive)."""

    start: int
    end: int
    hemisphere: str = "north"


@dataclass(frozen=True)
class DownscaleParams:
    """Science parameters of the downscaling (bilinear + lapse rate).

    lapse_rate : K m-1 (negative: colder with height). precip_factor : 1.
    precip_gradient : relative increase of precipitation per metre above the climate orography (m-1).
    snow_threshold, rain_threshold : degC; all precipitation is solid below ``snow_threshold``, liquid
    above ``rain_threshold``, linear in between.
    """

    lapse_rate: float = -0.0065
    precip_factor: float = 1.0
    precip_gradient: float = 0.0
    snow_threshold: float = 0.0
    rain_threshold: float = 2.0


@dataclass(frozen=True)
class ModelConfig:
    """The SMB model, its predictors and the cross-validation scheme.

    ensemble : number of ensemble members (models of ``kind`` with seeds ``seed, seed + 1, ...``);
        0 = a single model. In reconstruct mode an ensemble writes the member mean (``smb``,
        ``smb_glacier``) and the spread across members (``smb_spread``, ``smb_glacier_spread``).

    ensemble_method : how members differ: ``seeds`` (same data, other seeds), ``bootstrap`` (each
        member fitted on a bootstrap resample of the training rows), or ``auto``: bootstrap for the
        kinds whose fit does not depend on the seed (lasso, ols, ridge, svr: seeds alone would give
        identical members and a spread of exactly 0), seeds for the others (rf, gbm, ann).

    monotone : SMB non-increasing in the temperature / degree-day features and non-decreasing in the
        snowfall features by construction (every kind but svr; :mod:`glacgrid.models.physics`); with the
        profile products, at every pixel of the glaciers.

    threads : torch threads of each ANN fit and prediction (default 1: one per worker).

    training : ``glacier`` (default): fit on the glacier-wide rows of the training table; ``joint``: one
        pixel model fitted against the glacier-wide balances and the elevation bands of the WGMS profiles
        at once, each observation the area-weighted mean of the model over its footprint
        (:mod:`glacgrid.models.footprint`; linear kinds and ann).

    band_weight : joint training: share of the loss of the band footprints relative to the glacier-wide
        balances (1.0): each kind's weight is spread over its footprints.

    band_fit : joint training: ``level`` (default): each band constrains the modelled band value itself;
        ``shape``: each glacier-year's mean band value is removed from the observed and the modelled bands,
        so the bands constrain only the profile's shape and the glacier-wide balances its level.

    season_weight : joint training: share of the loss of each group of seasonal balances (glacier-wide
        winter, glacier-wide summer, and the same for stakes) relative to the glacier-wide annual balances;
        0 (default) leaves them out.

    stake_weight : joint training: share of the loss of the annual stake balances (``[observations] stakes``)
        relative to the glacier-wide balances (1.0).
    """

    kind: str = "lasso"
    features: tuple[str, ...] = ("cpdd", "snow_winter", "snow_summer")
    cv: str = "logo"
    seed: int = 0
    ensemble: int = 0
    ensemble_method: str = "auto"
    monotone: bool = False
    threads: int = 1
    training: str = "glacier"
    band_weight: float = 1.0 / 3.0
    band_fit: str = "level"
    season_weight: float = 0.0
    stake_weight: float = 1.0


@dataclass(frozen=True)
class ObservationsConfig:
    """Glacier-wide annual mass balance to train on.

    ``format = "wgms"``: WGMS ``mbdata`` CSVs (columns YEAR, ANNUAL_BALANCE in mm w.e., and ``id_column``).
    ``format = "table"``: CSV with columns ``id_column``, ``year`` and ``smb`` in m w.e.
    ``links`` maps an observation id to one or more outline ids (e.g. a glacier split into divides);
    without a link an observation id must equal an outline id.
    ``profiles``: WGMS elevation-band profiles (``profile_WGMS-NNNNN.csv``) for joint training and
    validation; default: the ones beside the WGMS ``mbdata`` files.
    ``stakes``: point balances for joint training, each a footprint of the glacier pixel nearest to the
    stake (:func:`glacgrid.observations.read_stakes`), in ``stake_format`` (``table``, ``nve``, ``iceland``).
    """

    files: tuple[Path, ...] = ()
    format: str = "wgms"
    id_column: str = "RGI_ID"
    links: dict[str, tuple[str, ...]] = field(default_factory=dict)
    profiles: tuple[Path, ...] = ()
    stakes: tuple[Path, ...] = ()
    stake_format: str = "table"


@dataclass(frozen=True)
class GeometryParams:
    """Glacier geometry of a run.

    Attributes
    ----------
    rho_ice, rho_water : float
        Densities (kg m-3) turning m w.e. into ice thickness in the delta-h update.
    surfaces, surface_years : tuple of Path, tuple of int
        Reconstruct mode, inventory-interpolated geometry: dated surface DEMs
        (GeoTIFFs, resampled onto the grid) and their hydrological years (strictly increasing, one per
        file). Each year's features use the surface linearly interpolated in time between the two
        bracketing dated surfaces, held at the first / last one outside their range, and the grid DEM
        where they have no value. Empty (default): the static DEM every year.
    thickness_factors, deltah_factors : tuple of float
        Evolve mode, uncertainty ensemble: members are the product of
        the two lists (thickness factors outer), written along the ``member`` dimension of the results
        with coordinates ``thickness_factor`` and ``deltah_factor``. A thickness factor multiplies the
        initial ice thickness (the surface is kept: the bed moves). A delta-h factor multiplies the
        exponent ``gamma`` of each glacier's delta-h curve (Huss et al. 2010 size-class curve or its
        glacier-specific curve), which changes where the thinning happens (> 1: more concentrated at
        the terminus); 1.0 is the unperturbed curve. Default: one member (1.0, 1.0).
    """

    rho_ice: float = 900.0
    rho_water: float = 1000.0
    surfaces: tuple[Path, ...] = ()
    surface_years: tuple[int, ...] = ()
    thickness_factors: tuple[float, ...] = (1.0,)
    deltah_factors: tuple[float, ...] = (1.0,)


@dataclass(frozen=True)
class DomainConfig:
    """A run on a glacier domain (:mod:`glacgrid.domain`): every glacier pixel of the region packed along
    one ``pixel`` dimension in groups of whole glaciers, each glacier on its own CRS and raster window.

    ``thickness_tiles``/``dem_tiles``: folders of per-glacier tiles (Farinotti et al. 2019 layout) to build
    the domain from; without them it is built from ``[grid] dem`` + ``[glaciers]`` outlines and
    thickness. ``numbers``: only these tile numbers. ``store``: the domain store (default
    ``<output>/work/domain.zarr``; kept when it exists). ``group_pixels``: pixels per group (a group is
    one task and one Zarr chunk). ``year_batch``: reconstruct years computed together by a task.
    """

    store: Path | None = None
    thickness_tiles: Path | None = None
    dem_tiles: Path | None = None
    numbers: tuple[int, ...] = ()
    group_pixels: int = 262144
    year_batch: int = 4


@dataclass(frozen=True)
class OutputConfig:
    """Where a run writes (``[output]``).

    Attributes
    ----------
    directory : pathlib.Path or str
        A local folder, or an object-storage URL (``s3://bucket/prefix``, ``gs://...``; kept as a string)
        that the run writes through a local staging copy (:func:`glacgrid.pipeline.outdir.staged_output`).
    plot : bool
        Draw the figures.
    storage_options : dict
        fsspec options of an object-storage ``directory`` (``endpoint_url``, ``key``, ``secret``,
        ``client_kwargs``, ...); never shown in a repr or recorded in the configuration digest.
    """

    directory: Path = Path("glacgrid-output")
    plot: bool = True
    storage_options: _StorageOptions = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ClusterConfig:
    """The dask cluster a run uses (``glacgrid run --cluster KIND`` overrides ``kind``).

    Attributes
    ----------
    kind : str
        ``local`` (a LocalCluster on this machine), ``threads`` (dask's threaded scheduler in this
        process, ``n_workers * threads_per_worker`` threads: no worker processes to start, for small
        runs such as one tile of a job array), ``slurm`` (a dask-jobqueue SLURMCluster: one
        Slurm job per ``processes`` workers, scaled to ``n_workers`` workers), ``mpi`` (dask-mpi: the job
        was started with ``mpirun``/``srun`` and rank 0 is the scheduler, rank 1 the client), ``gateway``
        (a new dask-gateway cluster, as on a Pangeo hub), or the address of a running scheduler
        (``tcp://host:8786``, ``tls://...``, ``gateway://...``).
    n_workers, threads_per_worker, memory_limit : int, int, str
        Size of the LocalCluster; ``n_workers`` is also the
        number of workers a SLURMCluster or gateway cluster is scaled to.
    cores, processes, memory, walltime, queue, account, interface : int, int, str, str, str, str, str
        The SLURMCluster job (per job: ``cores`` CPUs and
        ``memory`` split over ``processes`` workers); empty strings mean the dask-jobqueue default.
        ``interface`` is the network interface the scheduler and workers listen on (``ib0`` on many
        clusters, ``lo`` on a single node).
    job_extra_directives, job_script_prologue, log_directory, python : tuple of str, tuple of str, str, str
        More ``#SBATCH`` lines, shell lines run before each worker, the worker log directory, and the
        worker Python (defaults to the interpreter running glacgrid).
    wait_timeout : float
        Seconds to wait for the ``n_workers`` workers of a SLURMCluster (then the run goes on
        with those connected, an error if none is) or for the first worker of a gateway cluster.
    image : str
        The container image of a gateway cluster's workers (its ``image`` cluster option, as on a Pangeo
        hub); empty: the gateway's default. A gateway cluster also gets ``cores`` and ``memory`` as its
        ``worker_cores`` and ``worker_memory`` options where the gateway offers them.
    """

    kind: str = "local"
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "4GiB"
    cores: int = 1
    processes: int = 1
    memory: str = "4GiB"
    walltime: str = "01:00:00"
    queue: str = ""
    account: str = ""
    interface: str = ""
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()
    log_directory: str = ""
    python: str = ""
    wait_timeout: float = 600.0
    image: str = ""


#: What ``[model] training`` fits on: the glacier-wide rows of the training table, or every footprint at once.
TRAININGS = ("glacier", "joint")
#: Cluster kinds besides a scheduler address.
CLUSTER_KINDS = ("local", "threads", "slurm", "mpi", "gateway")
_ADDRESS_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://", "gateway://")


def cluster_problems(c: ClusterConfig) -> list[str]:
    """What is wrong with ``[cluster]`` (empty when fine): a known kind or a scheduler address, positive
    sizes, memory with a unit, a Slurm walltime."""
    import re

    problems: list[str] = []

    if c.kind not in CLUSTER_KINDS and not c.kind.startswith(_ADDRESS_SCHEMES):
        problems.append(f"[cluster] kind = {c.kind!r} is neither one of {', '.join(CLUSTER_KINDS)} nor a scheduler "
                 "address such as 'tcp://10.0.0.5:8786'.")
    for key in ("n_workers", "threads_per_worker", "cores", "processes"):
        if getattr(c, key) < 1:
            problems.append(f"[cluster] {key} = {getattr(c, key)} must be at least 1.")
    if c.processes > c.cores:
        problems.append(f"[cluster] processes = {c.processes} exceeds cores = {c.cores}: each worker process needs a core.")
    for key in ("memory", "memory_limit"):
        if not re.fullmatch(r"\s*\d+(\.\d+)?\s*([kKmMgGtT]i?[bB]?|[bB])?\s*", getattr(c, key)):
            problems.append(f"[cluster] {key} = {getattr(c, key)!r} is not a memory size; write e.g. '4GiB' or '8GB'.")
    if not re.fullmatch(r"(\d+-)?\d{1,2}(:\d{2}){0,2}", c.walltime):
        problems.append(f"[cluster] walltime = {c.walltime!r} is not a Slurm time; write HH:MM:SS or D-HH:MM:SS.")
    if c.wait_timeout <= 0:
        problems.append(f"[cluster] wait_timeout = {c.wait_timeout} must be positive (seconds).")
    return problems


@dataclass(frozen=True)
class RunConfig:
    """A whole run. ``mode`` is ``reconstruct`` (SMB on a static or inventory-interpolated geometry, see
    :class:`GeometryParams`) or ``evolve`` (annual loop: features -> SMB -> delta-h update, with optional
    initial-thickness x delta-h-curve ensembles).

    ``grid`` and ``glaciers`` are ``None`` only in a domain run built from per-glacier tiles
    (``[domain] thickness_tiles`` and ``dem_tiles``), which needs neither a grid DEM nor outlines; the
    stages on a grid check them with :func:`require_dense`."""

    climate: ClimateConfig
    grid: GridConfig | None
    glaciers: GlaciersConfig | None
    period: PeriodConfig
    name: str = "glacgrid-run"
    mode: str = "reconstruct"
    downscale: DownscaleParams = field(default_factory=DownscaleParams)
    model: ModelConfig = field(default_factory=ModelConfig)
    observations: ObservationsConfig = field(default_factory=ObservationsConfig)
    geometry: GeometryParams = field(default_factory=GeometryParams)
    output: OutputConfig = field(default_factory=OutputConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    domain: DomainConfig | None = None
    forcing: ForcingConfig | None = None
    source: Path | None = None


_SECTIONS: dict[str, type] = {
    "climate": ClimateConfig,
    "forcing": ForcingConfig,
    "grid": GridConfig,
    "glaciers": GlaciersConfig,
    "period": PeriodConfig,
    "downscale": DownscaleParams,
    "model": ModelConfig,
    "observations": ObservationsConfig,
    "geometry": GeometryParams,
    "output": OutputConfig,
    "cluster": ClusterConfig,
    "domain": DomainConfig,
}
_TOP_LEVEL = {"name": str, "mode": str}
_CHOICES = {
    ("run", "mode"): ("reconstruct", "evolve"),
    ("period", "hemisphere"): ("north", "south"),
    ("model", "kind"): ("lasso", "ols", "ridge", "svr", "rf", "gbm", "ann"),
    ("model", "cv"): ("logo", "loyo", "lsygo", "kfold", "random"),
    ("model", "ensemble_method"): ("auto", "seeds", "bootstrap"),
    ("model", "training"): TRAININGS,
    ("model", "band_fit"): ("level", "shape"),
    ("observations", "format"): ("wgms", "table"),
    ("observations", "stake_format"): ("table", "nve", "iceland"),
    ("forcing", "kind"): ("cf", "cesm", "era5"),  # glacgrid.ingest.FORCING_KINDS
    ("forcing", "method"): ("delta", "eqm", "qdm"),  # glacgrid.downscale.METHODS
}
_FEATURES = (
    "cpdd", "snow_winter", "snow_summer", "mean_elevation", "max_elevation", "min_elevation",
    "area", "slope", "lat", "lon", "aspect_cos", "aspect_sin", "cpdd_ablation", "ablation_months",
    "elevation_norm", "snow_winter_dz", "snowfree_months", "cpdd_ice", "cpdd_low",  # profile features (joint)
)


class _Collector:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, msg: str) -> None:
        self.problems.append(msg)


def _suggest(key: str, valid: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _coerce(value: Any, tp: Any, where: str, base: Path, errs: _Collector) -> Any:
    """Check ``value`` against the annotation ``tp``; resolve paths against ``base``."""
    origin = typing.get_origin(tp)
    if tp is _StorageOptions:  # fsspec options: a table passed as it is
        if not isinstance(value, dict):
            errs.add(f"{where}: expected a table of fsspec options (e.g. {{endpoint_url = \"http://...\"}}), "
                     f"got {value!r}.")
            return None
        return dict(value)
    if tp == (Path | None):
        tp = Path
    if tp is Path:
        if not isinstance(value, str):
            errs.add(f"{where}: expected a path string, got {value!r}.")
            return None
        if is_url(value) or value.split(":/", 1)[0] in ("s3", "gs", "gcs", "az", "abfs", "abfss"):
            try:  # an fsspec URL: never resolved into a local folder named "s3:"
                loc = location(value)
            except StoreError as err:
                errs.add(f"{where}: {err}")
                return None
            if loc.local:
                return Path(loc.path)
            if where != "[output] directory":
                errs.add(f"{where} = {value!r}: object-storage URLs are accepted in [output] directory only; "
                         "copy this input to a local path.")
                return None
            return loc.url
        return (base / value).expanduser() if not Path(value).is_absolute() else Path(value)
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        items = value if isinstance(value, list) else [value]
        out = []
        for i, item in enumerate(items):
            if inner is Path and isinstance(item, str) and any(c in item for c in "*?["):
                pattern = str(base / item) if not Path(item).is_absolute() else item
                matched = sorted(glob.glob(pattern))
                if not matched:
                    errs.add(f"{where}[{i}]: the pattern {item!r} matches no file (looked in {base}).")
                out.extend(Path(m) for m in matched)
            else:
                out.append(_coerce(item, inner, f"{where}[{i}]", base, errs))
        return tuple(out)
    if origin is dict:
        if not isinstance(value, dict):
            errs.add(f"{where}: expected a table of id = [ids], got {value!r}.")
            return {}
        return {str(k): tuple(v if isinstance(v, list) else [v]) for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errs.add(f"{where}: expected a number, got {value!r}.")
            return None
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errs.add(f"{where}: expected an integer, got {value!r}.")
            return None
        return value
    if tp is bool:
        if not isinstance(value, bool):
            errs.add(f"{where}: expected true or false, got {value!r}.")
            return None
        return value
    if tp is str:
        if not isinstance(value, str):
            errs.add(f"{where}: expected a string, got {value!r}.")
            return None
        return value
    return value


def _build(cls: type, section: str, raw: Any, base: Path, errs: _Collector) -> Any:
    if not isinstance(raw, dict):
        errs.add(f"[{section}] must be a table, got {raw!r}.")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            errs.add(f"[{section}] has an unknown key {key!r}.{_suggest(key, fields)} "
                     f"Valid keys: {', '.join(fields)}.")
            continue
        kwargs[key] = _coerce(value, hints[key], f"[{section}] {key}", base, errs)
        choices = _CHOICES.get((section, key))
        if choices and kwargs[key] not in choices:
            errs.add(f"[{section}] {key} = {value!r} is not one of {', '.join(choices)}.")
    for name, f in fields.items():
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default and name not in kwargs:
            errs.add(f"[{section}] is missing the required key {name!r}.")
    if any(v is None for v in kwargs.values()):
        return None
    try:
        return cls(**kwargs)
    except TypeError as err:  # pragma: no cover - guarded above
        errs.add(f"[{section}]: {err}")
        return None


def config_from_dict(raw: dict[str, Any], base: str | Path = ".", source: Path | None = None) -> RunConfig:
    """Validate a configuration dictionary (the parsed TOML) and build a :class:`RunConfig`."""
    errs = _Collector()
    base = Path(base)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SECTIONS:
            kwargs[key] = _build(_SECTIONS[key], key, value, base, errs)
        elif key in _TOP_LEVEL:
            kwargs[key] = _coerce(value, _TOP_LEVEL[key], key, base, errs)
            if key == "mode" and value not in _CHOICES[("run", "mode")]:
                errs.add(f"mode = {value!r} is not one of {', '.join(_CHOICES[('run', 'mode')])}.")
        else:
            valid = list(_SECTIONS) + list(_TOP_LEVEL)
            errs.add(f"Unknown top-level key or section {key!r}.{_suggest(key, valid)} Valid: {', '.join(valid)}.")
    tiles = _raw_domain_tiles(raw)
    for required in ("climate", "grid", "glaciers", "period"):
        if required not in raw:
            if required in ("grid", "glaciers") and tiles:
                kwargs[required] = None  # a domain built from per-glacier tiles has its own grids and glaciers
                continue
            hint = (" (or build a glacier domain from per-glacier tiles instead: [domain] thickness_tiles and "
                    "dem_tiles)" if required in ("grid", "glaciers") else "")
            errs.add(f"The section [{required}] is required{hint}.")
    if not errs.problems:
        _check_semantics(kwargs, errs)
    if errs.problems:
        where = f" in {source}" if source else ""
        lines = "\n  - ".join(errs.problems)
        raise ConfigError(f"Invalid glacgrid configuration{where}:\n  - {lines}\n"
                          "Print a commented template with `glacgrid run --template`.")
    return RunConfig(**kwargs, source=source)


def _check_semantics(kw: dict[str, Any], errs: _Collector) -> None:
    climate: ClimateConfig = kw["climate"]
    for p in (*climate.files, climate.invariant):
        if not p.exists():
            errs.add(f"[climate] file {p} does not exist.")
    if not climate.files:
        errs.add("[climate] files is empty: list the ERA5-Land monthly netCDF files (globs allowed).")
    missing = {"t2m", "tp"} - set(climate.variables)
    if missing:
        errs.add(f"[climate] variables must include t2m and tp; missing {sorted(missing)}.")
    _check_forcing(kw.get("forcing"), errs)
    grid: GridConfig | None = kw["grid"]
    if grid is not None and not grid.dem.exists():
        errs.add(f"[grid] dem {grid.dem} does not exist.")
    if grid is not None and grid.chunks < 16:
        errs.add(f"[grid] chunks = {grid.chunks} is too small; use at least 16 (256-1024 is typical).")
    glaciers: GlaciersConfig | None = kw["glaciers"]
    for p in (glaciers.outlines, *glaciers.thickness) if glaciers is not None else ():
        if not p.exists():
            errs.add(f"[glaciers] file {p} does not exist.")
    period: PeriodConfig = kw["period"]
    if period.end < period.start:
        errs.add(f"[period] end ({period.end}) is before start ({period.start}).")
    dom: DomainConfig | None = kw.get("domain")
    tiles = dom is not None and dom.thickness_tiles is not None
    if kw.get("mode", "reconstruct") == "evolve" and not tiles and not (glaciers is not None and glaciers.thickness):
        errs.add("mode = 'evolve' needs an initial ice thickness: set [glaciers] thickness = [...] (or run on a "
                 "glacier domain of per-glacier tiles: [domain] thickness_tiles and dem_tiles).")
    model: ModelConfig = kw.get("model", ModelConfig())
    bad = [f for f in model.features if f not in _FEATURES]
    if bad:
        errs.add(f"[model] features {bad} are unknown. Available: {', '.join(_FEATURES)}.")
    if not model.features:
        errs.add("[model] features is empty.")
    obs: ObservationsConfig = kw.get("observations", ObservationsConfig())
    if not obs.files:
        errs.add("[observations] files is empty: the model needs glacier-wide SMB to train on.")
    for key in ("files", "profiles", "stakes"):
        for p in getattr(obs, key):
            if not p.exists():
                errs.add(f"[observations] {'file' if key == 'files' else key[:-1] + ' file'} {p} does not exist.")
    ds: DownscaleParams = kw.get("downscale", DownscaleParams())
    if ds.rain_threshold <= ds.snow_threshold:
        errs.add(f"[downscale] rain_threshold ({ds.rain_threshold}) must exceed snow_threshold ({ds.snow_threshold}).")
    if ds.precip_factor <= 0:
        errs.add(f"[downscale] precip_factor must be positive, got {ds.precip_factor}.")
    geom: GeometryParams = kw.get("geometry", GeometryParams())
    if geom.rho_ice <= 0 or geom.rho_water <= 0:
        errs.add("[geometry] densities must be positive.")
    _check_geometry(geom, kw.get("mode", "reconstruct"), errs)
    if model.ensemble == 1 or model.ensemble < 0:
        errs.add(f"[model] ensemble = {model.ensemble}: use 0 for a single model or at least 2 members.")
    if model.threads < 1:
        errs.add(f"[model] threads = {model.threads}: use at least 1 (torch threads of the ANN).")
    if not (model.band_weight >= 0 and model.band_weight < float("inf")):
        errs.add(f"[model] band_weight = {model.band_weight}: use a non-negative number (0: glacier-wide only).")
    for key in ("season_weight", "stake_weight"):
        v = getattr(model, key)
        if not (v >= 0 and v < float("inf")):
            errs.add(f"[model] {key} = {v}: use a non-negative number (0: leave those balances out).")
    if model.training == "joint" and model.kind not in ("lasso", "ols", "ridge", "ann"):
        errs.add(f"[model] training = 'joint' fits linear kinds and ann; kind = {model.kind!r} is not one of them.")
    errs.problems.extend(cluster_problems(kw.get("cluster", ClusterConfig())))
    if dom is not None:
        if (dom.thickness_tiles is None) != (dom.dem_tiles is None):
            errs.add("[domain] give both thickness_tiles and dem_tiles (per-glacier tile folders), or neither "
                     "(the domain is then built from [grid] dem and [glaciers]).")
        for p in (dom.thickness_tiles, dom.dem_tiles):
            if p is not None and not p.is_dir():
                errs.add(f"[domain] tile folder {p} does not exist.")
        if dom.group_pixels < 4096:
            errs.add(f"[domain] group_pixels = {dom.group_pixels} is too small; use at least 4096 (2**18 is typical).")
        if dom.year_batch < 1:
            errs.add(f"[domain] year_batch = {dom.year_batch} must be at least 1.")
        bad_numbers = [n for n in dom.numbers if n < 1]
        if bad_numbers:
            errs.add(f"[domain] numbers {bad_numbers} are not glacier numbers; expected the positive NNNNN of the "
                     "tile names (RGI60-11.NNNNN_thickness.tif), e.g. numbers = [897, 719].")
        if len(set(dom.numbers)) != len(dom.numbers):
            errs.add(f"[domain] numbers lists a glacier twice: {sorted(dom.numbers)}.")
        if dom.numbers and not tiles:
            errs.add("[domain] numbers selects per-glacier tiles; it needs thickness_tiles and dem_tiles.")


def _check_forcing(forcing: ForcingConfig | None, errs: _Collector) -> None:
    """``[forcing]``: files that exist, a period of two months ``YYYY-MM``, valid members and quantiles."""
    import re

    if forcing is None:
        return
    if not forcing.files:
        errs.add("[forcing] files is empty: list the forcing's netCDF files (globs allowed).")
    for p in (*forcing.files, *((forcing.invariant,) if forcing.invariant is not None else ())):
        if not p.exists():
            errs.add(f"[forcing] file {p} does not exist.")
    month = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
    if forcing.overlap and (len(forcing.overlap) != 2 or not all(month.fullmatch(m) for m in forcing.overlap)
                            or forcing.overlap[1] < forcing.overlap[0]):
        errs.add(f"[forcing] overlap = {list(forcing.overlap)}: give the first and last month of the fitting period, "
                 "e.g. [\"1981-01\", \"2000-12\"] (or leave it out for the whole overlap).")
    if any(m < 0 for m in forcing.members):
        errs.add(f"[forcing] members = {list(forcing.members)}: members are the non-negative values of 'number'.")
    if forcing.n_quantiles < 3:
        errs.add(f"[forcing] n_quantiles = {forcing.n_quantiles}: use at least 3 (20 is typical).")


def _raw_domain_tiles(raw: dict[str, Any]) -> bool:
    """Whether the raw ``[domain]`` table names per-glacier tile folders (then [grid]/[glaciers] are optional)."""
    dom = raw.get("domain")
    return isinstance(dom, dict) and "thickness_tiles" in dom and "dem_tiles" in dom


def domain_has_tiles(cfg: "RunConfig") -> bool:
    """Whether ``cfg`` runs on a glacier domain built from per-glacier tiles (no grid DEM, no outlines)."""
    return cfg.domain is not None and cfg.domain.thickness_tiles is not None


def require_dense(cfg: "RunConfig", what: str) -> None:
    """Raise :class:`~glacgrid.exceptions.ConfigError` unless ``cfg`` has ``[grid]`` and ``[glaciers]``.

    Parameters
    ----------
    cfg : RunConfig
        The run.
    what : str
        The stage that needs the grid (named in the message).

    Raises
    ------
    ConfigError
        When ``cfg`` is a domain run of per-glacier tiles without ``[grid]`` or ``[glaciers]``.
    """
    missing = [name for name in ("grid", "glaciers") if getattr(cfg, name) is None]
    if missing:
        where = f" ({cfg.source})" if cfg.source else ""
        raise ConfigError(f"{what} works on a grid and needs the section(s) {', '.join(f'[{m}]' for m in missing)}, "
                          f"which this configuration{where} leaves out: it runs on a glacier domain of per-glacier "
                          "tiles ([domain] thickness_tiles, dem_tiles). Run it with `glacgrid run CONFIG`, or add "
                          "[grid] dem and [glaciers] outlines for the gridded stages.")


def _check_geometry(geom: GeometryParams, mode: str, errs: _Collector) -> None:
    """``[geometry]``: dated surfaces with one increasing year each; positive ensemble factors."""
    if len(geom.surfaces) != len(geom.surface_years):
        errs.add(f"[geometry] surfaces has {len(geom.surfaces)} file(s) but surface_years has "
                 f"{len(geom.surface_years)} year(s); give one hydrological year per dated surface.")
    if any(b <= a for a, b in zip(geom.surface_years, geom.surface_years[1:])):
        errs.add(f"[geometry] surface_years = {list(geom.surface_years)} must be strictly increasing.")
    for p in geom.surfaces:
        if not p.exists():
            errs.add(f"[geometry] surface {p} does not exist.")
    if geom.surfaces and mode != "reconstruct":
        errs.add("[geometry] surfaces (interpolated geometry) apply to mode = 'reconstruct' only; in mode "
                 "'evolve' the surface evolves from the DEM. Remove them or set mode = 'reconstruct'.")
    for key in ("thickness_factors", "deltah_factors"):
        values = getattr(geom, key)
        if not values:
            errs.add(f"[geometry] {key} is empty; use [1.0] for no perturbation.")
        if any(not v > 0 for v in values):
            errs.add(f"[geometry] {key} = {list(values)} must all be positive.")
        if len(set(values)) != len(values):
            errs.add(f"[geometry] {key} = {list(values)} lists a factor twice.")
        if mode != "evolve" and tuple(values) != (1.0,):
            errs.add(f"[geometry] {key} = {list(values)} applies to mode = 'evolve' only (an ensemble of "
                     "geometry evolutions); remove it or set mode = 'evolve'.")


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML run configuration."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"Config file {path} does not exist. Print a template with `glacgrid run --template`.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}.") from err
    return config_from_dict(raw, base=path.resolve().parent, source=path)


TEMPLATE = '''\
# glacgrid run configuration. Relative paths are relative to this file.
name = "my-region"
mode = "reconstruct"            # "reconstruct" (static or interpolated geometry) or "evolve" (annual delta-h loop)

[climate]                        # ERA5-Land monthly means as downloaded from the CDS
files = ["era5land/*.nc"]        # t2m and tp, split per year / month / variable, globs allowed
invariant = "era5land/invariant.nc"   # geopotential z (and lsm)
variables = ["t2m", "tp"]

# [forcing]                      # a GCM / CESM / reanalysis ensemble bias-adjusted into [climate] (xsdba)
# files = ["cesm/*.nc"]          # netCDF files, globs allowed
# kind = "cesm"                  # cf (CMIP tas, pr), cesm (TREFHT, PRECC + PRECL) or era5 (t2m, tp; number -> member)
# invariant = ""                 # the forcing's orography (optional)
# members = []                   # ensemble members to use (empty: all)
# method = "qdm"                 # delta, eqm (empirical quantile mapping) or qdm (quantile delta mapping)
# overlap = ["1981-01", "2000-12"]   # fitting period (empty: every month shared with [climate])
# n_quantiles = 20               # quantiles per calendar month (eqm, qdm)

[grid]
dem = "dem.tif"                  # the target grid and its surface elevation (m)
chunks = 256                     # pixels per dask chunk along y and x
crop_to_glaciers = true
buffer = 500.0                   # crop margin in grid CRS units

[glaciers]
outlines = "outlines.shp"        # RGI v6 / v7 shapefile or GeoPackage
id_column = "RGIId"
name_column = ""                 # column with glacier names for tables and figures, e.g. "Name" (empty: none)
thickness = []                   # ice thickness GeoTIFFs (needed for mode = "evolve")

[period]                         # hydrological years, labelled by their end year
start = 1982
end = 2018
hemisphere = "north"             # north: 1 Oct - 30 Sep; south: 1 Apr - 31 Mar

[downscale]
lapse_rate = -0.0065             # K m-1
precip_factor = 1.0
precip_gradient = 0.0            # m-1, relative increase per metre above the climate orography
snow_threshold = 0.0             # degC
rain_threshold = 2.0             # degC

[model]
kind = "lasso"                   # lasso, ols, ridge, svr, rf, gbm, ann
features = ["cpdd", "snow_winter", "snow_summer"]
cv = "logo"                      # logo, loyo, lsygo (k glaciers x k years), kfold (by glacier), random
seed = 0
ensemble = 0                     # members of a model ensemble (0: one model); reconstruct writes mean and spread
ensemble_method = "auto"         # seeds, bootstrap, auto (bootstrap for lasso/ols/ridge/svr, seeds otherwise)
monotone = false                 # all kinds but svr: SMB monotone in degree days / snowfall by construction
threads = 1                      # torch threads of the ANN
training = "glacier"             # glacier (glacier-wide rows) or joint (glacier-wide + WGMS 50 m bands)
band_weight = 0.333              # joint: loss share of the bands relative to the glacier-wide balances (1)
band_fit = "level"               # joint: level (band values) or shape (each glacier-year's mean band removed)
season_weight = 0.0              # joint: loss share of each group of winter/summer balances (0: none)
stake_weight = 1.0               # joint: loss share of the stake balances of [observations] stakes

[observations]
files = ["mbdata_WGMS-*.csv"]
format = "wgms"                  # "wgms" (mm w.e.) or "table" (columns id, year, smb in m w.e.)
id_column = "RGI_ID"
profiles = []                    # WGMS profile_WGMS-*.csv elevation bands (empty: those beside the mbdata files)
stakes = []                      # stake balances for joint training (one glacier pixel each)
stake_format = "table"           # table (id, stake, year, lon, lat, smb/winter/summer in m w.e.), nve, iceland
[observations.links]             # observation id -> outline ids (e.g. glacier divides)
# "RGI60-11.00719" = ["RGI50-11.00719_d01", "RGI50-11.00719_d02"]

[geometry]
rho_ice = 900.0                  # kg m-3
rho_water = 1000.0               # kg m-3
# reconstruct: dated surfaces, linearly interpolated in time (held constant outside their years)
surfaces = []                    # e.g. ["dem_1979.tif", "dem_2011.tif"]
surface_years = []               # e.g. [1979, 2011], one hydrological year per surface
# evolve: uncertainty ensemble = product of the factors, a `member` dimension of the results
thickness_factors = [1.0]        # on the initial thickness, e.g. [0.7, 1.0, 1.3]
deltah_factors = [1.0]           # on the delta-h curve exponent gamma, e.g. [0.9, 1.0, 1.1]

[output]
directory = "glacgrid-output"     # or an object store: "s3://bucket/prefix" (with storage_options)
plot = true
storage_options = {}             # fsspec options of an s3:// or gs:// directory, e.g. {endpoint_url = "http://..."}

[cluster]                        # or on the command line: glacgrid run CONFIG --cluster slurm
kind = "local"                   # local, threads, slurm (dask-jobqueue), mpi (dask-mpi), gateway, tcp://host:8786
n_workers = 2                    # workers (LocalCluster; a SLURMCluster / gateway cluster is scaled to this)
threads_per_worker = 1
memory_limit = "4GiB"            # per LocalCluster worker
# kind = "slurm": one Slurm job per `processes` workers
cores = 1                        # CPUs per job
processes = 1                    # worker processes per job
memory = "4GiB"                  # memory per job
walltime = "01:00:00"
queue = ""                       # partition (empty: the default partition)
account = ""
interface = ""                   # network interface of scheduler and workers, e.g. "ib0" ("lo" on one node)
job_extra_directives = []        # more #SBATCH lines, e.g. ["--qos=normal", "--constraint=cpu"]
job_script_prologue = []         # shell lines run before each worker, e.g. ["module load python"]
log_directory = ""               # worker job logs (empty: the submission directory)
python = ""                      # worker python (empty: the one running glacgrid)
wait_timeout = 600.0             # s to wait for the workers (then go on with those connected)
image = ""                       # kind = "gateway": the workers' container image (empty: the gateway's default)

# [domain]                       # every glacier as packed pixels, in groups (one task / Slurm array task each)
# thickness_tiles = "farinotti_thickness"   # per-glacier tiles (Farinotti et al. 2019): with both tile
# dem_tiles = "farinotti_dem"               # folders, [grid] and [glaciers] may be left out
# store = "work/domain.zarr"     # the domain store (default <output>/work/domain.zarr; kept when it exists)
# numbers = []                   # only these glacier numbers NNNNN (empty: every tile)
# group_pixels = 262144          # pixels per group (a group is one task and one Zarr chunk)
# year_batch = 4                 # reconstruct years computed together by a task
'''


def config_digest(cfg: "RunConfig", sections: tuple[str, ...], **extra: str) -> str:
    """A short sha256 of the named config sections (and ``extra`` strings): what a stored result
    depends on, to tell whether a store can be resumed or must be rebuilt."""
    parts = {k: repr(getattr(cfg, k)) for k in sections}
    parts.update(extra)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
