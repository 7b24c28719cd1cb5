"""Winter and summer balances read beside the annual ones (WGMS mbdata and plain tables)."""

import numpy as np
import pytest

from glacgrid.exceptions import InputDataError
from glacgrid.observations import observed_units, read_observations
from glacgrid.testing import HEF, requires_data


def test_wgms_seasonal_balances_in_metres_with_nan_where_blank(tmp_path):
    f = tmp_path / "mbdata_WGMS-00042.csv"
    f.write_text("YEAR,WINTER_BALANCE,SUMMER_BALANCE,ANNUAL_BALANCE,RGI_ID\n"
                 '2000,1200,-2450,-1250,RGI60-11.00001\n'
                 '2001,900,-1000,,RGI60-11.00001\n'          # seasonal only: skipped
                 '2002,,"-1,300",-300,RGI60-11.00001\n'        # thousands separator, winter blank
                 '2003,NaN,,500,RGI60-11.00001\n')
    obs = read_observations([f])
    assert list(obs.columns) == ["obs_id", "year", "smb", "winter", "summer", "source"]
    assert obs["year"].tolist() == [2000, 2002, 2003]
    np.testing.assert_allclose(obs["smb"], [-1.25, -0.3, 0.5])
    np.testing.assert_allclose(obs["winter"], [1.2, np.nan, np.nan])
    np.testing.assert_allclose(obs["summer"], [-2.45, -1.3, np.nan])
    assert obs["winter"].dtype == obs["summer"].dtype == np.float64


def test_wgms_file_without_seasonal_columns_gives_nan(tmp_path):
    f = tmp_path / "mb.csv"
    f.write_text("YEAR,ANNUAL_BALANCE,RGI_ID\n2000,-500,A\n2001,100,A\n")
    obs = read_observations([f])
    assert obs["winter"].isna().all() and obs["summer"].isna().all() and len(obs) == 2


def test_bad_seasonal_cell_names_file_line_and_column(tmp_path):
    f = tmp_path / "mb.csv"
    f.write_text("YEAR,WINTER_BALANCE,SUMMER_BALANCE,ANNUAL_BALANCE,RGI_ID\n2000,1200,-2450,-1250,A\n"
                 "2001,12OO,-2000,-800,A\n")
    with pytest.raises(InputDataError, match=r"mb.csv.*'WINTER_BALANCE'.*line 3: '12OO'"):
        read_observations([f])
    f.write_text('YEAR,WINTER_BALANCE,SUMMER_BALANCE,ANNUAL_BALANCE,RGI_ID\n2000,1200,"-2,45",-1250,A\n')
    with pytest.raises(InputDataError, match=r"'SUMMER_BALANCE'.*line 2"):
        read_observations([f])


def test_table_format_optional_seasonal_columns_in_metres(tmp_path):
    with_seasons = tmp_path / "a.csv"
    with_seasons.write_text("RGI_ID,year,smb,winter,summer\nA,2000,-0.5,1.5,-2.0\nA,2001,0.2,,\n")
    without = tmp_path / "b.csv"
    without.write_text("RGI_ID,year,smb\nB,2000,-1.0\n")
    obs = read_observations([with_seasons, without], fmt="table")
    assert obs["obs_id"].tolist() == ["A", "A", "B"]
    np.testing.assert_allclose(obs["winter"], [1.5, np.nan, np.nan])
    np.testing.assert_allclose(obs["summer"], [-2.0, np.nan, np.nan])
    assert obs["source"].tolist() == ["a.csv", "a.csv", "b.csv"]


def test_no_files_gives_empty_frame_with_seasonal_columns():
    units = observed_units([], ["A", "B"])
    obs = units.observations
    assert len(obs) == 0 and {"obs_id", "year", "smb", "winter", "summer"} <= set(obs.columns)
    assert obs["winter"].dtype == obs["summer"].dtype == np.float64


@requires_data("hef", "mb")
def test_real_vernagtferner_seasonal_balances():
    obs = read_observations([HEF / "mb" / "mbdata_WGMS-00489.csv"]).set_index("year")
    assert obs["winter"].notna().sum() == 53 and obs["summer"].notna().sum() == 53
    assert obs.loc[1966, ["winter", "summer", "smb"]].tolist() == pytest.approx([1.570, -0.938, 0.633], abs=1e-12)
    assert obs.loc[2000, ["winter", "summer", "smb"]].tolist() == pytest.approx([1.079, -1.366, -0.287], abs=1e-12)
    assert np.isnan(obs.loc[1965, "winter"]) and obs.loc[1965, "smb"] == pytest.approx(0.751)
    full = obs.dropna(subset=["winter", "summer", "smb"])
    residual = (full["winter"] + full["summer"] - full["smb"]).to_numpy()
    # WGMS rounds each balance to 1 mm: 49 of 53 years close exactly, four (1966, 1998, 2018, 2019) by 1 mm.
    assert (np.abs(residual) < 1e-9).sum() == 49
    assert sorted(full.index[np.abs(residual) >= 1e-9]) == [1966, 1998, 2018, 2019]
    np.testing.assert_allclose(np.abs(residual[np.abs(residual) >= 1e-9]), 0.001, atol=1e-9)


@requires_data("hef", "mb")
def test_real_hintereisferner_seasonal_only_2013_2020():
    obs = read_observations([HEF / "mb" / "mbdata_WGMS-00491.csv"]).set_index("year")
    assert obs.index[obs["winter"].notna()].tolist() == list(range(2013, 2021))
    assert obs.loc[2015, ["winter", "summer", "smb"]].tolist() == pytest.approx([1.367, -3.049, -1.682], abs=1e-12)
