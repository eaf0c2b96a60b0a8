"""Every bad input of docs/errors.md gets its one clear error: the table, tried row by row.

The cases live in ``tests/error_cases.py`` and ``tests/error_cases_io.py``, one per row of the doc's table (same id, same
order). Each is provoked for real: the exact exception type and a regex of its message; a
command-line case runs ``invnorm_jax.pipeline.cli.main`` in-process and must print one line on stderr,
exit with 2 and show no traceback (``--debug`` raises the error instead), before any data is
loaded or model built. The doc cannot drift: its ids, types and messages are checked against
the calls (a doc message cut with `` …`` must be the start of the real one).

Regenerate the doc's tables from the real calls with ``python tests/test_errors.py --write``.
"""

from __future__ import annotations

import contextlib
import gc
import io
import pathlib
import re
import sys
import tempfile

import error_cases
import error_cases_io
import pytest
from error_cases import Ctx

from invnorm_jax.pipeline import ablate, cli, experiment

CASES = error_cases.CASES + error_cases_io.CASES
DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "errors.md"
ROW = re.compile(r"^\|\s*`([\w-]+)`\s*\|(.*)\|\s*$")
CUT = " …"
MAX_CHARS = 240  # longer messages are cut in the doc


# ------------------------------------------------------------------------------------------- running a case


def _collect_quietly() -> None:
    """Collect garbage now, silently: a failed orbax read (``ckpt-other-model``) leaves a coroutine
    that prints its exception whenever it is collected, which must not land in a CLI case's stderr."""
    hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook


def run_cli(argv) -> tuple[int, str]:
    """``invnorm-jax argv`` in-process: (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(list(argv))
    return code, err.getvalue()


def _forbid_work(monkeypatch) -> None:
    """Loading data, building or training a model fails the test: the input must be refused first."""

    def refuse(*args, **kwargs):
        raise AssertionError("started loading data or training before the input was checked")

    for module, name in (
        (experiment, "load_data"),
        (experiment, "train_method"),
        (experiment, "load_trained"),
        (ablate, "run_ablations"),
    ):
        monkeypatch.setattr(module, name, refuse)


def provoke(case, ctx) -> str:
    """Provoke ``case``; check its type and message; return the message as the doc shows it."""
    if not case.cli:
        with pytest.raises(case.error) as info:
            case.run(ctx)
        assert type(info.value) is case.error, f"{case.id}: raised {type(info.value).__name__}"
        message = str(info.value)
    else:
        if case.preflight:
            _forbid_work(ctx.monkeypatch)
        argv = case.run(ctx)
        _collect_quietly()
        code, err = run_cli(argv)
        lines = err.strip().splitlines()
        assert code == 2, f"{case.id}: exit {code}, stderr: {err[-2000:]}"
        assert "Traceback" not in err, f"{case.id}: a traceback on stderr: {err[-3000:]}"
        errors = [line for line in lines if ": error: " in line]
        assert errors == lines[-1:], f"{case.id}: the error must be the last line, and the only one: {lines}"
        if case.preflight:
            assert len(lines) == 1, f"{case.id}: more than one line on stderr: {lines}"
        assert re.match(r"invnorm-jax( \w+)?: error: ", lines[-1])
        message = lines[-1]
        with pytest.raises(case.error) as info:  # --debug: the error itself, with its traceback
            run_cli([*argv, "--debug"])
        assert type(info.value) is case.error
    assert re.search(case.match, message), f"{case.id}: {message!r} does not match {case.match!r}"
    assert "\n" not in message, f"{case.id}: the message is not one line"
    return message.replace(str(ctx.tmp), "/data")


# ------------------------------------------------------------------------------------------- the doc


def _escape(text: str) -> str:
    for ch in "\\`*|<":
        text = text.replace(ch, "\\" + ch)
    return text


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_doc(text: str) -> dict[str, tuple[str, str, str]]:
    """``{id: (call, error type, message)}`` of the doc's table rows, in order."""
    rows = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", match.group(2))]
            assert len(cells) == 3, f"row {match.group(1)!r} must have 4 cells: id, call, error, message"
            call, error, message = cells
            assert match.group(1) not in rows, f"id {match.group(1)!r} twice in the doc"
            rows[match.group(1)] = (call.strip("`"), error.strip("`"), _unescape(message))
    return rows


