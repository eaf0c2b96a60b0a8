"""The ``>>>`` examples of every module run and print what their docstrings say, and every public
function and class has one.

One test per module, so that a failure names the module. Examples print numbers through
``np.round`` or a format, so their text is the same on every platform.
"""

import doctest
import importlib
import importlib.util
import inspect
import io
import pkgutil

import pytest

import invnorm_jax

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

#: Modules whose examples build whole models or compile many small programs: all examples together
#: took about a minute on the shared 2-core CPU, these modules three quarters of it, so they run in
#: the full suite only and the fast tier keeps about 20 s of examples (the core functional ones).
SLOW = frozenset(
    {
        "invnorm_jax.pipeline.config",
        "invnorm_jax.data.embedded",
        "invnorm_jax.faults.models",
        "invnorm_jax.faults.simulate",
        "invnorm_jax.functional.quantize",
        "invnorm_jax.metrics",
        "invnorm_jax.models",
        "invnorm_jax.models.lstm",
        "invnorm_jax.models.m5",
        "invnorm_jax.models.resnet",
        "invnorm_jax.models.unet",
        "invnorm_jax.nn.norm",
        "invnorm_jax.nn.quantized",
        "invnorm_jax.nn.recurrent",
        "invnorm_jax.ood",
    }
)

#: Module -> why its examples cannot run here (an optional dependency or a dataset folder).
SKIP: dict[str, str] = {}


def _module_names() -> list[str]:
    prefix = invnorm_jax.__name__ + "."
    return [invnorm_jax.__name__] + sorted(m.name for m in pkgutil.walk_packages(invnorm_jax.__path__, prefix))


def _has_examples(name: str) -> bool:
    """Whether the module's source has a ``>>>`` line, read without importing it (collection stays cheap)."""
    with open(importlib.util.find_spec(name).origin, encoding="utf-8") as f:
        return ">>>" in f.read()


def _params():
    for name in _module_names():
        if not _has_examples(name):
            continue
        marks = [pytest.mark.slow] if name in SLOW else []
        if name in SKIP:
            marks.append(pytest.mark.skip(reason=SKIP[name]))
        yield pytest.param(name, marks=marks, id=name)


def _is_public_module(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def _is_function_or_class(obj) -> bool:
    # jitted functions and custom_vjp wrappers are functions to a reader, though not to inspect.
    return inspect.isclass(obj) or inspect.isroutine(obj) or hasattr(obj, "__wrapped__")


def test_every_module_is_found():
    names = _module_names()
    for expected in (
        "invnorm_jax.functional.norm",
        "invnorm_jax.faults.models",
        "invnorm_jax.nn.norm",
        "invnorm_jax.metrics",
        "invnorm_jax.data.embedded",
    ):
        assert expected in names


@pytest.mark.parametrize("name", list(_params()))
def test_examples_run(name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
    assert tests, f"{name} has a '>>>' line but doctest found no example in it"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = io.StringIO()
    for test in tests:
        runner.run(test, out=report.write)
    assert runner.tries > 0
    assert runner.failures == 0, f"{runner.failures} of {runner.tries} examples of {name} failed:\n{report.getvalue()}"


def test_every_public_function_and_class_has_an_example():
    missing = []
    for name in _module_names():
        if not _is_public_module(name):
            continue
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            # A class's own __doc__, not one inherited from its base (inspect.getdoc would inherit).
            if _is_function_or_class(obj) and ">>>" not in (obj.__doc__ or ""):
                missing.append(f"{name}.{attr} (defined in {getattr(obj, '__module__', '?')})")
    assert not missing, "public names whose docstring has no '>>>' example:\n  " + "\n  ".join(missing)
