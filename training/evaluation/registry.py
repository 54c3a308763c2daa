"""Which models the harness compares, by name, imported only when needed.

`pipeline` is the served stack (training.pipeline + the services' cores, see pipeline_eval.py). Every other
name is a Recommender (training/models/base.py):

* `KNOWN` entries name a class ("module:Class"), optional field overrides of its dataclass config (model
  variants such as a rating objective), and for two-stage models the entry whose model is their `retriever`;
* any other public class with a string `name` attribute and `fit`/`score` methods found in `MODEL_MODULES`
  and constructible from defaults is added under that name (so new models appear without editing this file).

A module that does not exist yet is skipped; one that fails to import is reported. `popularity` falls back
to the harness's own reference baseline when no model module provides it.

Constructors are filled in from their signatures: a `seed` argument or config field gets the run's seed, with
`quick` an `epochs` argument or config field is capped at QUICK_EPOCHS, and dataclass configs are built from
their defaults.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

PIPELINE = "pipeline"
QUICK_EPOCHS = 2

#: Modules that hold Recommender adapters, searched in this order (the first class with a name wins).
MODEL_MODULES = (
    "training.models.baselines",
    "training.models.ncf",
    "training.models.autoencoder",
    "training.models.sequence",
    "training.models.two_tower",
    "training.models.lightgcn",
    "training.models.dlrm",
    "training.models.wide_deep",
)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    target: str  # "module:Class"
    #: constructor argument -> dataclass field overrides (e.g. {"config": {"objective": "rating"}})
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: for a ranker over a retriever's candidates: the entry passed as its `retriever`
    retriever: str | None = None
    #: run when no --models are given (variants that cost time without adding much are opt-in)
    default: bool = True

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    def load(self) -> type[Any]:
        module, _, attr = self.target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if not isinstance(cls, type):
            raise TypeError(f"{self.target} is not a class")
        return cls


#: Named models and variants; an entry is available when its module (and its retriever's) imports.
KNOWN: tuple[ModelEntry, ...] = (
    ModelEntry("two-tower", "training.models.two_tower:TwoTowerRecommender"),
    # The denoising linear autoencoder (Steck 2020) the pipeline serves as its item-to-item affinity.
    ModelEntry(
        "dlae",
        "training.models.autoencoder:EaseRecommender",
        {"config": {"dropout": 0.5, "user_weight_exponent": 0.5}},
    ),
    # The same without the user weighting (what the pipeline served until 2026-12-03), for comparison.
    ModelEntry(
        "dlae-unweighted", "training.models.autoencoder:EaseRecommender", {"config": {"dropout": 0.5}}, default=False
    ),
    ModelEntry("dlrm", "training.models.dlrm:DlrmRecommender", retriever="two-tower"),
    ModelEntry("dlrm-rating", "training.models.dlrm:DlrmRecommender", {"config": {"objective": "rating"}}, "two-tower"),
    ModelEntry("wide-deep", "training.models.wide_deep:WideDeepRecommender", retriever="two-tower"),
    ModelEntry(
        "wide-deep-rating",
        "training.models.wide_deep:WideDeepRecommender",
        {"config": {"objective": "rating"}},
        "two-tower",
    ),
    ModelEntry(
        "two-tower-transformer",
        "training.models.two_tower:TwoTowerRecommender",
        {"config": {"encoder": "transformer"}},
        default=False,
    ),
    ModelEntry("lstm4rec", "training.models.sequence:SequenceRecommender", {"config": {"kind": "lstm"}}, default=False),
)

#: Used only when no model module provides the name.
FALLBACKS: tuple[ModelEntry, ...] = (ModelEntry("popularity", "training.evaluation.baselines:MostPopular"),)


class UnknownModel(ValueError):
    """A requested model name is not available."""


def _dataclass_in(hint: Any) -> type[Any] | None:
    """The dataclass type in an annotation such as `Config` or `Config | None`."""
    for c in typing.get_args(hint) or (hint,):
        if isinstance(c, type) and dataclasses.is_dataclass(c):
            return c
    return None


def _adjust_config(config: Any, seed: int, quick: bool, overrides: Mapping[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = set(overrides) - fields
    if unknown:
        raise TypeError(f"{type(config).__name__} has no field(s) {', '.join(sorted(unknown))}")
    changes: dict[str, Any] = dict(overrides)
    if "seed" in fields:
        changes["seed"] = seed
    if quick and "epochs" in fields and isinstance(config.epochs, int):
        changes["epochs"] = min(config.epochs, QUICK_EPOCHS)
    return dataclasses.replace(config, **changes)


def configure(
    fn: Callable[..., Any],
    seed: int,
    quick: bool,
    given: tuple[str, ...] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `fn` (a function or a class): seeds, capped epochs with `quick`, and instances of
    the dataclass configs it takes (its default, else the class's defaults, with `overrides[param]` applied).
    Parameters named in `given` are left to the caller; TypeError when a required one cannot be filled."""
    overrides = overrides or {}
    target: Any = getattr(fn, "__init__", fn) if isinstance(fn, type) else fn
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: fall back to what the signature says
        hints = {}
    kwargs: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in given or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name == "seed":
            kwargs["seed"] = seed
            continue
        if p.name == "epochs":
            if quick:
                kwargs["epochs"] = min(p.default if isinstance(p.default, int) else QUICK_EPOCHS, QUICK_EPOCHS)
            continue
        config_type = _dataclass_in(hints.get(p.name))
        if config_type is not None:
            base = p.default if dataclasses.is_dataclass(p.default) else None
            if base is None:
                try:
                    base = config_type()
                except TypeError:
                    if p.default is p.empty:
                        raise
                    continue
            kwargs[p.name] = _adjust_config(base, seed, quick, overrides.get(p.name, {}))
            continue
        if p.default is p.empty:
            raise TypeError(f"cannot fill the required argument {p.name!r} of {getattr(fn, '__qualname__', fn)}")
    missing = set(overrides) - set(kwargs)
    if missing:
        raise TypeError(f"{getattr(fn, '__qualname__', fn)} takes no dataclass config {', '.join(sorted(missing))}")
    return kwargs


