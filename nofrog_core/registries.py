"""One kind of registry for every extension point: metrics, built-in evaluation tasks, built-in
training tasks, loss terms, LR schedules and the gate's fit strategies.

A registry is a dict that refuses a second entry under a name it already holds (two plugins that
pick the same name would otherwise replace each other silently) and names what it holds when a
lookup fails.
"""

from __future__ import annotations


class Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def __setitem__(self, name, value) -> None:
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered ({self[name]!r}); choose another name")
        super().__setitem__(name, value)

    def __missing__(self, name):
        raise KeyError(f"unknown {self.kind} {name!r}; registered: {sorted(self)}")

    def register(self, name: str):
        """Decorator: `@REGISTRY.register("name")` registers what it decorates under `name`."""
        def add(value):
            self[name] = value
            return value
        return add