def doc_row(case, message: str) -> str:
    if len(message) > MAX_CHARS:
        message = message[:MAX_CHARS].rsplit(" ", 1)[0] + CUT
    return f"| `{case.id}` | `{case.call}` | `{case.error.__name__}` | {_escape(message)} |"


@pytest.fixture(scope="module")
def doc_rows():
    return parse_doc(DOC.read_text())


def test_doc_rows_and_cases_are_the_same(doc_rows):
    assert len(CASES) >= 40
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), "duplicate case ids"
    assert list(doc_rows) == ids, "docs/errors.md and tests/error_cases.py differ: run python tests/test_errors.py"
    for case in CASES:
        call, error, _ = doc_rows[case.id]
        assert (call, error) == (case.call, case.error.__name__), case.id


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_its_error(case, tmp_path, monkeypatch, doc_rows):
    monkeypatch.chdir(tmp_path)  # a command line that writes by mistake writes here
    message = provoke(case, Ctx(tmp_path, monkeypatch))
    documented = doc_rows[case.id][2]
    assert message.startswith(documented.removesuffix(CUT)), f"{case.id}: the doc's message is not the real one"


# ------------------------------------------------------------------------------------------- the CLI's handling


def test_debug_from_the_environment_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("INVNORM_DEBUG", "1")
    with pytest.raises(Exception, match="did you mean 'eval.num_chips'"):
        cli.main(["train", "--config", "digits", "--config.eval.num_chip=3"])
    monkeypatch.setenv("INVNORM_DEBUG", "0")
    assert run_cli(["train", "--config", "digits", "--config.eval.num_chip=3"])[0] == 2


