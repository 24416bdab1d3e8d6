"""``Record``: the immutable value class the plugins use for their parsed input, without ``dataclasses``.

``import dataclasses`` pulls in ``inspect``, ``ast``, ``dis`` and ``tokenize``: about a third of an executable's
start-up, paid on every CNI call, for a few frozen classes. A subclass lists its fields in ``__slots__`` and
their defaults in ``_defaults``; it gets keyword or positional construction, immutability, equality, hashing
and a readable ``repr`` over the fields (minus those named in ``_not_compared``).
"""

from __future__ import annotations


class Record:
    """Base class of immutable records; see the module docstring."""

    __slots__ = ()
    _defaults: dict = {}
    _not_compared: frozenset = frozenset()

    def __init__(self, *args: object, **kwargs: object) -> None:
        names = self.__slots__
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes at most {len(names)} positional arguments")
        values = {names[position]: value for position, value in enumerate(args)}
        for name, value in kwargs.items():
            if name not in names:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            if name in values:
                raise TypeError(f"{type(self).__name__} got {name!r} twice")
            values[name] = value
        for name in names:
            if name not in values:
                if name not in self._defaults:
                    raise TypeError(f"{type(self).__name__} needs {name!r}")
                default = self._defaults[name]
                # A mutable default is copied, so two records never share it (dataclasses' default_factory).
                values[name] = default.copy() if isinstance(default, (dict, list, set)) else default
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _compared(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__ if name not in self._not_compared)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__
                           if name not in self._not_compared)
        return f"{type(self).__name__}({fields})"

    def replace(self, **changes: object) -> Record:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return type(self)(**values)
