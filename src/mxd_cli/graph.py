"""The feature graph: validation, resolved field dependencies, topological order, selection.

Built once from the registered definitions; everything downstream (versions, increments,
commands) reads this immutable view.
"""

from __future__ import annotations

import fnmatch
import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mxd_cli.definitions.keys import FeatureKey, FieldKey
from mxd_cli.definitions.registry import FeatureDefinition, Origin
from mxd_cli.definitions.spec import FeatureDep, FeatureSpec, FieldSpec, SpecialFieldDep
from mxd_cli.errors import DefinitionError, UsageError, did_you_mean


@dataclass(frozen=True, order=True)
class FieldRef:
    """A field of a feature; its string form ``demo/raw.audio`` enters version hashes."""

    feature: FeatureKey
    field: FieldKey

    def __str__(self) -> str:
        return f"{self.feature}.{self.field}"


@dataclass(frozen=True)
class FeatureNode:
    """A feature in the graph with its field dependencies resolved."""

    definition: FeatureDefinition
    # Per field: parent fields sorted by their fully-qualified string (the hash order).
    parent_fields: Mapping[FieldKey, tuple[FieldRef, ...]]

    @property
    def key(self) -> FeatureKey:
        return self.definition.spec.key

    @property
    def spec(self) -> FeatureSpec:
        return self.definition.spec

    @property
    def origin(self) -> Origin:
        return self.definition.origin

    @property
    def upstream(self) -> tuple[FeatureKey, ...]:
        return tuple(d.feature for d in self.spec.deps)

    @property
    def is_root(self) -> bool:
        return not self.spec.deps


def _where(definition: FeatureDefinition) -> str:
    return str(definition.origin)


def _resolve_field(
    definition: FeatureDefinition,
    field: FieldSpec,
    upstream: Mapping[FeatureKey, FeatureSpec],
) -> tuple[FieldRef, ...]:
    spec = definition.spec
    refs: set[FieldRef] = set()
    if isinstance(field.deps, SpecialFieldDep):
        for dep in spec.deps:
            refs.update(FieldRef(dep.feature, f.key) for f in upstream[dep.feature].fields)
    elif field.deps:
        dep_keys = {d.feature for d in spec.deps}
        for fdep in field.deps:
            if fdep.feature not in dep_keys:
                raise DefinitionError(
                    f"feature {spec.key}: field {field.key} depends on {fdep.feature}, "
                    "which is not among the feature's deps",
                    hint=did_you_mean(str(fdep.feature), [str(k) for k in dep_keys])
                    or f"add FeatureDep(feature={str(fdep.feature)!r}) to deps",
                    location=_where(definition),
                )
            available = [f.key for f in upstream[fdep.feature].fields]
            if isinstance(fdep.fields, SpecialFieldDep):
                refs.update(FieldRef(fdep.feature, k) for k in available)
                continue
            for fkey in fdep.fields:
                if fkey not in available:
                    raise DefinitionError(
                        f"feature {spec.key}: field {field.key} depends on unknown field "
                        f"{fkey} of {fdep.feature}",
                        hint=did_you_mean(str(fkey), [str(k) for k in available])
                        or f"{fdep.feature} has fields {', '.join(str(k) for k in available)}",
                        location=_where(definition),
                    )
                refs.add(FieldRef(fdep.feature, fkey))
    else:
        for dep in spec.deps:
            refs.update(_mapped_fields(dep, field.key, upstream[dep.feature]))
        if spec.deps and not refs:  # Metaxy refuses this too ("No upstream fields found")
            raise DefinitionError(
                f"feature {spec.key}: field {field.key} maps to no upstream field",
                hint="give the field explicit deps, or a fields_mapping on one of its "
                "FeatureDeps that reaches an upstream field",
                location=_where(definition),
            )
    return tuple(sorted(refs, key=str))


def _mapped_fields(dep: FeatureDep, ours: FieldKey, up: FeatureSpec) -> list[FieldRef]:
    mapping = dep.fields_mapping
    keys = [f.key for f in up.fields if f.key not in mapping.exclude_fields]
    if mapping.kind == "none":
        return []
    if mapping.kind == "all":
        return [FieldRef(dep.feature, k) for k in keys]
    if mapping.kind == "specific":
        chosen = dict(mapping.mapping).get(ours, ())
        return [FieldRef(dep.feature, k) for k in keys if k in chosen]
    same = [k for k in keys if k == ours]
    if not same and mapping.match_suffix:
        n = len(ours.parts)
        same = [k for k in keys if k.parts[-n:] == ours.parts]
    return [FieldRef(dep.feature, k) for k in (same or keys)]


