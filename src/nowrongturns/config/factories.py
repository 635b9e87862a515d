"""Code a config names: model and task factories ("package.module:function"), timm models
("timm/<name>") and torch optimizers ("torch.optim.<Name>"), and the rule on importing them.

    model: "mylab.nets:build"    # build(input_shape, num_classes, run) -> torch.nn.Module
    model: "timm/resnet50d"      # timm.create_model("resnet50d", pretrained=False, ...)
    task: "mylab.data:load"      # load(run) -> nowrongturns.Task
    optimizer: "torch.optim.NAdam"

Modules are imported from the working directory (first, as `python -m` does) or PYTHONPATH.
A trajectory's `config` names the code that made it, so a stage that rebuilds a model from a
trajectory someone sent (measure, replay) imports a factory only when the user names it too (the
workflow config, or `--trust` on the command line): opening a file never runs code it names.
The standard library is never a factory (`builtins:exec`, `os:system`).

Pure Python until a factory is resolved: config.py checks the forms without importing torch.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
FACTORY = re.compile(rf"^({_DOTTED}):({_DOTTED})$")
TIMM_PREFIX = "timm/"
TIMM_MODEL = re.compile(r"^timm/[\w.\-]+$")
TORCH_OPTIMIZER = re.compile(r"^torch\.optim\.[A-Z]\w*$")
FACTORY_KEYS = ("model", "task")  # the run keys that may name a factory


class FactoryError(ValueError):
    """A factory that cannot be used; the message names the run key and the factory."""


def is_factory(value) -> bool:
    return isinstance(value, str) and FACTORY.match(value) is not None


def standard_library(factory: str) -> bool:
    """Whether a factory's module is Python's own (builtins, os, subprocess, ...)."""
    top = FACTORY.match(factory).group(1).split(".")[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


def factories(run: dict) -> dict[str, str]:
    """Run key -> the factory it names, for the keys that name one."""
    return {key: run[key] for key in FACTORY_KEYS if is_factory(run.get(key))}


def refuse_standard_library(key: str, factory: str, where: str) -> None:
    if standard_library(factory):
        raise FactoryError(
            f"{where}{key}: {factory!r} is a standard-library callable, never a factory"
        )


def module_file(factory: str) -> Path | None:
    """The source file of a factory's module, found without importing it, where it lies under
    the working directory or PYTHONPATH (not an installed package): the train rule's input,
    so that editing it retrains."""
    parts = FACTORY.match(factory).group(1).split(".")
    roots = [Path.cwd(), *(Path(p) for p in os.environ.get("PYTHONPATH", "").split(":") if p)]
    for root in roots:
        for candidate in (
            root.joinpath(*parts).with_suffix(".py"),
            root.joinpath(*parts, "__init__.py"),
        ):
            if candidate.is_file():
                return candidate
    return None


def require_trusted(run: dict, trusted, where: str) -> None:
    """Refuse, before importing anything, a run config (a trajectory's) that names a factory the
    user did not name (`trusted`), or one from the standard library."""
    for key, factory in factories(run).items():
        refuse_standard_library(key, factory, f"{where}: ")
        if factory not in trusted:
            raise FactoryError(
                f"{where}: its config names the {key} factory {factory!r}, which this command "
                f"was not asked to trust; nothing was imported. Name it in the workflow config, "
                f"or pass --trust {factory} to run it"
            )


def resolve(key: str, factory: str):
    """The callable a factory names, imported from the working directory or PYTHONPATH."""
    refuse_standard_library(key, factory, "")
    module_name, attribute = FACTORY.match(factory).groups()
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise FactoryError(
            f"{key} {factory!r}: cannot import module {error.name!r} (looked in the working "
            f"directory {os.getcwd()} and PYTHONPATH)"
        ) from error
    for name in attribute.split("."):
        if not hasattr(target, name):
            raise FactoryError(f"{key} {factory!r}: module {module_name!r} has no {attribute!r}")
        target = getattr(target, name)
    if not callable(target):
        raise FactoryError(f"{key} {factory!r}: {attribute!r} is not callable")
    return target


def call(key: str, factory: str, expected: type, *args):
    """The factory's result, checked to be an `expected`; what it raises is named as its own."""
    try:
        made = resolve(key, factory)(*args)
    except FactoryError:
        raise
    except Exception as error:
        raise FactoryError(f"{key} {factory!r} raised {type(error).__name__}: {error}") from error
    if not isinstance(made, expected):
        raise FactoryError(
            f"{key} {factory!r} returned {type(made).__name__}, not a {expected.__name__}"
        )
    return made


def timm_model(name: str, input_shape: tuple[int, ...], num_classes: int):
    """A timm architecture, randomly initialized, for the task's channels and classes; models
    that are built for an image size (ViTs) get the task's."""
    try:
        import timm
    except ImportError as error:
        raise FactoryError(
            f"model {name!r} needs timm, an optional extra: pip install 'nowrongturns[timm]'"
        ) from error
    architecture = name.removeprefix(TIMM_PREFIX)
    if not timm.is_model(architecture):
        raise FactoryError(f"model {name!r}: timm has no architecture {architecture!r}")
    options = {"pretrained": False, "num_classes": num_classes, "in_chans": input_shape[0]}
    try:
        return timm.create_model(architecture, img_size=tuple(input_shape[1:]), **options)
    except TypeError as error:
        if "img_size" not in str(error):
            raise FactoryError(f"model {name!r}: {error}") from error
        return timm.create_model(architecture, **options)  # sized by its input, not built for it
