"""Draw a patch's graph as a PNG (matplotlib; no graphviz needed).

Nodes are placed in columns by their depth in signal order, audio
connections are solid arrows, param modulations dashed, and each edge is
labelled with the port or param it feeds.
"""
from __future__ import annotations

import networkx as nx

from .graph import build_graph


def layout(g: nx.DiGraph) -> dict:
    """Column = longest path from a source (feedback edges into delays ignored)."""
    dag = g.copy()
    while not nx.is_directed_acyclic_graph(dag):
        cyc = nx.find_cycle(dag)
        # drop the edge entering a cycle-breaking node
        for a, b in cyc:
            if dag.nodes[b]["spec"].cls.breaks_cycles:
                dag.remove_edge(a, b)
                break
        else:
            dag.remove_edge(*cyc[0])
    depth = {}
    for n in nx.topological_sort(dag):
        depth[n] = max((depth[p] + 1 for p in dag.predecessors(n)), default=0)
    cols: dict[int, list] = {}
    for n in sorted(g.nodes, key=lambda n: g.nodes[n]["index"]):
        cols.setdefault(depth[n], []).append(n)
    pos = {}
    for x, names in cols.items():
        for i, n in enumerate(names):
            pos[n] = (x * 3.0, -(i - (len(names) - 1) / 2) * 1.4)
    return pos


def draw_graph(spec, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    g = build_graph(spec)
    pos = layout(g)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    w = max(6.0, (max(xs) - min(xs)) * 1.0 + 4)
    h = max(3.0, (max(ys) - min(ys)) * 1.0 + 2.5)
    fig, ax = plt.subplots(figsize=(w, h))
    for a, b, data in g.edges(data=True):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        labels = data["label"].split(", ")
        is_param = any(lb.split("->")[1] in spec.nodes[b].params for lb in labels)
        back = x1 <= x0
        ax.annotate("", xy=(x1 - 0.9, y1), xytext=(x0 + 0.9, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#c0504d" if is_param else "#333333",
                                    linestyle="--" if is_param else "-", lw=1.3,
                                    connectionstyle="arc3,rad=0.35" if back else "arc3,rad=0.0"))
        text = ", ".join(lb.split("->")[1] for lb in labels)
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.18, text, fontsize=8, ha="center",
                color="#c0504d" if is_param else "#333333")
    for n, (x, y) in pos.items():
        ns = spec.nodes[n]
        out = n == spec.out
        box = FancyBboxPatch((x - 0.9, y - 0.35), 1.8, 0.7, boxstyle="round,pad=0.05",
                             fc="#dbe8f5" if not out else "#f5e6c8", ec="#1f4e79", lw=1.2)
        ax.add_patch(box)
        ax.text(x, y + 0.08, n, ha="center", va="center", fontsize=10, weight="bold")
        consts = [f"{k}={v.value:g}" for k, v in ns.params.items() if v.kind == "const"][:2]
        ax.text(x, y - 0.18, ns.type + (" · " + " ".join(consts) if consts else ""), ha="center",
                va="center", fontsize=7, color="#444444")
    ax.set_xlim(min(xs) - 1.5, max(xs) + 1.5)
    ax.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    ax.axis("off")
    ax.set_title(spec.title or (spec.file or "patch"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
