"""The patch as a networkx graph: order, cycles and the delay rule.

An edge ``a -> b`` means b reads a's output (as an input or to drive a
param). A cycle is legal only through a node that declares
``breaks_cycles`` (``delay``), as the Web Audio API allows cycles only
through a DelayNode: such a node is split into a *read* step, which plays
samples written in earlier blocks, and a *write* step, which stores this
block's input. Only delay nodes that really sit on a cycle are split, so a
delay outside a loop keeps sample-exact short times.
"""
from __future__ import annotations

import networkx as nx

from .errors import PatchError, Where


def build_graph(spec) -> nx.DiGraph:
    """The connection graph of a :class:`PatchSpec` (raises on illegal cycles)."""
    g = nx.DiGraph()
    for i, (name, ns) in enumerate(spec.nodes.items()):
        g.add_node(name, index=i, spec=ns)
    for name, ns in spec.nodes.items():
        for port, (src, sport) in ns.inputs.items():
            _edge(g, src, name, f"{sport}->{port}")
        for pname, s in ns.params.items():
            if s.kind == "mod":
                _edge(g, s.source[0], name, f"{s.source[1]}->{pname}")
    order(g, spec)  # validates
    return g


def _edge(g, a, b, label):
    if g.has_edge(a, b):
        g[a][b]["label"] += ", " + label
    else:
        g.add_edge(a, b, label=label)


def split_nodes(g: nx.DiGraph) -> set[str]:
    """Cycle-breaking nodes that sit on a cycle (and so run as read + write)."""
    out = set()
    for comp in nx.strongly_connected_components(g):
        if len(comp) > 1 or any(g.has_edge(n, n) for n in comp):
            for n in comp:
                if g.nodes[n]["spec"].cls.breaks_cycles:
                    out.add(n)
    return out


def order(g: nx.DiGraph, spec=None) -> list[tuple[str, str]]:
    """Execution order: ``(node, step)`` with step ``process``, ``read`` or ``write`` (see :func:`levels`)."""
    return [v for v, _ in levels(g, spec)]


def levels(g: nx.DiGraph, spec=None) -> list[tuple[tuple[str, str], int]]:
    """Execution order with levels: ``((node, step), level)``.

    Topological, grouped by level: every step comes after all the steps it
    depends on, and steps of one level are independent of each other.
    """
    split = split_nodes(g)
    h = nx.DiGraph()
    for n, data in g.nodes(data=True):
        if n in split:
            h.add_node((n, "read"), index=data["index"])
            h.add_node((n, "write"), index=data["index"])
            h.add_edge((n, "read"), (n, "write"))
        else:
            h.add_node((n, "process"), index=data["index"])
    for a, b in g.edges():
        src = (a, "read") if a in split else (a, "process")
        dst = (b, "write") if b in split else (b, "process")
        h.add_edge(src, dst)
    try:
        topo = list(nx.lexicographical_topological_sort(h, key=lambda v: (h.nodes[v]["index"], v[1])))
    except nx.NetworkXUnfeasible:
        cyc = nx.find_cycle(h)
        names = [a[0] for a, _ in cyc]
        loop = " -> ".join(names + [names[0]])
        first = g.nodes[names[0]]["spec"]
        raise PatchError(
            f"cycle without a delay: {loop}",
            Where(spec.file if spec else None, first.line, names[0]),
            hint="a feedback loop must pass through a 'delay' node (of at least one block)",
        ) from None
    # By level (longest path from a source), then as above: nodes of one level
    # never depend on each other, so identical nodes of a level can run as one
    # batched call (see Engine), and any order within a level is the same sound.
    level: dict = {}
    for v in topo:
        level[v] = 1 + max((level[u] for u in h.predecessors(v)), default=-1)
    pos = {v: i for i, v in enumerate(topo)}
    return [(v, level[v]) for v in sorted(topo, key=lambda v: (level[v], pos[v]))]
