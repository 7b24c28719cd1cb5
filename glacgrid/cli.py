"""The ``glacgrid`` command line: one verb per pipeline stage, calling the same functions as Python."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .exceptions import GlacgridError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="glacgrid: glacier surface mass balance and geometry on chunked grids.\n\n"
                       "Example: glacgrid demo --out demo-output")


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _csv_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.command()
def ingest(files: List[Path] = typer.Argument(..., help="ERA5-Land monthly netCDF files"),
           out: Path = typer.Option(..., "--out", help="target Zarr store"),
           invariant: Optional[Path] = typer.Option(None, help="invariant file with geopotential z"),
           variables: Optional[str] = typer.Option(None, help="comma-separated, e.g. t2m,tp"),
           overwrite: bool = typer.Option(False, help="replace an existing store with another schema")):
    """Ingest ERA5-Land monthly files into an analysis-ready Zarr cube.

    Example: glacgrid ingest era5land/*.nc --invariant invariant.nc --variables t2m,tp --out cube.zarr
    """
    from .ingest import ingest as run_ingest

    try:
        path = run_ingest(files, out, invariant=invariant, variables=_csv_list(variables), overwrite=overwrite)
    except GlacgridError as err:
        _fail(err)
    typer.echo(f"wrote {path}")


@app.command()
def mask(outlines: Path = typer.Argument(..., help="RGI outlines (shapefile or GeoPackage)"),
         grid: Path = typer.Option(..., "--grid", help="DEM GeoTIFF defining the target grid"),
         out: Path = typer.Option(..., "--out", help="target Zarr store"),
         id_column: str = typer.Option("RGIId", help="column with glacier ids"),
         chunks: int = typer.Option(512, help="chunk size in pixels")):
    """Rasterise glacier outlines into a glacier-index raster and fractional cover.

    Example: glacgrid mask rgi.shp --grid dem.tif --out masks.zarr
    """
    from .cube import write_dataset
    from .grid import TargetGrid
    from .masks import glacier_table, rasterize_glaciers, read_outlines

    try:
        g = TargetGrid.from_raster(grid, chunks=chunks)
        gdf = read_outlines(outlines, id_column)
        ds = rasterize_glaciers(gdf, g)
        ds["pixel_area"] = g.pixel_area()
        write_dataset(ds, out, region_dim="y", overwrite=True)
        table = glacier_table(gdf, ds["glacier_id"], ds["pixel_area"])
    except GlacgridError as err:
        _fail(err)
    table.to_csv(out.with_suffix(".glaciers.csv"))
    typer.echo(table.to_string(max_rows=40))
    typer.echo(f"wrote {out} and {out.with_suffix('.glaciers.csv')}")


@app.command()
def downscale(cube: Path = typer.Argument(..., help="climate cube from `glacgrid ingest`"),
              grid: Path = typer.Option(..., "--grid", help="DEM GeoTIFF: target grid and elevation"),
              out: Path = typer.Option(..., "--out", help="target Zarr store"),
              lapse_rate: float = typer.Option(-0.0065, help="K m-1"),
              precip_factor: float = typer.Option(1.0),
              precip_gradient: float = typer.Option(0.0, help="m-1"),
              chunks: int = typer.Option(512)):
    """Downscale the climate cube to a DEM grid (bilinear + lapse rate).

    Example: glacgrid downscale cube.zarr --grid dem.tif --out downscaled.zarr --lapse-rate -0.0065
    """
    from .config import DownscaleParams
    from .cube import open_store, write_dataset
    from .downscale import downscale as run_downscale
    from .grid import TargetGrid

    try:
        g = TargetGrid.from_raster(grid, chunks=chunks)
        ds = run_downscale(open_store(cube), g, g.read(grid),
                           DownscaleParams(lapse_rate=lapse_rate, precip_factor=precip_factor,
                                           precip_gradient=precip_gradient))
        write_dataset(ds, out, region_dim="time", overwrite=True)
    except GlacgridError as err:
        _fail(err)
    typer.echo(f"wrote {out}")


@app.command()
def features(config: Path = typer.Argument(..., help="run configuration (TOML)"),
             out: Path = typer.Option(..., "--out", help="directory for features.zarr and features.csv")):
    """Glacier-wide features for every glacier and hydrological year of a config's period.

    Example: glacgrid features examples/hef.toml --out hef-features
    """
    from .config import load_config
    from .cube import write_dataset
    from .features import features_table, glacier_features
    from .pipeline import _pixel_features, prepare

    try:
        cfg = load_config(config)
        out.mkdir(parents=True, exist_ok=True)
        prep = prepare(cfg, out / "work")
        s = prep.static
        active = s["glacier_id"] > 0
        pix = _pixel_features(cfg, prep, s["surface"], s["glacier_id"], active, prep.index, cfg.period.start, cfg.period.end)
        gf = glacier_features(pix, s["glacier_id"], active, s["pixel_area"], prep.index).compute()
        write_dataset(gf.chunk({"year": -1}), out / "features.zarr", region_dim="glacier", overwrite=True)
        features_table(gf, prep.table).to_csv(out / "features.csv", index=False)
    except GlacgridError as err:
        _fail(err)
    typer.echo(f"wrote {out / 'features.zarr'} and {out / 'features.csv'}")


def _read_table(path: Path):
    import pandas as pd

    if not path.exists():
        raise GlacgridError(f"Table {path} does not exist.")
    return pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)


@app.command()
def train(table: Path = typer.Argument(..., help="feature table (CSV or Parquet)"),
          target: str = typer.Option(..., help="target column (m w.e.)"),
          features: str = typer.Option(..., help="comma-separated feature columns"),
          model: str = typer.Option("lasso", help="lasso, ols, ridge or ann"),
          seed: int = typer.Option(0),
          out: Path = typer.Option(..., "--out", help="model artifact directory")):
    """Fit an SMB model on a feature table and save it (JSON, and a torch state dict for the ANN).

    Example: glacgrid train features.csv --target smb --features cpdd,snow_winter --out model
    """
    from .metadata import registry
    from .models import FeatureSchema, make_model

    try:
        df = _read_table(table)
        names = tuple(_csv_list(features) or ())
        missing = [c for c in (*names, target) if c not in df.columns]
        if missing:
            raise GlacgridError(f"Columns {missing} are not in {table} (columns: {list(df.columns)}).")
        reg = registry()
        schema = FeatureSchema(names, tuple(reg.get(n, {}).get("units", "1") for n in names))
        m = make_model(model, seed=seed).fit(df[list(names)].to_numpy("float64"), df[target].to_numpy("float64"), schema)
        path = m.to_artifact(out)
    except GlacgridError as err:
        _fail(err)
    typer.echo(f"wrote {path}")


@app.command()
def cv(table: Path = typer.Argument(..., help="feature table (CSV or Parquet)"),
       target: str = typer.Option(..., help="target column (m w.e.)"),
       glacier_col: str = typer.Option(..., help="glacier id column"),
       year_col: str = typer.Option(..., help="year column"),
       features: str = typer.Option(..., help="comma-separated feature columns"),
       model: str = typer.Option("lasso", help="lasso, ols, ridge or ann"),
       scheme: str = typer.Option("logo", help="logo or loyo"),
       ann_preset: Optional[str] = typer.Option(None, help="ANN preset name"),
       seed: int = typer.Option(0),
       out: Path = typer.Option(..., "--out", help="RESULT.json")):
    """Cross-validate a model on a feature table; print metrics and write out-of-fold predictions.

    Example: glacgrid cv features.csv --target smb --glacier-col rgi_id --year-col year
    --features cpdd,snow_winter,snow_summer --model lasso --scheme logo --out cv.json
    """
    from .models import cross_validate

    try:
        df = _read_table(table)
        opts = {"preset": ann_preset} if ann_preset else {}
        res = cross_validate(df, target=target, features=_csv_list(features) or [], glacier_col=glacier_col,
                             year_col=year_col, kind=model, scheme=scheme, seed=seed, **opts)
        res.to_json(out)
    except GlacgridError as err:
        _fail(err)
    typer.echo(res.per_fold.to_string(index=False))
    typer.echo("overall: " + "  ".join(f"{k}={v:.3f}" for k, v in res.metrics.items()))
    typer.echo(f"wrote {out}")


@app.command()
def infer(model_dir: Path = typer.Argument(..., help="model artifact directory from `glacgrid train`"),
          table: Path = typer.Argument(..., help="feature table (CSV or Parquet)"),
          out: Path = typer.Option(..., "--out", help="CSV with a `predicted` column added")):
    """Apply a saved model to a feature table (columns are checked against the model's schema).

    Example: glacgrid infer model features.csv --out predictions.csv
    """
    from .models import load_model, predict_frame

    try:
        m = load_model(model_dir)
        df = _read_table(table)
        df["predicted"] = predict_frame(m, df)
    except GlacgridError as err:
        _fail(err)
    df.to_csv(out, index=False)
    typer.echo(f"wrote {out} ({len(df)} rows)")


@app.command()
def evolve(state: Path = typer.Argument(..., help="Zarr store with glacier_id, thickness, surface, pixel_area"),
           smb: Path = typer.Option(..., help="CSV with columns glacier (index) and smb (m w.e.)"),
           out: Path = typer.Option(..., "--out", help="Zarr store of the new state"),
           rho_ice: float = typer.Option(900.0, help="kg m-3"),
           rho_water: float = typer.Option(1000.0, help="kg m-3")):
    """One delta-h geometry update (Huss et al. 2010, mass conserving) for all glaciers at once.

    Example: glacgrid evolve work/static.zarr --smb smb.csv --out state-next.zarr
    """
    import pandas as pd
    import xarray as xr

    from .cube import open_store, write_dataset
    from .geometry import deltah_update

    try:
        st = open_store(state)
        st = st[["glacier_id", "thickness", "surface", "pixel_area"]]
        st["thickness"] = st["thickness"].fillna(0.0)
        df = pd.read_csv(smb)
        da = xr.DataArray(df["smb"].to_numpy("float64"), dims="glacier", coords={"glacier": df["glacier"].to_numpy()})
        new, report = deltah_update(st, da, rho_ice=rho_ice, rho_water=rho_water)
        write_dataset(new, out, region_dim="y", overwrite=True)
    except GlacgridError as err:
        _fail(err)
    typer.echo(report.compute().to_dataframe().to_string(max_rows=40))
    typer.echo(f"wrote {out}")


def _print_summary(result) -> None:
    from rich.console import Console

    from .outputs import summary_lines

    console = Console()
    console.rule("[bold]glacgrid summary")
    for line in summary_lines(result):
        console.print(line, highlight=False)


@app.command()
def run(config: Optional[Path] = typer.Argument(None, help="run configuration (TOML)"),
        scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dask scheduler address"),
        template: bool = typer.Option(False, "--template", help="print a commented config template and exit"),
        progress: bool = typer.Option(True, help="show a progress display")):
    """Run the whole pipeline described by a config file.

    Example: glacgrid run examples/hef.toml
    """
    from .cluster import client_for
    from .config import TEMPLATE, load_config
    from .pipeline import run as run_pipeline

    if template:
        typer.echo(TEMPLATE)
        return
    if config is None:
        _fail(GlacgridError("Give a config file (glacgrid run CONFIG.toml), or --template to print one."))
    try:
        cfg = load_config(config)
        with client_for(scheduler, cfg.cluster):
            result = run_pipeline(cfg, progress=progress)
    except GlacgridError as err:
        _fail(err)
    _print_summary(result)


@app.command()
def demo(out: Path = typer.Option(Path("demo-output"), "--out", help="output directory"),
         scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dask scheduler address"),
         size: str = typer.Option("full", help="full or small"),
         seed: int = typer.Option(0),
         progress: bool = typer.Option(True, help="show a progress display")):
    """Build a seeded synthetic region and run the whole pipeline on it (evolution mode).

    Example: glacgrid demo --out demo-output
    """
    import time

    from .cluster import client_for
    from .demo import prepare_demo
    from .pipeline import run as run_pipeline

    t0 = time.perf_counter()
    try:
        cfg, region = prepare_demo(out, size=size, seed=seed)
        typer.echo(f"synthetic region: {region.n_glaciers} glaciers, hydrological years {region.start}-{region.end}, "
                   f"inputs in {region.directory}")
        with client_for(scheduler, cfg.cluster) as client:
            typer.echo(f"dask: {client}")
            result = run_pipeline(cfg, progress=progress)
    except GlacgridError as err:
        _fail(err)
    _print_summary(result)
    typer.echo(f"demo finished in {time.perf_counter() - t0:.1f} s")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
