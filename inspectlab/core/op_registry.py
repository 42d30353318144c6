"""One table of per-op values (cost formulas, receptive-field rules, meta shortcuts), keyed by op packet.

A key is an op packet name, `namespace.name` ("aten.convolution"), never an overload ("aten.add.Tensor")
nor a bare name ("cat"). Registering a key twice raises, so a table cannot hold two answers for one op.
A value may be restricted to some overloads of its packet; `lookup(packet, overload)` respects that.

    COSTS: OpRegistry[Formula] = OpRegistry("costs")

    @COSTS.register("aten.convolution", "aten._convolution")
    def _convolution(op, trace): ...

    COSTS.add(_per_output(1, "activation"), "aten.relu", "aten.relu_")
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

V = TypeVar("V")

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_PACKET = re.compile(rf"{_IDENTIFIER}\.{_IDENTIFIER}")
_OVERLOAD = re.compile(_IDENTIFIER)


class OpRegistry(Generic[V]):
    """Op packet ("aten.cat") -> value, each packet registered once, optionally for some overloads only."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._values: dict[str, V] = {}
        self._overloads: dict[str, frozenset[str]] = {}  # packets whose value holds for these overloads only

    def add(self, value: V, *packets: str, overloads: Iterable[str] | None = None) -> V:
        """Register `value` for each packet (for `overloads` of it only, when given); returns `value`.

        Raises ValueError for a key not of the form "namespace.name" and for a packet already registered."""
        if not packets:
            raise ValueError(f"{self.name} registry: no packet given")
        allowed = None if overloads is None else frozenset(overloads)
        if allowed is not None and (not allowed or any(not _OVERLOAD.fullmatch(o) for o in allowed)):
            raise ValueError(f"{self.name} registry: bad overloads {sorted(allowed)} for {packets}")
        for packet in packets:
            if not isinstance(packet, str) or not _PACKET.fullmatch(packet):
                raise ValueError(f"{self.name} registry: {packet!r} is not an op packet like 'aten.cat'")
            if packet in self._values:
                raise ValueError(f"{self.name} registry: {packet!r} is registered twice")
            self._values[packet] = value
            if allowed is not None:
                self._overloads[packet] = allowed
        return value

    def register(self, *packets: str, overloads: Iterable[str] | None = None) -> Callable[[V], V]:
        """Decorator: `@REGISTRY.register("aten.mm", "aten.bmm")` registers the function beside its definition."""
        frozen = None if overloads is None else tuple(overloads)

        def decorate(value: V) -> V:
            return self.add(value, *packets, overloads=frozen)

        return decorate

    def get(self, packet: str, default: V | None = None) -> V | None:
        """The value registered for `packet`, whatever the overload restriction; `default` when none."""
        return self._values.get(packet, default)

    def lookup(self, packet: str, overload: str) -> V | None:
        """The value for one overload of `packet` ("aten.add", "Tensor"); None when none applies."""
        allowed = self._overloads.get(packet)
        if allowed is not None and overload not in allowed:
            return None
        return self._values.get(packet)

    def overloads(self, packet: str) -> frozenset[str] | None:
        """The overloads `packet`'s value is restricted to; None when it holds for all (or is absent)."""
        return self._overloads.get(packet)

    def __getitem__(self, op_name: str) -> V:
        """By packet ("aten.cat") or by overload name ("aten.add.Tensor", which respects restrictions)."""
        packet, _, overload = op_name.rpartition(".") if op_name.count(".") >= 2 else (op_name, "", "")
        value = self.lookup(packet, overload) if overload else self.get(packet)
        if value is None:
            raise KeyError(f"{self.name} registry has no entry for {op_name!r}")
        return value

    def keys(self) -> list[str]:
        """The registered packets, in registration order."""
        return list(self._values)

    def __contains__(self, packet: object) -> bool:
        return packet in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"OpRegistry({self.name!r}, {len(self)} packets)"
