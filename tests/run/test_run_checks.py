"""What a run refuses before any stage: features its inference pass does not build, and what a glacier
domain run does not do yet (a forcing)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from glacgrid.config import ModelConfig
from glacgrid.exceptions import ConfigError
from glacgrid.inference import buildable
from glacgrid.pipeline import check_run_features


def _cfg(features=("cpdd", "snow_winter", "snow_summer"), training="glacier", domain=None, forcing=None):
    return SimpleNamespace(model=ModelConfig(features=tuple(features), training=training), domain=domain,
                           forcing=forcing)


def test_every_feature_the_inference_builds_passes():
    can = buildable(("area", "max_elevation", "min_elevation", "slope_lower20"))
    assert {"snow_winter_dz", "cpdd_low", "cpdd_ice", "snowfree_months", "elevation_norm"} <= set(can)
    check_run_features(_cfg(features=can))  # no error
    check_run_features(_cfg(training="joint"))


def test_a_feature_the_inference_does_not_build_is_refused():
    with pytest.raises(ConfigError, match=r"\[model\] features \['albedo_summer'\] are not built"):
        check_run_features(_cfg(features=("cpdd", "albedo_summer")))


@pytest.mark.parametrize("change, what", [({"forcing": object()}, r"\[forcing\]")])
def test_what_a_domain_run_does_not_do_yet_is_refused(change, what):
    with pytest.raises(ConfigError, match=what + r".*not available with a \[domain\] run"):
        check_run_features(_cfg(domain=object(), **change))
