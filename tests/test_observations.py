import numpy as np
import pandas as pd
import pytest

from glacgrid.exceptions import InputDataError
from glacgrid.observations import link_units, read_observations
from glacgrid.outputs import validation_table

from .conftest import HEF, requires_data


def test_wgms_millimetres_become_metres_and_seasonal_rows_are_skipped(tmp_path):
    f = tmp_path / "mb.csv"
    pd.DataFrame({"YEAR": [2000, 2001, 2002], "ANNUAL_BALANCE": [-1250.0, np.nan, 300.0],
                  "WINTER_BALANCE": [900, 800, 1000], "RGI_ID": ["RGI60-11.00001"] * 3}).to_csv(f, index=False)
    obs = read_observations([f])
    assert obs["year"].tolist() == [2000, 2002]
    np.testing.assert_allclose(obs["smb"], [-1.25, 0.3])
    with pytest.raises(InputDataError, match="lacks columns"):
        read_observations([f], fmt="table", id_column="RGI_ID")


def test_links_map_divides_and_report_unmatched():
    outlines = ["A", "V_d01", "V_d02", "B"]
    unit, units, unmatched = link_units(["A", "V", "Z"], outlines, {"V": ["V_d01", "V_d02"]})
    assert units == ["A", "V"] and unmatched == ["Z"]
    np.testing.assert_array_equal(unit, [0, 1, 2, 2, 0])  # position 0 unused; B has no observation
    with pytest.raises(InputDataError, match="lack"):
        link_units(["V"], outlines, {"V": ["V_d01", "V_d03"]})
    with pytest.raises(InputDataError, match="two observation ids"):
        link_units(["A", "V"], outlines, {"V": ["A"]})


def test_validation_is_area_weighted_over_linked_outlines():
    gy = pd.DataFrame({"glacier": [1, 2, 3, 1, 2, 3], "year": [2000] * 3 + [2001] * 3,
                       "smb_mwe": [-1.0, -2.0, -4.0, 0.0, 1.0, 9.0], "area_km2": [1.0, 3.0, 2.0] * 2})
    obs = pd.DataFrame({"obs_id": ["V", "V"], "year": [2000, 2001], "smb": [-1.5, 0.5]})
    val = validation_table(gy, obs, ["V"], np.array([0, 1, 1, 0]))
    np.testing.assert_allclose(val["modelled"], [(-1.0 * 1 - 2.0 * 3) / 4, (0.0 + 3.0) / 4])
    np.testing.assert_allclose(val["observed"], [-1.5, 0.5])


@requires_data("hef", "mb")
def test_real_wgms_files():
    obs = read_observations(sorted((HEF / "mb").glob("mbdata_WGMS-00*.csv")))
    hef = obs[obs["obs_id"] == "RGI60-11.00897"].set_index("year")["smb"]
    assert hef.loc[1953] == pytest.approx(-0.540)
    assert hef.loc[1982:2018].size == 37
