"""Registries: one per kind of part (activation, loss, optimizer, schedule, layer), each the
single place where a part's name, what builds it and which settings it takes are written.

Everything that names parts reads the registry of their kind: config checks, ``--help``
choices, model-file headers, sweep spaces, the scikit-learn estimator. A part defined outside
numlp joins by registering, and then works from Python, from a config file and in a saved
model, with no edit to numlp::

    from numlp.losses import LOSSES

    @LOSSES.register("huber", settings=())
    class Huber(Loss): ...

A registry reads like a mapping from names to factories (``LOSSES["mse"]`` is the class
``MSE``); :meth:`Registry.entry` gives the whole :class:`Entry`, with the settings the part
takes and the facts other code asks about it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    """One registered part.

    ``factory`` builds it; ``settings`` are the names of the run settings (fields of
    :class:`numlp.config.TrainConfig`) passed to ``factory`` as keywords when a run builds it;
    ``facts`` are what other code may ask without building it (a loss's words for a report,
    the outputs it goes with...)."""

    name: str
    factory: Callable
    settings: tuple[str, ...] = ()
    facts: dict = field(default_factory=dict)

    def build(self, *args, settings: dict | None = None, **given):
        """The part: ``factory(*args, **given)`` and, of ``settings`` (a run's settings by
        name), those this entry takes."""
        taken = {k: settings[k] for k in self.settings if k in (settings or {})}
        return self.factory(*args, **given, **taken)


class Registry:
    """Names of one ``kind`` of part mapped to their :class:`Entry`; see the module doc."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str | None = None, factory: Callable | None = None, *,
                 settings=(), replace: bool = False, **facts):  # fmt: skip
        """Register ``factory`` under ``name`` (default: its ``__name__``); without a factory,
        a decorator. Refuses a name already taken by another factory unless ``replace``."""

        def add(made: Callable) -> Callable:
            key = name or made.__name__
            if not isinstance(key, str) or not key or not key.isprintable():
                raise ValueError(f"a {self.kind} needs a printable name, got {key!r}")
            taken = self._entries.get(key)
            if taken is not None and taken.factory is not made and not replace:
                raise ValueError(
                    f"a {self.kind} named {key!r} is already registered ({taken.factory!r}); "
                    "pass replace=True to replace it"
                )
            self._entries[key] = Entry(key, made, tuple(settings), dict(facts))
            return made

        return add if factory is None else add(factory)

    def entry(self, name) -> Entry:
        """The entry of ``name``; ValueError listing the names known when there is none."""
        found = self._entries.get(name) if isinstance(name, str) else None
        if found is None:
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}"
            )
        return found

    def build(self, name, *args, settings: dict | None = None, **given):
        """Build ``name`` (see :meth:`Entry.build`)."""
        return self.entry(name).build(*args, settings=settings, **given)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __getitem__(self, name) -> Callable:
        return self.entry(name).factory

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


# How models are written to files. numlp.io registers its ``.npz`` writer when numlp is
# imported, so that ``model.save(path)`` works without the model importing the file layer.
MODEL_FILES = Registry("model file format")
