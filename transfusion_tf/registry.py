"""A small named registry filled by a decorator; one instance per variable of the study.

Models, init strategies, converters and similarity measures each keep one `Registry`, and each
has a completeness test that walks `registry.names()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

V = TypeVar("V")


class Registry(Generic[V]):
    """Maps names to objects; `@registry.register("name")` adds one, `registry.get` looks up."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, V] = {}

    def register(self, name: str) -> Callable[[V], V]:
        def decorator(obj: V) -> V:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def add(self, name: str, obj: V) -> V:
        return self.register(name)(obj)

    def get(self, name: str) -> V:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