def test_an_internal_error_is_never_shown_as_bad_input(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)

    def bug(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")  # a bug deep inside, not the input

    monkeypatch.setattr(experiment, "load_data", bug)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(ValueError, match="broadcast"):
        cli.main(["train", "--config", "digits:smoke", "--workdir", str(tmp_path / "w"), "--no-progress"])
    assert "unexpected ValueError, traceback below: a bug in invnorm-jax" in err.getvalue()


def test_ctrl_c_exits_quietly_with_130(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "load_data", interrupted)
    code, err = run_cli(["train", "--config", "digits:smoke", "--workdir", str(tmp_path / "w")])
    assert code == 130 and "rerun the same command to resume" in err and "Traceback" not in err


def test_a_previous_run_folder_is_accepted_as_output(tmp_path):
    from invnorm_jax.pipeline import config as config_lib
    from invnorm_jax.pipeline.preflight import check_output_folder, is_run_folder

    run = tmp_path / "run"
    config_lib.save(config_lib.load_config("digits:smoke"), run / "digits" / "nn")
    assert is_run_folder(run)
    check_output_folder(run)  # resumed: no error
    check_output_folder(tmp_path / "new")  # not there yet
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty")


def test_what_the_checks_refuse_they_accept_when_complete(tmp_path):
    """Positive controls: a complete dataset folder passes the checks, an argument override is kept."""
    from invnorm_jax import data
    from invnorm_jax.pipeline import config as config_lib
    from invnorm_jax.testing import write_drive_folder, write_speech_commands_folder

    write_drive_folder(tmp_path / "DRIVE", height=16, width=16, train_ids=("21",), test_ids=("01",))
    data.check_dataset("drive", root=tmp_path / "DRIVE")
    write_speech_commands_folder(tmp_path / "speech", words=("bed", "cat"), clips_per_word=3, noise=0.0, burst=False)
    data.check_dataset("speech_commands", root=tmp_path / "speech", source="folder")
    config = config_lib.load_config("drive_unet", overrides=[f"dataset.kwargs.root={tmp_path / 'DRIVE'}"])
    assert config.dataset.kwargs.root == str(tmp_path / "DRIVE") and config.dataset.kwargs.channel == "green"
    with pytest.raises(AttributeError):  # still locked: only the loader's arguments may be added
        config.dataset.kwargs.chanel = "green"


# ------------------------------------------------------------------------------------------- the doc's table


SECTIONS = {
    "fn": "Functions",
    "nn": "Layers and models",
    "model": "Layers and models",
    "fault": "Faults and the chip simulator",
    "sim": "Faults and the chip simulator",
    "cfg": "Configs and `--config.KEY=VALUE` overrides",
    "ovr": "Configs and `--config.KEY=VALUE` overrides",
    "train": "Configs and `--config.KEY=VALUE` overrides",
    "data": "Datasets",
    "ckpt": "Checkpoints and results",
    "results": "Checkpoints and results",
    "cli": "The command line",
}


def tables() -> str:
    """The doc's tables, one per section, from the real calls."""
    lines, section = [], None
    with pytest.MonkeyPatch.context() as monkeypatch:
        for case in CASES:
            title = SECTIONS[case.id.split("-")[0]]
            if title != section:
                lines += ["", f"### {title}", "", "| id | call | error | message |", "|---|---|---|---|"]
                section = title
            with tempfile.TemporaryDirectory() as tmp:
                monkeypatch.chdir(tmp)
                lines.append(doc_row(case, provoke(case, Ctx(pathlib.Path(tmp), monkeypatch))))
                monkeypatch.undo()
    return "\n".join(lines[1:])


def write_doc() -> None:
    """Replace the doc's tables (from its first ``### `` heading to the next ``## `` section)."""
    text = DOC.read_text()
    start = text.index("\n### ") + 1
    end = text.index("\n## ", start) + 1
    DOC.write_text(text[:start] + tables() + "\n\n" + text[end:])


if __name__ == "__main__":
    write_doc() if "--write" in sys.argv else print(tables())


# ------------------------------------------------------------------------------------------- the input family


def test_the_library_errors_of_the_table_are_public_input_errors():
    import invnorm_jax

    builtin = {ValueError, TypeError}
    for case in CASES:
        if case.error not in builtin:
            assert getattr(invnorm_jax, case.error.__name__) is case.error, case.id
            assert issubclass(case.error, invnorm_jax.InputError), case.id
    for name in ("CheckpointError", "TrainingDivergedError", "ResultsError", "UsageError"):
        assert name in invnorm_jax.__all__ and issubclass(getattr(invnorm_jax, name), invnorm_jax.InputError)


@pytest.mark.parametrize("error", ["diverged", "checkpoint", "results"])
def test_user_facing_library_errors_are_one_line_not_a_bug(error, monkeypatch, tmp_path):
    """Raised where the CLI cannot check beforehand (mid-training, mid-restore): still the user's to fix."""
    from invnorm_jax.errors import CheckpointIncompatibleError, ResultsError, TrainingDivergedError

    monkeypatch.chdir(tmp_path)
    raised = {
        "diverged": TrainingDivergedError("digits/nn: training diverged: the loss of step 3 is nan.\nLower it."),
        "checkpoint": CheckpointIncompatibleError("checkpoint x does not fit the model being restored."),
        "results": ResultsError("results.json lacks 'tasks'."),
    }[error]

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(experiment, "train_method", fail)
    code, err = run_cli(
        ["train", "--config", "digits:smoke", "--workdir", str(tmp_path / "w"), "--no-progress", "--method", "nn"]
    )
    assert code == 2 and "Traceback" not in err and "bug" not in err, err
    assert err.strip().splitlines()[-1] == "invnorm-jax train: error: " + " ".join(str(raised).split("\n"))


def test_every_bad_input_is_an_input_error():
    """One error family: each row of docs/errors.md is an InputError, hence a ValueError, and the
    builtin its class names (a TypeError, a FileNotFoundError, ...) as well."""
    from invnorm_jax.errors import InputError

    assert issubclass(InputError, ValueError)
    for case in CASES:
        assert issubclass(case.error, InputError), f"{case.id}: {case.error.__name__} is not an InputError"
