"""CF metadata from one registry (``variables.toml``) and provenance stamping of outputs."""

from __future__ import annotations

import datetime as _dt
import functools
import tomllib
from importlib import resources
from typing import Any

import xarray as xr

from .exceptions import GlacgridError

__all__ = ["registry", "stamp", "stamp_dataset", "provenance", "software_versions"]


@functools.cache
def registry() -> dict[str, dict[str, str]]:
    """The variable registry: ``{name: {"units", "long_name", ["standard_name", "cell_methods"]}}``."""
    text = resources.files("glacgrid").joinpath("variables.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _entry(name: str) -> dict[str, str]:
    reg = registry()
    if name not in reg:
        raise GlacgridError(
            f"Variable {name!r} is not in glacgrid's metadata registry (variables.toml). "
            f"Known variables: {', '.join(sorted(reg))}. Add it there with units and long_name."
        )
    return reg[name]


def provenance(step: str, **params: Any) -> str:
    """A one-line history entry: time, glacgrid version, step and its parameters."""
    from . import __version__

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    args = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"{now} glacgrid {__version__}: {step}({args})"


def stamp(da: xr.DataArray, name: str | None = None, *, history: str | None = None) -> xr.DataArray:
    """Return ``da`` named ``name`` with units, long_name (and standard_name) from the registry.

    ``history`` (see :func:`provenance`) is appended to the array's ``history`` attribute.
    """
    name = name or da.name
    if name is None:
        raise GlacgridError("stamp() needs a name: give the DataArray a name or pass name=.")
    attrs = dict(da.attrs)
    attrs.update(_entry(str(name)))
    if history:
        attrs["history"] = (attrs["history"] + "\n" + history) if attrs.get("history") else history
    return da.rename(name).assign_attrs(attrs)


def stamp_dataset(ds: xr.Dataset, *, history: str | None = None) -> xr.Dataset:
    """Stamp every data variable of ``ds`` that the registry knows; others must already have units."""
    out = ds.copy()
    for name in list(out.data_vars):
        if str(name) in registry():
            out[name] = stamp(out[name], str(name))
        elif "units" not in out[name].attrs:
            raise GlacgridError(
                f"Output variable {name!r} has no units and is not in variables.toml; "
                "register it there before writing it."
            )
    if history:
        out.attrs["history"] = (out.attrs["history"] + "\n" + history) if out.attrs.get("history") else history
    return out


def software_versions(*packages: str) -> dict[str, str]:
    """Versions of glacgrid, numpy and ``packages`` (distribution or import names), for provenance.

    Recorded in every artifact whose bytes depend on them: a cube's ``software_versions`` attribute, a
    model artifact's ``versions``. A package that is not installed is listed as ``"not installed"``.
    """
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    import numpy as np

    from . import __version__

    out = {"glacgrid": __version__, "numpy": np.__version__}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            try:
                out[name] = str(importlib.import_module(name).__version__)
            except (ImportError, AttributeError):
                out[name] = "not installed"
    return out
