"""The memory planner: buffer lifetimes from the op list, then first-fit placement in one arena.

Views (in-place outputs, row views) share their root's buffer, so a root lives from the first write of any
of its views to the last read of any of them. Scratch buffers live during their op only.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcuformer.codegen.ir import Graph, IRError

ALIGN = 4  # every buffer starts on a word boundary (int32 scratch, word loads in kernels)


@dataclass(frozen=True)
class Buffer:
    name: str  # the root tensor
    size: int  # bytes, aligned
    offset: int
    first: int  # first op index that touches it (inclusive)
    last: int  # last op index that touches it (inclusive)
    tensors: tuple[str, ...]  # every tensor placed in it (root first)

    def overlaps_in_time(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last

    def overlaps_in_space(self, other: Buffer) -> bool:
        return self.offset < other.offset + other.size and other.offset < self.offset + self.size


@dataclass(frozen=True)
class MemoryPlan:
    buffers: tuple[Buffer, ...]
    arena_bytes: int
    op_names: tuple[str, ...]
    live_bytes: tuple[int, ...]  # bytes of live buffers at each op
    tensor_offsets: dict[str, int]  # arena offset of every tensor (views included)
    intended_overlaps: frozenset[frozenset[str]] = frozenset()  # anchored pairs that share bytes on purpose

    @property
    def peak_op(self) -> int:
        return max(range(len(self.live_bytes)), key=self.live_bytes.__getitem__)

    def live_at(self, op_index: int) -> list[Buffer]:
        return [b for b in self.buffers if b.first <= op_index <= b.last]


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def lifetimes(graph: Graph) -> dict[str, tuple[int, int]]:
    """Root tensor -> (first, last) op index."""
    span: dict[str, tuple[int, int]] = {}

    def touch(name: str, index: int) -> None:
        root = graph.root(name)
        first, last = span.get(root, (index, index))
        span[root] = (min(first, index), max(last, index))

    touch(graph.input, 0)
    for index, op in enumerate(graph.ops):
        for name in (*op.inputs, op.output, *op.scratch):
            if name in graph.tensors:
                touch(name, index)
    touch(graph.output, len(graph.ops) - 1)
    return span


def _covered_bytes(buffers: list[Buffer]) -> int:
    """Bytes covered by the buffers (anchored buffers may share bytes: counted once)."""
    total, end = 0, 0
    for b in sorted(buffers, key=lambda b: b.offset):
        start = max(b.offset, end)
        total += max(0, b.offset + b.size - start)
        end = max(end, b.offset + b.size)
    return total


def plan_memory(graph: Graph) -> MemoryPlan:
    span = lifetimes(graph)
    groups: dict[str, list[str]] = {root: [] for root in span}
    for name in graph.tensors:
        root = graph.root(name)
        if root in groups:
            groups[root].append(name)
    # Anchored roots are placed together with their anchor, at a fixed distance from it.
    units: dict[str, list[tuple[str, int]]] = {root: [(root, 0)] for root in span}
    for root in span:
        anchor = graph.tensors[root].anchor
        if anchor is not None:
            units[anchor[0]].append((root, anchor[1]))
            del units[root]

    def extent(unit: str) -> int:
        return max(rel + graph.tensors[r].nbytes for r, rel in units[unit])

    # Largest first, ties by first use then name: a deterministic first fit.
    order = sorted(units, key=lambda r: (-extent(r), span[r][0], r))
    placed: list[Buffer] = []
    for unit in order:
        parts = [(r, rel, _align(graph.tensors[r].nbytes), *span[r]) for r, rel in units[unit]]

        def fits(offset: int, parts: list[tuple[str, int, int, int, int]] = parts) -> bool:
            return all(
                not (b.first <= last and first <= b.last and b.offset < offset + rel + size
                     and offset + rel < b.offset + b.size)
                for _, rel, size, first, last in parts
                for b in placed
            )  # fmt: skip

        candidates = sorted({0} | {_align(b.offset + b.size) - rel for b in placed for _, rel, *_ in parts})
        offset = next(c for c in candidates if c >= 0 and c % ALIGN == 0 and fits(c))
        for root, rel, size, first, last in parts:
            members = tuple(sorted(groups[root], key=lambda n: (n != root, n)))
            placed.append(Buffer(root, size, offset + rel, first, last, members))
    buffers = tuple(sorted(placed, key=lambda b: (b.first, b.offset, b.name)))
    arena = max((b.offset + b.size for b in buffers), default=0)
    live = tuple(_covered_bytes([b for b in buffers if b.first <= i <= b.last]) for i in range(len(graph.ops)))
    offsets = {name: by_root.offset + graph.root_offset(name) for by_root in buffers for name in by_root.tensors}
    overlaps = frozenset(
        frozenset((root, spec.anchor[0])) for root, spec in graph.tensors.items() if spec.anchor is not None
    )
    plan = MemoryPlan(buffers, arena, tuple(op.name for op in graph.ops), live, offsets, overlaps)
    check_plan(plan)
    return plan


def check_plan(plan: MemoryPlan) -> None:
    """No two buffers alive at the same time share a byte; every buffer lies inside the arena."""
    for i, a in enumerate(plan.buffers):
        if a.offset < 0 or a.offset + a.size > plan.arena_bytes or a.offset % ALIGN:
            raise IRError(f"buffer {a.name} [{a.offset}, +{a.size}) lies outside the arena or is misaligned")
        for b in plan.buffers[i + 1 :]:
            if a.overlaps_in_time(b) and a.overlaps_in_space(b) and {a.name, b.name} not in plan.intended_overlaps:
                raise IRError(f"buffers {a.name} and {b.name} overlap while both are alive")
