"""Name -> factory registries, so that "every member works" is a loop in a test (timm style)."""
from __future__ import annotations

from typing import Callable, Dict, Generic, List, TypeVar

from sgdexp.errors import ConfigError

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    """A named table of factories; `key` is the config key users set to pick one."""

    def __init__(self, key: str):
        self.key = key
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(fn: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.key}: {name!r} is registered twice")
            self._items[name] = fn
            return fn

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(self.key, name, f"one of {', '.join(self.names())}") from None

    def names(self) -> List[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
