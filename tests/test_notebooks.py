"""The notebooks: stored executed, run top to bottom with small settings, and not stale against the code.

Each notebook reads ``INVNORM_NB_SMALL=1`` (few steps, few chips) and asserts, in its own cells,
what it shows. Cells tagged ``check`` print only what the size settings cannot change (shapes, a
layer's output on a fixed key, an API signature, a stored paper-scale run): re-executed, they must
print exactly the stored text, so a notebook that the code has moved away from fails here until it
is executed and stored again (``notebooks/README.md`` says how).
"""

import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = pathlib.Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_BYTES = 1_000_000
_EXECUTED: dict[pathlib.Path, nbformat.NotebookNode] = {}


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _text(cell) -> str:
    """What a cell showed as text: streams, and the text of displayed or returned values (no images)."""
    parts = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("display_data", "execute_result"):
            data = o.get("data", {})
            parts.append(data.get("text/markdown", data.get("text/plain", "")))
        elif o.output_type == "error":
            parts.append(f"{o.ename}: {o.evalue}")
    return "".join(parts)


def _errors(nb) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for c in _code_cells(nb) for o in c.get("outputs", []) if o.output_type == "error"]


def _executed_small(path, tmp_root) -> nbformat.NotebookNode:
    """``path`` executed with the small settings, in a kernel that imports this checkout (once per session)."""
    if path not in _EXECUTED:
        nb = nbformat.read(path, as_version=4)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("INVNORM_NB_SMALL", "1")
            mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
            mp.setenv("INVNORM_DEMO_OUT", str(tmp_root / "demo"))  # a fresh demo run, never a stale folder
            mp.delenv("INVNORM_RESULTS", raising=False)
            try:
                NotebookClient(nb, timeout=900, kernel_name="python3").execute(cwd=str(path.parent))
            except CellExecutionError as err:
                pytest.fail(f"{path.name} failed with the small settings:\n{str(err)[-3000:]}")
        _EXECUTED[path] = nb
    return _EXECUTED[path]


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("notebooks")


def test_the_three_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_paper_figures.ipynb", "03_extend.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_notebook_was_executed_at_full_settings(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    cells = _code_cells(nb)
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{path.name}: not executed top to bottom in one kernel: {counts}"
    assert not _errors(nb), _errors(nb)
    assert "settings: full" in _text(cells[0]), f"{path.name} was stored with other than its full settings"
    assert any("image/png" in o.get("data", {}) for c in cells for o in c.outputs), f"{path.name} shows no plot"
    checks = [c for c in cells if "check" in c.metadata.get("tags", [])]
    assert checks and all(_text(c).strip() for c in checks), f"{path.name}: no check cell, or one without output"
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes: lower the figures' dpi"


@pytest.mark.slow  # a kernel, training and chips per notebook (02: a smoke demo run): minutes
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_with_small_settings(path, tmp_root):
    nb = _executed_small(path, tmp_root)
    cells = _code_cells(nb)
    assert "settings: small" in _text(cells[0])
    assert all(c.execution_count is not None for c in cells)
    assert not _errors(nb), _errors(nb)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_check_cells_match_the_code(path, tmp_root):
    stored = [c for c in _code_cells(nbformat.read(path, as_version=4)) if "check" in c.metadata.get("tags", [])]
    fresh = [c for c in _code_cells(_executed_small(path, tmp_root)) if "check" in c.metadata.get("tags", [])]
    assert [c.source for c in fresh] == [c.source for c in stored]
    for old, new in zip(stored, fresh):
        assert _text(new) == _text(old), (
            f"{path.name} is stale: the cell starting {old.source.splitlines()[0]!r} now prints\n{_text(new)}\n"
            f"instead of the stored\n{_text(old)}\nExecute the notebook and store it again (notebooks/README.md)."
        )
