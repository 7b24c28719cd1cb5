"""Stake (point) balances: readers for NVE, Iceland and plain tables, and the nearest pixel of each stake."""

import numpy as np
import pytest

from glacgrid.exceptions import InputDataError
from glacgrid.observations import read_stakes, stake_pixels
from glacgrid.testing import DATA, requires_data

NVE = DATA / "norway" / "2023-08-28_stake_mb_norway_cleaned_ids_latlon.csv"
ICELAND = [DATA / "iceland" / "stakes" / f"{name}_RGIIDV6.csv" for name in ("HOFS", "LANG", "VATN")]
COLUMNS = ["obs_id", "stake", "year", "lon", "lat", "elevation", "smb", "winter", "summer", "source"]
R = 6371008.8


# ------------------------------------------------------------------------------------------- table format

def _table(tmp_path, text, name="stakes.csv"):
    f = tmp_path / name
    f.write_text(text)
    return f


def test_table_stakes_known_values_and_rows_without_balance_dropped(tmp_path):
    f = _table(tmp_path, "RGI_ID,stake,year,lon,lat,elevation,smb,winter\n"
                         "A,s1,2000,10.5,46.8,2900,-1.25,1.1\n"
                         "A,s2,2000,10.6,46.9,,,\n"              # no balance: not an observation
                         "B,s1,2001,-18.9,64.6,1077.5,,2.5\n")
    st = read_stakes([f])
    assert list(st.columns) == COLUMNS
    assert st["obs_id"].tolist() == ["A", "B"] and st["stake"].tolist() == ["s1", "s1"]
    assert st["year"].tolist() == [2000, 2001] and st["year"].dtype == np.int64
    np.testing.assert_array_equal(st["lon"], [10.5, -18.9])
    np.testing.assert_array_equal(st["lat"], [46.8, 64.6])
    np.testing.assert_array_equal(st["elevation"], [2900.0, 1077.5])
    np.testing.assert_array_equal(st["smb"], [-1.25, np.nan])
    np.testing.assert_array_equal(st["winter"], [1.1, 2.5])
    assert st["summer"].isna().all() and set(st["source"]) == {"stakes.csv"}


def test_table_stakes_without_elevation_and_other_id_column(tmp_path):
    f = _table(tmp_path, "glacier,stake,year,lon,lat,summer\nG1,P7,1999,7.0,61.0,-2.0\n")
    st = read_stakes([f], id_column="glacier")
    assert st.loc[0, "obs_id"] == "G1" and np.isnan(st.loc[0, "elevation"]) and st.loc[0, "summer"] == -2.0


@pytest.mark.parametrize("row, match", [
    ("A,s1,2000,10.5,96.8,-1.0", r"stakes.csv: column 'lat' must lie in \[-90, 90\].*line 3: '96.8'"),
    ("A,s1,2000,190.0,46.8,-1.0", r"column 'lon' must lie in \[-180, 180\].*line 3: '190.0'"),
    ("A,s1,2000,10.5,46.8,-1.O", r"column 'smb' holds 1 cell.*line 3: '-1.O'"),
    ("A,s1,2000.5,10.5,46.8,-1.0", r"column 'year' must hold whole numbers.*line 3: '2000.5'"),
    ("A,,2000,10.5,46.8,-1.0", r"column 'stake' is empty.*line 3"),
    (",s1,2000,10.5,46.8,-1.0", r"column 'RGI_ID' is empty.*line 3"),
    ("A,s1,2000,,46.8,-1.0", r"column 'lon' is empty.*line 3"),
    ("A,s0,1999,10.5,46.8,-1,5", r"line 3 has 7 cells but the header has 6"),
])
def test_table_stakes_bad_cells_name_file_line_and_column(tmp_path, row, match):
    f = _table(tmp_path, f"RGI_ID,stake,year,lon,lat,smb\nA,s0,1999,10.5,46.8,-0.5\n{row}\n")
    with pytest.raises(InputDataError, match=match):
        read_stakes([f])


