import numpy as np
import pandas as pd
import pytest

from glacgrid.exceptions import InputDataError
from glacgrid.observations import link_units, read_observations
from glacgrid.outputs import validation_table

from glacgrid.testing import HEF, requires_data


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


def _wgms_pair(tmp_path, number="00042", rgi="RGI60-11.00042"):
    mb = tmp_path / f"mbdata_WGMS-{number}.csv"
    pd.DataFrame({"YEAR": [2000, 2001, 2002], "NAME": ["TEST F."] * 3, "AREA": [2.5, np.nan, 2.3],
                  "ANNUAL_BALANCE": [-900.0, -1100.0, np.nan], "RGI_ID": [rgi] * 3}).to_csv(mb, index=False)
    prof = tmp_path / f"profile_WGMS-{number}.csv"
    prof.write_text(",2425,2475,2750\n2000,-3000.0,-2500.5,\n2001,,-2700.0,-1000.0\n")
    return mb, prof


def test_profiles_read_long_in_metres_and_named_by_the_mbdata_file(tmp_path):
    from glacgrid.observations import profile_files, read_profiles

    mb, prof = _wgms_pair(tmp_path)
    found = profile_files([mb, tmp_path / "other.csv"])
    assert found == {prof: mb}
    p = read_profiles(found)
    assert p[["year", "band_mid"]].values.tolist() == [[2000, 2425.0], [2000, 2475.0], [2001, 2475.0], [2001, 2750.0]]
    np.testing.assert_allclose(p["smb"], [-3.0, -2.5005, -2.7, -1.0])
    assert (p["obs_id"] == "RGI60-11.00042").all()
    # explicit ids win (by file name or WGMS number); without any id the reader says how to give one
    assert (read_profiles([prof], ids={"00042": "X"})["obs_id"] == "X").all()
    lone = tmp_path / "lone" / "profile_WGMS-00007.csv"
    lone.parent.mkdir()
    lone.write_text(",2425\n2000,1.0\n")
    with pytest.raises(InputDataError, match="ids="):
        read_profiles([lone])
    bad = tmp_path / "profile_WGMS-00009.csv"
    bad.write_text(",low,high\n2000,1.0,2.0\n")
    with pytest.raises(InputDataError, match="mid-elevations"):
        read_profiles([bad], ids={"00009": "Y"})


def test_wgms_areas_skip_years_without_area(tmp_path):
    from glacgrid.observations import read_areas

    mb, _ = _wgms_pair(tmp_path)
    a = read_areas([mb])
    assert a["year"].tolist() == [2000, 2002] and a["area_km2"].tolist() == [2.5, 2.3]
    assert (a["name"] == "TEST F.").all() and (a["obs_id"] == "RGI60-11.00042").all()
    with pytest.raises(InputDataError, match="AREA"):
        read_areas([_wgms_pair(tmp_path, "00043")[1]])  # a profile file is no mbdata file


@requires_data("hef", "mb")
def test_real_wgms_profiles_and_areas():
    from glacgrid.observations import profile_files, read_areas, read_profiles

    files = [HEF / "mb" / f"mbdata_WGMS-{n}.csv" for n in ("00491", "00507", "00489")]
    p = read_profiles(profile_files(files))
    hef = p[(p["obs_id"] == "RGI60-11.00897") & (p["year"] == 1965)].set_index("band_mid")["smb"]
    assert hef.loc[2425.0] == pytest.approx(-3.82) and hef.loc[3675.0] == pytest.approx(1.48)
    assert set(p["obs_id"]) == {"RGI60-11.00897", "RGI50-11.00787", "RGI60-11.00719"}
    a = read_areas(files).set_index(["obs_id", "year"])["area_km2"]
    assert a.loc[("RGI60-11.00897", 1982)] == pytest.approx(9.07) and a.loc[("RGI60-11.00897", 2018)] == pytest.approx(6.389)
