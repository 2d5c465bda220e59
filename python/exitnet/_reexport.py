"""Public modules re-export what their private modules define (a module split along its concepts
keeps one public import path)."""

from __future__ import annotations

from typing import Any


def own(namespace: dict[str, Any]) -> None:
    """Make every class and function of ``namespace['__all__']`` that was defined in a private
    sibling module (``exitnet._x``) report the public module: ``help()``, ``repr`` of classes and
    pickles then name ``exitnet.<module>``, where users import them from."""
    public = namespace["__name__"]
    private = public.rsplit(".", 1)[0] + "._"
    for name in namespace["__all__"]:
        obj = namespace[name]
        if callable(obj) and getattr(obj, "__module__", "").startswith(private):
            obj.__module__ = public