def test_table_stakes_duplicates_missing_columns_and_unknown_format(tmp_path):
    a = _table(tmp_path, "RGI_ID,stake,year,lon,lat,smb\nA,s1,2000,10.5,46.8,-0.5\n", "a.csv")
    b = _table(tmp_path, "RGI_ID,stake,year,lon,lat,smb\nA,s1,2000,10.6,46.8,-0.7\n", "b.csv")
    with pytest.raises(InputDataError, match=r"Duplicated stake observations.*\['A', 's1', 2000, 'a.csv'\].*'b.csv'"):
        read_stakes([a, b])
    c = _table(tmp_path, "RGI_ID,stake,year,lon,lat,elevation\nA,s1,2000,10.5,46.8,3000\n", "c.csv")
    with pytest.raises(InputDataError, match="none of the balance columns"):
        read_stakes([c])
    d = _table(tmp_path, "RGI_ID,stake,lon,lat,smb\nA,s1,10.5,46.8,-1\n", "d.csv")
    with pytest.raises(InputDataError, match=r"lacks columns \['year'\]"):
        read_stakes([d])
    with pytest.raises(InputDataError, match="Unknown stake format"):
        read_stakes([a], fmt="wgms")
    with pytest.raises(InputDataError, match="does not exist"):
        read_stakes([tmp_path / "nope.csv"])
    with pytest.raises(InputDataError, match="No stake files"):
        read_stakes([])


# ------------------------------------------------------------------------------------------- NVE

NVE_HEADER = ("RGIID;location_id;stake_no;altitude;balance_winter;balance_summer;balance_netto;"
              "dt_prev_year_min_date;dt_curr_year_max_date;dt_curr_year_min_date;lat;lon")


def test_nve_year_from_the_autumn_survey_and_mistyped_dates(tmp_path):
    f = _table(tmp_path, NVE_HEADER + "\n"
               "R1;L10;L1012;471.0;1.32;-6.24;-4.92;25.09.2012 00:00;14.05.2013 00:00;07.11.2013 00:00;70.1;21.7\n"
               # autumn survey mistyped (1980 instead of 1981): spring and previous autumn agree on 1981
               "R1;B4;B4;1565.0;3.8;-0.89;2.91;24.11.1980 00:00;30.04.1981 00:00;27.08.1980 00:00;60.0;6.3\n"
               # spring survey mistyped: autumn and previous autumn agree on 2020
               "R1;L30;L3013;871;2.66;-2.63;0.03;27.09.2019 00:00;26.05.2019 00:00;29.09.2020 00:00;70.1;21.7\n"
               # winter only, no autumn survey: the spring survey's year
               "R1;L10;L1089;;1.0;;;;24.05.1989 00:00;;70.1;21.7\n"
               # no balance at all: dropped
               "R1;L10;L1090;;;;;;24.05.1990 00:00;;70.1;21.7\n", "nve.csv")
    st = read_stakes([f], fmt="nve")
    assert st["year"].tolist() == [2013, 1981, 2020, 1989]
    assert st["stake"].tolist() == ["L10/L1012", "B4/B4", "L30/L3013", "L10/L1089"]
    np.testing.assert_array_equal(st["elevation"], [471.0, 1565.0, 871.0, np.nan])
    np.testing.assert_array_equal(st.loc[3, ["smb", "winter", "summer"]].astype(float), [np.nan, 1.0, np.nan])


