"""The notebook runs headless, every cell, on small settings (EXITNET_NOTEBOOK_SMALL=1)."""

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "sequential_exits.ipynb"


def test_notebook_executes(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("EXITNET_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("EXITNET_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    pkg = str(ROOT / "python")
    monkeypatch.setenv("PYTHONPATH", pkg + os.pathsep + os.environ.get("PYTHONPATH", ""))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert (tmp_path / "out" / "stability_matrices.png").stat().st_size > 1000
    assert (tmp_path / "out" / "budget_curves.png").stat().st_size > 1000