def _check_lineage(
    definition: FeatureDefinition, upstream: Mapping[FeatureKey, FeatureSpec]
) -> None:
    spec = definition.spec
    for dep in spec.deps:
        rename = dict(dep.rename or {})
        up_ids = {rename.get(c, c) for c in upstream[dep.feature].id_columns}
        if dep.lineage.kind == "1:1":
            needed: Sequence[str] = spec.id_columns
        else:
            needed = dep.lineage.on or ()
            outside = [c for c in needed if c not in spec.id_columns]
            if outside:
                raise DefinitionError(
                    f"feature {spec.key}: lineage on {outside} must name id columns of "
                    f"{spec.key} ({', '.join(spec.id_columns)})",
                    location=_where(definition),
                )
        missing = [c for c in needed if c not in up_ids]
        if missing:
            raise DefinitionError(
                f"feature {spec.key}: id column(s) {', '.join(missing)} not among the id "
                f"columns of upstream {dep.feature} ({', '.join(sorted(up_ids))})",
                hint="rename an upstream id column with FeatureDep(rename={...}) or use "
                "aggregation(on=...) / expansion(on=...) lineage",
                location=_where(definition),
            )
        extra = sorted(up_ids - set(spec.id_columns)) if dep.lineage.kind == "1:1" else []
        if extra:
            raise DefinitionError(
                f"feature {spec.key}: upstream {dep.feature} has id column(s) "
                f"{', '.join(extra)} that {spec.key} lacks, so one sample would match several "
                "upstream rows",
                hint=f"use FeatureDep(feature={str(dep.feature)!r}, lineage=aggregation(on=[...]))"
                " or add the column(s) to id_columns",
                location=_where(definition),
            )


# Tables that belong to Metaxy or mxd in every store (their table names, lowercase).
SYSTEM_TABLES = {"metaxy_system__feature_versions": "Metaxy's graph snapshots"}
SYSTEM_PREFIXES = ("metaxy_system__", "metaxy-system__", "__mxd")


def _check_table_names(defs: Mapping[FeatureKey, FeatureDefinition]) -> None:
    """No two features may share a table, and none may take a system table's name.

    Stores name tables ``a__b`` with ``-`` as ``_`` (so ``a/b-c`` and ``a/b_c``, or ``a_/b``
    and ``a/_b``, would meet), and DuckDB compares names case-insensitively."""
    seen: dict[str, FeatureKey] = {}
    for key in sorted(defs):
        name = key.table_name.lower()
        if name in SYSTEM_TABLES or name.startswith(SYSTEM_PREFIXES):
            raise DefinitionError(
                f"feature {key} would be stored in the system table {key.table_name}",
                hint="the first key part 'metaxy-system' (or 'metaxy_system') is Metaxy's own; "
                "choose another key",
                location=_where(defs[key]),
            )
        other = seen.get(name)
        if other is not None:
            raise DefinitionError(
                f"features {other} and {key} would share the table {key.table_name}",
                hint="store table names join key parts with '__' and write '-' as '_'; "
                "rename one of the two keys",
                location=_where(defs[key]),
            )
        seen[name] = key


