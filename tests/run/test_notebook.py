"""The Pangeo example notebook runs top to bottom on a scheduler given by address (as on a hub)."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from glacgrid.testing import REPO

NOTEBOOK = REPO / "examples" / "pangeo_demo.ipynb"


@pytest.mark.slow
def test_pangeo_notebook_on_a_local_scheduler(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from distributed import LocalCluster

    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "the notebook needs one cell tagged 'parameters'"
    out = tmp_path / "demo"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        # injected like papermill does: a cell after the parameters cell
        nb.cells.insert(nb.cells.index(params[0]) + 1, nbformat.v4.new_code_cell(
            f"SCHEDULER = {cluster.scheduler_address!r}\nOUT = {str(out)!r}\nSIZE = 'small'"))
        monkeypatch.delenv("DASK_GATEWAY__ADDRESS", raising=False)
        client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
        client.execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")
    assert f"cluster: {cluster.scheduler_address}; scheduler {cluster.scheduler_address}, 2 workers" in text
    found = re.search(r"synthetic region: (\d+) glaciers, hydrological years 2001-2010", text)
    assert found, text
    n_glaciers = int(found.group(1))
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert (out / "notebook_summary.png").stat().st_size > 10_000
    gy = pd.read_csv(out / "glacier_years.csv")
    assert gy["glacier"].nunique() == n_glaciers and gy["year"].nunique() == 10 and gy["smb_mwe"].notna().all()
    assert re.search(r"cross-validation \(logo\): r=0\.9[89]\d", text), text  # the synthetic known model
    # the volume line printed by the plotting cell is the sum of the table's volumes
    first = gy.loc[gy["year"] == 2001, "volume_km3"].sum()
    assert f"total volume {first:.3f} -> " in text