@dataclass
class Registry:
    entries: dict[str, ModelEntry]
    #: module -> why it could not be used (import errors of modules that exist)
    problems: dict[str, str]

    def names(self) -> list[str]:
        return sorted(self.entries)

    def resolve(self, requested: list[str] | None) -> list[str]:
        """The model names to run (all when `requested` is None, `pipeline` included), retrievers before the
        rankers that reuse them and the pipeline last."""
        available = [*self.names(), PIPELINE]
        if requested is None:
            names = [n for n in available if n == PIPELINE or self.entries[n].default]
        else:
            unknown = [n for n in requested if n not in available]
            if unknown:
                hint = "; ".join(f"{m}: {p}" for m, p in self.problems.items())
                raise UnknownModel(
                    f"unknown model(s) {', '.join(unknown)}; available: {', '.join(available)}"
                    + (f" (modules that failed to import: {hint})" if hint else "")
                )
            names = list(dict.fromkeys(requested))

        def stage(name: str) -> int:
            if name == PIPELINE:
                return 2
            return 1 if self.entries[name].retriever is not None else 0

        return sorted(names, key=stage)

    def create(self, name: str, seed: int, quick: bool, fitted: Mapping[str, Any] | None = None) -> Any:
        """An unfitted model. A ranker gets its retriever: the already fitted one from `fitted` (then with
        fit_retriever=False, so it is not trained twice) or a new one."""
        entry = self.entries[name]
        cls = entry.load()
        given: tuple[str, ...] = ("retriever", "fit_retriever") if entry.retriever else ()
        kwargs = configure(cls, seed, quick, given, entry.overrides)
        if entry.retriever:
            if fitted is not None and entry.retriever in fitted:
                kwargs["retriever"] = fitted[entry.retriever]
                kwargs["fit_retriever"] = False
            else:
                kwargs["retriever"] = self.create(entry.retriever, seed, quick)
        return cls(**kwargs)


def is_recommender_class(obj: object, module: str) -> bool:
    """A public class defined in `module` with a non-empty string `name` and callable fit/score."""
    return (
        isinstance(obj, type)
        and obj.__module__ == module
        and not obj.__name__.startswith("_")
        and not inspect.isabstract(obj)
        and not getattr(obj, "_is_protocol", False)
        and isinstance(getattr(obj, "name", None), str)
        and bool(getattr(obj, "name", ""))
        and callable(getattr(obj, "fit", None))
        and callable(getattr(obj, "score", None))
    )


def _constructible(cls: type[Any]) -> bool:
    try:
        configure(cls, 0, False)
    except TypeError:
        return False
    return True


def _import(module_name: str) -> ModuleType | None:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None  # not written yet
        raise


def discover(modules: tuple[str, ...] = MODEL_MODULES, wanted: list[str] | None = None) -> Registry:
    """Imports the model modules and collects what they offer; with `wanted`, stops once all of those names
    are found (so `--models popularity` does not import every model)."""
    entries: dict[str, ModelEntry] = {}
    problems: dict[str, str] = {}
    imported: set[str] = set()
    known_targets = {e.target for e in KNOWN if not e.overrides}  # classes already registered as they are
    for module_name in modules:
        if wanted is not None and all(n in entries or n == PIPELINE for n in wanted):
            break
        try:
            module = _import(module_name)
        except Exception as exc:  # a model module under construction must not stop the others
            problems[module_name] = f"{type(exc).__name__}: {exc}"
            log.warning("skipping %s: %s", module_name, problems[module_name])
            continue
        if module is None:
            continue
        imported.add(module_name)
        for entry in KNOWN:
            if entry.module == module_name:
                entries.setdefault(entry.name, entry)
        for attr, obj in vars(module).items():
            target = f"{module_name}:{attr}"
            if target in known_targets or not is_recommender_class(obj, module_name):
                continue
            if _constructible(obj):
                name = str(getattr(obj, "name", attr))
                entries.setdefault(name, ModelEntry(name, target))
    # A ranker needs its retriever's entry.
    for name in [n for n, e in entries.items() if e.retriever and e.retriever not in entries]:
        retriever = entries[name].retriever
        if wanted is None or name in wanted:
            problems.setdefault(entries[name].module, f"{name} needs the retriever {retriever}, which is unavailable")
        del entries[name]
    for entry in FALLBACKS:
        entries.setdefault(entry.name, entry)
    entries.pop(PIPELINE, None)
    return Registry(entries, problems)
