"""A run's DAG from its pipeline spec, drawn as SVG on the server (no script).

As the Vertex AI console draws a pipeline run: each step a box with its state and duration; a nested
pipeline or a condition (`dsl.If`) a box around its own steps, titled with its name. Within each DAG,
steps sit in layers by their dependencies (a step below everything it waits for; a step that waits for
nothing sits just above its first consumer), and only the edges that order steps are drawn (the
transitive reduction: an edge implied by a longer path is left out, so no edge runs through a step).
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable, Mapping

NODE_WIDTH, NODE_HEIGHT = 250, 44
GAP_X, GAP_Y = 26, 34
GROUP_PADDING, GROUP_TITLE = 12, 22
_CHARACTER_WIDTH = 6.6  # of the 11.5px system sans-serif the labels use, on average: enough to fit or cut


@dataclasses.dataclass
class Node:
    name: str  # the task name (a step's folder, the anchor its box links to)
    label: str  # the display name
    children: list[Node] = dataclasses.field(default_factory=list)  # a group's own DAG
    edges: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # between children, by name
    kind: str = "step"  # step, condition, pipeline, loop
    condition: str = ""
    # Laid out: size, and position within the parent (for the root: the page).
    width: float = NODE_WIDTH
    height: float = NODE_HEIGHT
    x: float = 0.0
    y: float = 0.0

    @property
    def is_group(self) -> bool:
        return self.kind != "step"

    def steps(self) -> list[Node]:
        return [self] if not self.is_group else [step for child in self.children for step in child.steps()]


def parse(spec: Mapping) -> Node:
    """The spec's root DAG as a tree of nodes (groups hold their own DAG)."""
    components = spec.get("components", {})

    def dag_nodes(dag: Mapping) -> tuple[list[Node], list[tuple[str, str]]]:
        tasks = dag.get("tasks", {})
        nodes = []
        for name, task in tasks.items():
            component = components.get(task.get("componentRef", {}).get("name", ""), {})
            label = task.get("taskInfo", {}).get("name", name)
            if "dag" in component:
                children, edges = dag_nodes(component["dag"])
                condition = task.get("triggerPolicy", {}).get("condition", "")
                kind = "condition" if condition else "loop" if task.get("iteratorPolicy") or \
                    task.get("parameterIterator") or task.get("artifactIterator") else "pipeline"
                nodes.append(Node(name, label, children, edges, kind, condition))
            else:
                nodes.append(Node(name, label))
        edges = [(upstream, name) for name, task in tasks.items() for upstream in task.get("dependentTasks", [])
                 if upstream in tasks]
        return nodes, reduce_edges(edges)

    children, edges = dag_nodes(spec.get("root", {}).get("dag", {}))
    return Node(spec.get("pipelineInfo", {}).get("name", "pipeline"), "", children, edges, "pipeline")


