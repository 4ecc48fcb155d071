"""Who is present, per topic, across nodes: each node's own set, heard from its heartbeats."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Sets = dict[str, frozenset[str]]


class PresenceBoard:
    """Every node publishes its whole set per topic (on change and every heartbeat); a node
    not heard from for `node_timeout` seconds is forgotten, with everyone it had."""

    def __init__(self, node_timeout: float) -> None:
        self._node_timeout = node_timeout
        self._local: Sets = {}
        self._remote: dict[str, tuple[Sets, float]] = {}

    @property
    def local(self) -> dict[str, list[str]]:
        return {topic: sorted(members) for topic, members in self._local.items()}

    @property
    def nodes(self) -> int:
        """Other nodes heard from within node_timeout."""
        return len(self._remote)

    def members(self, topic: str) -> frozenset[str]:
        found = set(self._local.get(topic, ()))
        for sets, _seen in self._remote.values():
            found.update(sets.get(topic, ()))
        return frozenset(found)

    def set_local(self, topic: str, members: Iterable[str]) -> bool:
        """True when the members of `topic` across the cluster changed."""
        before = self.members(topic)
        self._local[topic] = frozenset(members)
        return self.members(topic) != before

    def heard(self, node: str, sets: Mapping[str, Iterable[str]], now: float) -> set[str]:
        """A node's whole state; returns the topics whose members changed."""
        fresh = {topic: frozenset(members) for topic, members in sets.items()}
        previous = self._remote.get(node, ({}, 0.0))[0]
        before = self._snapshot(set(previous) | set(fresh))
        self._remote[node] = (fresh, now)
        return self._changed(before)

    def forget(self, node: str) -> set[str]:
        before = self._snapshot(set(self._remote.get(node, ({}, 0.0))[0]))
        self._remote.pop(node, None)
        return self._changed(before)

    def expire(self, now: float) -> set[str]:
        """Forget the nodes silent for longer than node_timeout (dead, or cut off)."""
        changed: set[str] = set()
        for node, (_sets, seen) in list(self._remote.items()):
            if now - seen > self._node_timeout:
                changed |= self.forget(node)
        return changed

    def _snapshot(self, topics: set[str]) -> dict[str, frozenset[str]]:
        return {topic: self.members(topic) for topic in topics}

    def _changed(self, before: dict[str, frozenset[str]]) -> set[str]:
        return {topic for topic, members in before.items() if self.members(topic) != members}
