import numpy as np
import pytest

from glacgrid.exceptions import GridMismatchError, InputDataError
from glacgrid.grid import EARTH_RADIUS, TargetGrid

from glacgrid.testing import HEF, requires_data


def test_from_spec_geometry():
    g = TargetGrid.from_spec("EPSG:32632", 100.0, (600_000, 5_100_000, 601_050, 5_100_500), chunks=4)
    assert g.shape == (5, 11)  # 1050 m -> 11 pixels (ceil)
    assert g.x[0] == 600_050 and g.x[-1] == 601_050
    assert g.y[0] == 5_100_450 and g.y[-1] == 5_100_050
    assert g.bounds == (600_000, 5_100_000, 601_100, 5_100_500)
    area = g.pixel_area()
    assert area.chunks == ((4, 1), (4, 4, 3))
    np.testing.assert_array_equal(area.values, 10_000.0)
    assert area.attrs["units"] == "m2"


def test_geographic_pixel_area_sums_to_spherical_band():
    # a 1 x 1 degree box at 46-47 N in 0.1 degree pixels
    g = TargetGrid.from_spec("EPSG:4326", 0.1, (10.0, 46.0, 11.0, 47.0))
    total = float(g.pixel_area().sum())
    exact = EARTH_RADIUS**2 * np.deg2rad(1.0) * (np.sin(np.deg2rad(47.0)) - np.sin(np.deg2rad(46.0)))
    assert total == pytest.approx(exact, rel=1e-9)


def test_lonlat_of_projected_grid():
    # UTM 32N central meridian is 9 E; x = 500000 on the equator-distance of 46.8 N
    g = TargetGrid.from_spec("EPSG:32632", 100.0, (499_950, 5_183_000, 500_050, 5_183_100))
    ll = g.lonlat().compute()
    assert float(ll.lon[0, 0]) == pytest.approx(9.0, abs=1e-9)
    assert 46.7 < float(ll.lat[0, 0]) < 46.9


def test_crop_and_window():
    g = TargetGrid.from_spec("EPSG:32632", 10.0, (0, 0, 1000, 500))
    sub = g.crop((105, 200, 333, 311), buffer=0)
    assert sub.bounds == (100, 200, 340, 320)
    rows, cols = g.window(sub)
    np.testing.assert_array_equal(g.x[cols], sub.x)
    np.testing.assert_array_equal(g.y[rows], sub.y)
    with pytest.raises(GridMismatchError, match="do not overlap"):
        g.crop((5000, 5000, 6000, 6000))


def test_bad_grids_raise_typed_errors(tmp_path):
    with pytest.raises(InputDataError, match="does not exist"):
        TargetGrid.from_raster(tmp_path / "nope.tif")
    with pytest.raises(InputDataError, match="north-up"):
        TargetGrid("EPSG:4326", (1.0, 0.5, 0.0, 0.0, -1.0, 0.0), (2, 2))
    with pytest.raises(InputDataError, match="left < right"):
        TargetGrid.from_spec("EPSG:4326", 0.1, (11, 46, 10, 47))


@requires_data("hef", "dem", "srtm_oetztal.tif")
def test_from_raster_real_dem():
    g = TargetGrid.from_raster(HEF / "dem" / "srtm_oetztal.tif", chunks=128)
    assert g.shape == (444, 582)
    assert g.is_geographic
    dem = g.read(HEF / "dem" / "srtm_oetztal.tif")
    assert dem.chunks[0][0] == 128
    assert float(dem.max()) == 3727.0