def reduce_edges(edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The transitive reduction of a DAG's edges: an edge a longer path implies is dropped."""
    successors: dict[str, set[str]] = {}
    for upstream, downstream in edges:
        successors.setdefault(upstream, set()).add(downstream)

    def reachable_without(start: str, skipped: tuple[str, str]) -> set[str]:
        seen, frontier = set(), [start]
        while frontier:
            node = frontier.pop()
            for following in successors.get(node, ()):
                if (node, following) != skipped and following not in seen:
                    seen.add(following)
                    frontier.append(following)
        return seen

    return sorted(edge for edge in set(edges) if edge[1] not in reachable_without(edge[0], edge))


def _layers(node: Node) -> list[list[Node]]:
    names = {child.name: child for child in node.children}
    upstream = {name: [a for a, b in node.edges if b == name] for name in names}
    downstream = {name: [b for a, b in node.edges if a == name] for name in names}
    depth: dict[str, int] = {}

    def layer_of(name: str, visiting: frozenset = frozenset()) -> int:
        if name not in depth:
            if name in visiting:  # not a DAG: cut the cycle rather than recurse forever
                return 0
            depth[name] = 1 + max((layer_of(up, visiting | {name}) for up in upstream[name]), default=-1)
        return depth[name]

    for name in names:
        layer_of(name)
    for name in names:  # a step that waits for nothing sits just above its first consumer
        if not upstream[name] and downstream[name]:
            depth[name] = max(depth[name], min(depth[down] for down in downstream[name]) - 1)
    layers: list[list[Node]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for child in node.children:
        layers[depth[child.name]].append(child)
    return layers


def layout(node: Node) -> Node:
    """Sizes and positions every node (children relative to their group's box)."""
    if not node.is_group:
        return node
    for child in node.children:
        layout(child)
    layers = _layers(node)
    top = GROUP_TITLE + GROUP_PADDING if node.label else GROUP_PADDING
    widths = [sum(child.width for child in layer) + GAP_X * (len(layer) - 1) for layer in layers]
    inner_width = max(widths, default=NODE_WIDTH)
    centres: dict[str, float] = {}
    for layer, width in zip(layers, widths, strict=True):
        # Fewer crossings: each step under the mean of what it waits for, in that order.
        layer.sort(key=lambda child: _mean([centres[a] for a, b in node.edges if b == child.name and a in centres],
                                           default=inner_width / 2))
        x = GROUP_PADDING + (inner_width - width) / 2
        height = max(child.height for child in layer)
        for child in layer:
            child.x, child.y = x, top
            centres[child.name] = x + child.width / 2
            x += child.width + GAP_X
        top += height + GAP_Y
    node.width = inner_width + 2 * GROUP_PADDING
    node.height = top - GAP_Y + GROUP_PADDING if layers else top + GROUP_PADDING
    return node


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default


@dataclasses.dataclass(frozen=True)
class StepLook:
    """How a step is drawn: its state's CSS class and the second line of its box."""
    css: str
    detail: str


def svg(spec: Mapping, look: Callable[[str], StepLook], link: Callable[[str], str]) -> str:
    """The run's DAG as an inline SVG; `look(task)` gives each step's state, `link(task)` where its box leads."""
    root = layout(parse(spec))
    parts: list[str] = []
    _draw(root, 0.0, 0.0, look, link, parts, root=True)
    return (f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{root.width:.0f}" '
            f'height="{root.height:.0f}" viewBox="0 0 {root.width:.0f} {root.height:.0f}" role="img" '
            f'aria-label="pipeline DAG">{"".join(parts)}</svg>')


def _fit(text: str, width: float) -> str:
    room = int((width - 16) / _CHARACTER_WIDTH)
    return text if len(text) <= room else text[:room - 1] + "…"


def _draw(node: Node, left: float, top: float, look, link, parts: list[str], root: bool = False) -> None:
    x, y = left + node.x, top + node.y
    if not node.is_group:
        state = look(node.name)
        parts.append(
            f'<a href="{html.escape(link(node.name))}" class="node {state.css}" data-task="{html.escape(node.name)}">'
            f'<title>{html.escape(node.label)} ({html.escape(node.name)}): {html.escape(state.detail)}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{node.width:.0f}" height="{node.height:.0f}" rx="6"/>'
            f'<text x="{x + 10:.1f}" y="{y + 18:.1f}" class="label">{html.escape(_fit(node.label, node.width))}</text>'
            f'<text x="{x + 10:.1f}" y="{y + 34:.1f}" class="detail">{html.escape(_fit(state.detail, node.width))}'
            f'</text></a>')
        return
    if not root:
        title = {"condition": f"if {node.label}", "loop": f"for each: {node.label}"}.get(node.kind, node.label)
        ran = any(look(step.name).css not in ("skipped", "not-run", "pending") for step in node.steps())
        parts.append(f'<g class="group {node.kind}{"" if ran else " idle"}"><title>{html.escape(title)}'
                     f'{": " + html.escape(node.condition) if node.condition else ""}</title>'
                     f'<rect x="{x:.1f}" y="{y:.1f}" width="{node.width:.0f}" height="{node.height:.0f}" rx="8"/>'
                     f'<text x="{x + 10:.1f}" y="{y + 16:.1f}">{html.escape(_fit(title, node.width))}</text></g>')
    by_name = {child.name: child for child in node.children}
    for upstream, downstream in node.edges:
        a, b = by_name[upstream], by_name[downstream]
        x1, y1 = x + a.x + a.width / 2, y + a.y + a.height
        x2, y2 = x + b.x + b.width / 2, y + b.y
        bend = (y2 - y1) / 2
        parts.append(f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} '
                     f'{x2:.1f},{y2 - 4:.1f}" marker-end="url(#arrow)"/>')
    if root:
        parts.insert(0, '<defs><marker id="arrow" viewBox="0 0 8 8" refX="4" refY="4" markerWidth="7" '
                        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z" '
                        'class="arrowhead"/></marker></defs>')
    for child in node.children:
        _draw(child, x, y, look, link, parts)


def step_order(spec: Mapping) -> list[str]:
    """The steps as the graph shows them, top to bottom and left to right (a group's steps where it stands)."""
    def walk(node: Node) -> list[str]:
        if not node.is_group:
            return [node.name]
        return [name for child in sorted(node.children, key=lambda child: (child.y, child.x)) for name in walk(child)]

    return walk(layout(parse(spec)))