class FeatureGraph:
    """An immutable, validated DAG of features."""

    def __init__(self, definitions: Iterable[FeatureDefinition]) -> None:
        defs = {d.key: d for d in definitions}
        specs = {k: d.spec for k, d in defs.items()}
        _check_table_names(defs)
        for definition in defs.values():
            for dep in definition.spec.deps:
                if dep.feature not in specs:
                    raise DefinitionError(
                        f"feature {definition.key} depends on unknown feature {dep.feature}",
                        hint=did_you_mean(str(dep.feature), [str(k) for k in specs])
                        or "declare the upstream feature in a module listed in entrypoints",
                        location=_where(definition),
                    )
        self._order = _topological_order(defs)
        nodes: dict[FeatureKey, FeatureNode] = {}
        for key in self._order:
            definition = defs[key]
            _check_lineage(definition, specs)
            parents = {f.key: _resolve_field(definition, f, specs) for f in definition.spec.fields}
            nodes[key] = FeatureNode(definition, parents)
        self._nodes = nodes
        downstream: dict[FeatureKey, list[FeatureKey]] = {k: [] for k in nodes}
        for node in nodes.values():
            for up in node.upstream:
                downstream[up].append(node.key)
        self._downstream = {k: tuple(v) for k, v in downstream.items()}

    @property
    def order(self) -> tuple[FeatureKey, ...]:
        """Keys in topological order, ties broken by key parts."""
        return self._order

    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __getitem__(self, key: FeatureKey) -> FeatureNode:
        return self._nodes[key]

    def nodes(self) -> list[FeatureNode]:
        return [self._nodes[k] for k in self._order]

    def downstream(self, key: FeatureKey) -> tuple[FeatureKey, ...]:
        return self._downstream[key]

    def upstream_closure(self, key: FeatureKey) -> set[FeatureKey]:
        seen: set[FeatureKey] = set()
        stack = list(self._nodes[key].upstream)
        while stack:
            k = stack.pop()
            if k not in seen:
                seen.add(k)
                stack.extend(self._nodes[k].upstream)
        return seen

    def downstream_closure(self, key: FeatureKey) -> set[FeatureKey]:
        seen: set[FeatureKey] = set()
        stack = list(self._downstream[key])
        while stack:
            k = stack.pop()
            if k not in seen:
                seen.add(k)
                stack.extend(self._downstream[k])
        return seen

    def resolve_key(self, text: str) -> FeatureKey:
        """The key named by ``text``; a UsageError with a did-you-mean hint otherwise."""
        try:
            key = FeatureKey.parse(text)
        except DefinitionError as exc:
            raise UsageError(f"invalid feature key {text!r}: {exc.message}") from None
        if key not in self._nodes:
            raise UsageError(
                f"unknown feature {text!r}",
                hint=did_you_mean(text, [str(k) for k in self._order])
                or "run 'mxd list' to see the features",
            )
        return key

    def select(self, selectors: Sequence[str]) -> list[FeatureKey]:
        """Features chosen by selectors, in topological order; none = all.

        Grammar: ``a/b`` (a key), ``demo/*`` (a glob), ``+a/b`` (with all upstream),
        ``a/b+`` (with all downstream), ``tag:NAME``; several selectors are united.
        """
        if not selectors:
            return list(self._order)
        chosen: set[FeatureKey] = set()
        for raw in selectors:
            chosen |= self._select_one(raw.strip())
        return [k for k in self._order if k in chosen]

    def _select_one(self, selector: str) -> set[FeatureKey]:
        up = selector.startswith("+")
        down = selector.endswith("+") and len(selector) > 1
        core = selector[1 if up else 0 : len(selector) - 1 if down else len(selector)]
        if not core:
            raise UsageError(f"empty feature selector {selector!r}")
        if core.startswith("tag:"):
            base = self._tagged(core[4:])
        elif any(ch in core for ch in "*?["):
            base = {k for k in self._order if fnmatch.fnmatchcase(str(k), core)}
            if not base:
                raise UsageError(
                    f"selector {selector!r} matches no feature",
                    hint="run 'mxd list' to see the features",
                )
        else:
            base = {self.resolve_key(core)}
        result = set(base)
        for key in base:
            if up:
                result |= self.upstream_closure(key)
            if down:
                result |= self.downstream_closure(key)
        return result

    def _tagged(self, tag: str) -> set[FeatureKey]:
        found = {n.key for n in self._nodes.values() if tag in n.spec.tags}
        if not found:
            tags = sorted({t for n in self._nodes.values() for t in n.spec.tags})
            raise UsageError(
                f"no feature has tag {tag!r}",
                hint=did_you_mean(tag, tags)
                or (f"known tags: {', '.join(tags)}" if tags else "no feature has tags"),
            )
        return found


def _topological_order(defs: Mapping[FeatureKey, FeatureDefinition]) -> tuple[FeatureKey, ...]:
    indegree = {k: len(d.spec.deps) for k, d in defs.items()}
    children: dict[FeatureKey, list[FeatureKey]] = {k: [] for k in defs}
    for key, definition in defs.items():
        for dep in definition.spec.deps:
            children[dep.feature].append(key)
    ready = [k for k, n in indegree.items() if n == 0]
    heapq.heapify(ready)
    order: list[FeatureKey] = []
    while ready:
        key = heapq.heappop(ready)
        order.append(key)
        for child in children[key]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, child)
    if len(order) < len(defs):
        cycle = _find_cycle(defs, {k for k, n in indegree.items() if n > 0})
        path = " -> ".join(str(k) for k in cycle)
        raise DefinitionError(
            f"dependency cycle: {path}",
            hint="a feature cannot depend on itself through its upstreams; remove one dep",
            location=_where(defs[cycle[0]]),
        )
    return tuple(order)


def _find_cycle(
    defs: Mapping[FeatureKey, FeatureDefinition], remaining: set[FeatureKey]
) -> list[FeatureKey]:
    # Every feature left after Kahn's algorithm has an upstream that is also left, so
    # walking upstream from the smallest one must revisit a key: that loop is a cycle.
    start = min(remaining)
    path: list[FeatureKey] = []
    index: dict[FeatureKey, int] = {}
    key = start
    while key not in index:
        index[key] = len(path)
        path.append(key)
        key = min(d.feature for d in defs[key].spec.deps if d.feature in remaining)
    cycle = path[index[key] :]
    # Print it in dependency direction (upstream first), from its smallest key, closed.
    cycle.reverse()
    first = cycle.index(min(cycle))
    cycle = cycle[first:] + cycle[:first]
    return [*cycle, cycle[0]]