def test_nve_bad_cells(tmp_path):
    good = "R1;L10;L1012;471.0;1.32;-6.24;-4.92;25.09.2012 00:00;14.05.2013 00:00;07.11.2013 00:00;70.1;21.7"
    f = _table(tmp_path, NVE_HEADER + "\n" + good + "\n" + good.replace("07.11.2013", "2013-11-07") + "\n", "n.csv")
    with pytest.raises(InputDataError, match=r"n.csv: column 'dt_curr_year_min_date' .* not dates.*line 3"):
        read_stakes([f], fmt="nve")
    f.write_text(NVE_HEADER + "\n" + good.replace("14.05.2013", "14.05.2011").replace("07.11.2013", "07.11.2014")
                 + "\n")
    with pytest.raises(InputDataError, match=r"cannot tell the balance year.*line 2: 25.09.2012 00:00 / 14.05.2011"):
        read_stakes([f], fmt="nve")
    f.write_text(NVE_HEADER + "\n" + good.replace(";70.1;", ";701;") + "\n")
    with pytest.raises(InputDataError, match=r"column 'lat' must lie in \[-90, 90\].*line 2: '701'"):
        read_stakes([f], fmt="nve")
    f.write_text(NVE_HEADER.replace("balance_netto;", "") + "\n")
    with pytest.raises(InputDataError, match=r"lacks columns \['balance_netto'\].*format 'nve'"):
        read_stakes([f], fmt="nve")


@requires_data("norway")
def test_real_nve_stakes():
    st = read_stakes([NVE], fmt="nve")
    # 4171 rows, one of them (AA2812, 2013) without any balance
    assert len(st) == 4170 and st["obs_id"].nunique() == 32
    assert (st["year"].min(), st["year"].max()) == (1962, 2021)
    assert st[["smb", "winter", "summer"]].notna().sum().tolist() == [3910, 3752, 3929]
    first = st.iloc[0]
    assert (first["obs_id"], first["stake"], first["year"]) == ("RGI60-08.01258", "L10/L1012", 2013)
    assert first[["lon", "lat", "elevation", "smb", "winter", "summer"]].astype(float).tolist() == pytest.approx(
        [21.777015666130715, 70.12588860839644, 471.0, -4.92, 1.32, -6.24], abs=1e-12)
    year = st.set_index(["obs_id", "stake"])["year"]
    assert year.loc[("RGI60-08.02916", "BON4/BON4")].tolist() == [1979, 1980, 1981]  # mistyped autumn 27.08.1980
    assert year.loc[("RGI60-08.01258", "L30/L3013")].tolist() == list(range(2014, 2022))  # 2020: spring mistyped 2019
    # one stake number at two locations in one year
    assert set(st.loc[(st["year"] == 1967) & st["stake"].str.endswith("/STO964"), "stake"]) == {"STO7/STO964",
                                                                                                "STO9/STO964"}


# ------------------------------------------------------------------------------------------- Iceland

@requires_data("iceland")
def test_real_iceland_stakes():
    st = read_stakes(ICELAND, fmt="iceland")
    assert st.groupby("source").size().to_dict() == {"HOFS_RGIIDV6.csv": 839, "LANG_RGIIDV6.csv": 596,
                                                     "VATN_RGIIDV6.csv": 1464}
    assert (st["year"].min(), st["year"].max()) == (1986, 2022)
    assert (st["obs_id"] == "").sum() == 5  # stakes outside the RGI outlines: kept, match no glacier
    row = st.iloc[0]
    assert (row["obs_id"], row["stake"], row["year"]) == ("RGI60-06.00232", "blt11", 2017)
    assert row[["lon", "lat", "elevation", "smb", "winter", "summer"]].astype(float).tolist() == pytest.approx(
        [-18.95453043, 64.68772613, 1077.0, -1.12, 1.85, -2.97], abs=1e-12)


def test_iceland_broken_copy(tmp_path):
    header = "stake,yr,lat,lon,elevation,bw_stratigraphic,bs_stratigraphic,ba_stratigraphic,RGIId"
    f = _table(tmp_path, header + "\nblt11,2017,64.68,-18.95,1077.0,1.85,-2.97,-1.12,RGI60-06.00232\n"
               "blt11,2018,64.68,-18.95,1078.0,1.41,x,-0.68,RGI60-06.00232\n", "HOFS.csv")
    with pytest.raises(InputDataError, match=r"HOFS.csv: column 'bs_stratigraphic' .*line 3: 'x'"):
        read_stakes([f], fmt="iceland")


# ------------------------------------------------------------------------------------------- nearest pixel

def _grid(lat0=70.0, lon0=20.0, step=0.001, n=6):
    """A 2 x n row of pixels: unit 1 in columns 0..2, unit 2 in columns 3..n-1, row 1 has no unit."""
    dlat = step * np.cos(np.deg2rad(lat0))  # square pixels
    lon, lat = np.meshgrid(lon0 + step * np.arange(n), lat0 + dlat * np.arange(2))
    unit = np.zeros((2, n), dtype="int32")
    unit[0, :3], unit[0, 3:] = 1, 2
    return lon.ravel(), lat.ravel(), unit.ravel()


def test_stake_pixels_known_answers():
    plon, plat, punit = _grid()
    step, dlat = 0.001, 0.001 * np.cos(np.deg2rad(70.0))
    dx = R * np.cos(np.deg2rad(70.0)) * np.deg2rad(step)  # one pixel, about 38 m
    slon = np.array([20.0 + 0.3 * step, 20.0 + 1.9 * step, 20.0 + 3.4 * step, 20.0 + 2.45 * step, 20.0 + 8 * step,
                     20.0, 20.0, np.nan, 20.0 + 4 * step])
    slat = np.array([70.0, 70.0 - 0.2 * dlat, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0 + 0.6 * dlat])
    sunit = np.array([1, 1, 1, 2, 2, 0, 3, 1, 2])
    idx = stake_pixels(slon, slat, sunit, plon, plat, punit, max_distance=dx)
    # 0 -> pixel 0; 1 -> pixel 2; 2 (unit 1 near pixel 3 of unit 2) -> its own unit's pixel 2 (1.4 px away);
    # 3 (unit 2, 0.45 px from unit-1 pixel 2) -> unit-2 pixel 3 (0.55 px); 4 (unit 2, 3 px beyond the last)
    # -> none; 5 no unit; 6 unit without pixels; 7 NaN position; 8 nearest is the no-unit pixel above
    # (0.4 px), its unit's pixel 4 is 0.6 px away
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, [0, 2, -1, 3, -1, -1, -1, -1, 4])
    idx = stake_pixels(slon, slat, sunit, plon, plat, punit, max_distance=1.5 * dx)
    np.testing.assert_array_equal(idx, [0, 2, 2, 3, -1, -1, -1, -1, 4])


def test_stake_pixels_across_the_antimeridian_and_bad_input():
    plon = np.array([179.9995, -179.9995, 179.9985])
    plat = np.full(3, 60.0)
    idx = stake_pixels(np.array([-179.9994, 179.9986]), np.array([60.0, 60.0]), np.array([1, 1]), plon, plat,
                       np.ones(3, dtype=int), max_distance=100.0)
    np.testing.assert_array_equal(idx, [1, 2])
    with pytest.raises(InputDataError, match="1-D and of one length"):
        stake_pixels(np.zeros(2), np.zeros(3), np.ones(2), plon, plat, np.ones(3), 10.0)
    with pytest.raises(InputDataError, match="max_distance"):
        stake_pixels(np.zeros(1), np.zeros(1), np.ones(1), plon, plat, np.ones(3), np.nan)


def test_equirectangular_distance_matches_the_ellipsoid_at_70n():
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    for azimuth in (0.0, 45.0, 90.0, 135.0):
        lon, lat, _ = geod.fwd(15.0, 70.0, azimuth, 500.0)
        # one pixel at the stake's true 500 m offset; the only other pixel 1000 m away
        lon2, lat2, _ = geod.fwd(15.0, 70.0, azimuth, 1000.0)
        plon, plat = np.array([lon, lon2]), np.array([lat, lat2])
        assert stake_pixels(np.array([15.0]), np.array([70.0]), np.array([1]), plon, plat, np.ones(2), 502.5)[0] == 0
        assert stake_pixels(np.array([15.0]), np.array([70.0]), np.array([1]), plon, plat, np.ones(2), 497.5)[0] == -1
