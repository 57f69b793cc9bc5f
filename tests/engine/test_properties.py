"""Property tests: mxd's increments equal a plain-Python oracle (``tests/oracle.py``).

Random DAGs of 1-6 features (1:1 lineage, one id column) with field-level deps, optional
deps and renamed user columns get random root samples, then 1-4 random edits (samples
added, changed or removed, a code version flipped, stored rows soft-deleted). After every
edit one pipeline step runs in mxd and in the oracle; per feature the new / stale /
orphaned ids and the provenance of every new and stale row must agree, and resolving again
straight after the step must find nothing to do.

Work proportional to what changed: every downstream feature is also resolved from the
checkpoint its last step left, on the samples touched since (as runs, ``status`` and
``observe`` do), and that narrowed increment must equal the full one and the oracle's,
counts included. The property runs on DuckDB (in memory) and Delta, and on a branch store
over a built one (features served by a fallback, adopted when they change).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TypeAlias

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mxd_cli as mx
from mxd_cli.definitions import FeatureKey, Registry, collecting
from mxd_cli.engine.increment import Baseline, Increment
from mxd_cli.engine.status import stale_causes
from mxd_cli.graph import FeatureGraph
from mxd_cli.store import columns as c
from mxd_cli.store.base import MetadataStore
from mxd_cli.store.duckdb import DuckDBStore
from mxd_cli.versioning import GraphVersions
from tests.engine_steps import Steps
from tests.oracle import Id, Oracle, OracleIncrement

ID = "sample_uid"
POOL = tuple(f"s{i}" for i in range(8))
VALUES = ("u", "v", "w")
FIELD_KEYS = ("a", "b", "c")
ALGORITHMS = ("xxhash32", "xxhash64", "xxh3_64", "md5", "sha256")

# -- plans: plain values hypothesis can draw, shrink and print --------------------------------

# "default" mapping, "all" (mx.ALL), or explicit FieldDeps: (upstream index, fields or None = ALL)
FieldDepsPlan: TypeAlias = (
    Literal["default", "all"] | tuple[tuple[int, tuple[str, ...] | None], ...]
)


@dataclass(frozen=True)
class DepPlan:
    upstream: int
    optional: bool = False
    rename: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FieldPlan:
    key: str
    code_version: str = "1"
    deps: FieldDepsPlan = "default"


@dataclass(frozen=True)
class FeaturePlan:
    index: int
    fields: tuple[FieldPlan, ...] = ()  # none declared: the single field `default`
    deps: tuple[DepPlan, ...] = ()

    @property
    def key(self) -> FeatureKey:
        return FeatureKey.parse(f"p/f{self.index}")

    @property
    def field_keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields) or ("default",)


RootSamples: TypeAlias = dict[str, dict[str, str]]  # id -> field struct key -> provenance


@dataclass(frozen=True)
class AddSamples:
    root: int
    samples: RootSamples  # an id already present gets these values instead


@dataclass(frozen=True)
class ChangeProvenance:
    root: int
    pick: int  # index into the root's sorted ids, modulo their number
    field: str
    value: str


@dataclass(frozen=True)
class RemoveSamples:
    root: int
    ids: tuple[str, ...]


@dataclass(frozen=True)
class FlipCodeVersion:
    feature: int
    field: int  # index into the declared fields, modulo; no declared fields: nothing


@dataclass(frozen=True)
class SoftDelete:
    feature: int
    ids: tuple[str, ...]


Edit: TypeAlias = AddSamples | ChangeProvenance | RemoveSamples | FlipCodeVersion | SoftDelete


@dataclass(frozen=True)
class Scenario:
    features: tuple[FeaturePlan, ...]
    algorithm: str
    length: int
    samples: dict[int, RootSamples]
    edits: tuple[Edit, ...]


# -- strategies ------------------------------------------------------------------------------


def provenance_values(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({k: st.sampled_from(VALUES) for k in keys})


def root_samples(
    plan: FeaturePlan, min_size: int = 0, max_size: int = 8
) -> st.SearchStrategy[RootSamples]:
    values = provenance_values(plan.field_keys)
    return st.dictionaries(st.sampled_from(POOL), values, min_size=min_size, max_size=max_size)


@st.composite
def field_deps(
    draw: st.DrawFn, deps: tuple[DepPlan, ...], plans: list[FeaturePlan]
) -> FieldDepsPlan:
    if not deps:
        return "default"
    kind = draw(st.sampled_from(["default", "all", "explicit"]))
    if kind == "default":
        return "default"
    if kind == "all":
        return "all"
    chosen = draw(st.lists(st.sampled_from([d.upstream for d in deps]), min_size=1, unique=True))
    explicit: list[tuple[int, tuple[str, ...] | None]] = []
    for up in chosen:
        keys = plans[up].field_keys
        fields = draw(st.none() | st.lists(st.sampled_from(keys), min_size=1, unique=True))
        explicit.append((up, None if fields is None else tuple(fields)))
    return tuple(explicit)


@st.composite
def feature_plans(draw: st.DrawFn, all_optional: bool) -> tuple[FeaturePlan, ...]:
    """A random DAG: feature i depends on a subset of features < i (none: a root).

    Every root has one user column ``col_f<i>``; downstream rows carry their upstreams'
    user columns, so a dep renames any column another dep of the same feature already
    brings (mxd rejects such collisions), and now and then one more at random.
    """
    count = draw(st.integers(1, 6))
    plans: list[FeaturePlan] = []
    carried: list[set[str]] = []  # user columns in each feature's rows
    for i in range(count):
        ups = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=i)) if i else []
        every_optional = all_optional or draw(st.integers(0, 3)) == 0
        deps: list[DepPlan] = []
        taken: set[str] = set()
        for j, up in enumerate(ups):
            rename: list[tuple[str, str]] = []
            for column in sorted(carried[up]):
                name = column
                if column in taken or draw(st.integers(0, 5)) == 0:
                    name = f"{column}_f{i}d{j}"
                    rename.append((column, name))
                assert name not in taken
                taken.add(name)
            optional = every_optional or draw(st.integers(0, 2)) == 0
            deps.append(DepPlan(up, optional, tuple(rename)))
        carried.append(taken if deps else {f"col_f{i}"})
        keys = draw(st.lists(st.sampled_from(FIELD_KEYS), unique=True, max_size=3))
        fields = tuple(
            FieldPlan(k, draw(st.sampled_from(("1", "2"))), draw(field_deps(tuple(deps), plans)))
            for k in keys
        )
        plans.append(FeaturePlan(i, fields, tuple(deps)))
    return tuple(plans)


@st.composite
def edits(draw: st.DrawFn, plans: tuple[FeaturePlan, ...]) -> Edit:
    roots = [p for p in plans if not p.deps]
    features = st.integers(0, len(plans) - 1)
    ids = st.lists(st.sampled_from(POOL), min_size=1, max_size=8, unique=True).map(tuple)
    kind = draw(st.sampled_from(["remove", "change", "delete", "flip", "add"]))
    root = draw(st.sampled_from(roots))
    if kind == "add":
        return AddSamples(root.index, draw(root_samples(root, 1, 3)))
    if kind == "change":
        field = draw(st.sampled_from(root.field_keys))
        return ChangeProvenance(
            root.index, draw(st.integers(0, 7)), field, draw(st.sampled_from(VALUES))
        )
    if kind == "remove":
        return RemoveSamples(root.index, draw(ids))
    if kind == "flip":
        return FlipCodeVersion(draw(features), draw(st.integers(0, 2)))
    return SoftDelete(draw(features), draw(ids))


@st.composite
def scenarios(draw: st.DrawFn, all_optional: bool = False) -> Scenario:
    plans = draw(feature_plans(all_optional))
    samples = {p.index: draw(root_samples(p)) for p in plans if not p.deps}
    return Scenario(
        features=plans,
        algorithm=draw(st.sampled_from(ALGORITHMS)),
        length=draw(st.sampled_from((8, 12, 64))),
        samples=samples,
        edits=tuple(draw(st.lists(edits(plans), min_size=1, max_size=4))),
    )


# -- building graphs from plans ---------------------------------------------------------------


def field_spec(plan: FieldPlan) -> mx.FieldSpec:
    deps: list[mx.FieldDep] | mx.SpecialFieldDep = []
    if plan.deps == "all":
        deps = mx.ALL
    elif plan.deps != "default":
        deps = [
            mx.FieldDep(feature=f"p/f{up}", fields=mx.ALL if fields is None else list(fields))
            for up, fields in plan.deps
        ]
    return mx.FieldSpec(key=plan.key, code_version=plan.code_version, deps=deps)


def feature_spec(plan: FeaturePlan) -> mx.FeatureSpec:
    deps = [
        mx.FeatureDep(
            feature=f"p/f{d.upstream}", rename=dict(d.rename) or None, optional=d.optional
        )
        for d in plan.deps
    ]
    fields = [field_spec(f) for f in plan.fields]
    return mx.FeatureSpec(key=plan.key, id_columns=[ID], deps=deps, fields=fields or None)


def build_graph(plans: tuple[FeaturePlan, ...]) -> FeatureGraph:
    registry = Registry()
    with collecting(registry):
        for plan in plans:
            # a module without a source file: mxd then skips parsing this file for origins
            namespace = {"__module__": "generated"}
            type(f"F{plan.index}", (mx.BaseFeature,), namespace, spec=feature_spec(plan))
    return FeatureGraph(registry.features.values())


def flip(plan: FeaturePlan, index: int) -> FeaturePlan:
    if not plan.fields:
        return plan
    index %= len(plan.fields)
    fields = list(plan.fields)
    old = fields[index]
    fields[index] = replace(old, code_version="2" if old.code_version == "1" else "1")
    return replace(plan, fields=tuple(fields))


# -- mxd and the oracle side by side ----------------------------------------------------------


def ids_of(frame: pl.DataFrame) -> set[Id]:
    return {(v,) for v in frame[ID].to_list()} if frame.height else set()


def provenance_of(frame: pl.DataFrame) -> dict[Id, tuple[str, dict[str, str]]]:
    if not frame.height:
        return {}
    rows = frame.select(ID, c.PROVENANCE, c.PROVENANCE_BY_FIELD).to_dicts()
    return {(r[ID],): (r[c.PROVENANCE], r[c.PROVENANCE_BY_FIELD]) for r in rows}


def assert_same(label: str, got: Increment, want: OracleIncrement) -> None:
    assert ids_of(got.new) == set(want.new), f"{label}: new"
    assert ids_of(got.stale) == set(want.stale), f"{label}: stale"
    assert ids_of(got.orphaned) == want.orphaned, f"{label}: orphaned"
    assert got.new.height == len(want.new), f"{label}: duplicate new rows"
    assert got.stale.height == len(want.stale), f"{label}: duplicate stale rows"
    expected = {
        sid: (row.provenance, row.provenance_by_field) for sid, row in want.to_compute().items()
    }
    assert provenance_of(got.to_compute()) == expected, f"{label}: provenance"


class Pipeline:
    """One scenario's state: plans, root samples, a store (in-memory DuckDB unless given),
    the oracle."""

    #: A feature with a checkpoint is always resolved narrowed (in one store, where every
    #: table's writes since a mark are known; a branch resolves in full what a fallback
    #: serves, or served when its checkpoint was taken).
    always_narrowed = True

    def __init__(self, scenario: Scenario, store: MetadataStore | None = None) -> None:
        self.scenario = scenario
        self.plans = scenario.features
        self.samples = {root: dict(s) for root, s in scenario.samples.items()}
        self.store = store or DuckDBStore("t", {"database": ":memory:"})
        self.graph = build_graph(self.plans)
        self.versions = GraphVersions(self.graph, scenario.length)
        self.oracle = Oracle(self.graph, algorithm=scenario.algorithm, length=scenario.length)
        # Per downstream feature, the checkpoint its last step left (as a run records it).
        self.checkpoints: dict[FeatureKey, tuple[str, int]] = {}
        # Per root: its table's write mark after its last step, and the samples it held.
        self.root_marks: dict[FeatureKey, tuple[str, int]] = {}

    def close(self) -> None:
        self.store.close()

    def narrowed(self, steps: Steps, key: FeatureKey) -> Increment | None:
        """The feature resolved from its checkpoint, on the samples touched since — always
        narrowed when there is a checkpoint to narrow from (the share of touched samples
        above which a run resolves in full instead is lifted) — or None without one."""
        from unittest import mock

        from mxd_cli.engine import increment
        from mxd_cli.engine.step import baseline_of

        state = self.state(steps, key)
        saved = self.checkpoints.get(key)
        baseline = None if state is None or saved is None else baseline_of(saved, state)
        if baseline is None:
            return None
        with mock.patch.object(increment, "_NARROW_LIMIT", float("inf")):
            return steps.resolve(key, baseline=baseline)

    def state(self, steps: Steps, key: FeatureKey) -> str | None:
        from mxd_cli.definitions.asset import AssetContext
        from mxd_cli.engine.step import checkpoint_state

        ctx = AssetContext(key, run_id="props", project_dir=Path("."))
        return checkpoint_state(steps.session, self.graph[key], None, ctx)

    def root_frame(self, index: int) -> pl.DataFrame:
        keys = self.plans[index].field_keys
        user = f"col_f{index}"
        schema = {ID: pl.String, user: pl.String, c.PROVENANCE_BY_FIELD: c.struct_dtype(keys)}
        rows = [
            {ID: sid, user: f"{sid}/{index}", c.PROVENANCE_BY_FIELD: values}
            for sid, values in sorted(self.samples[index].items())
        ]
        return pl.DataFrame(rows, schema=schema)

    def oracle_samples(self, index: int) -> dict[Id, dict[str, str]]:
        return {(sid,): values for sid, values in self.samples[index].items()}

    def steps(self) -> Steps:
        return Steps(
            self.store,
            self.graph,
            self.versions,
            algorithm=self.scenario.algorithm,
            length=self.scenario.length,
            project="props",
        )

    def resolve(self, steps: Steps, key: FeatureKey) -> Increment:
        node = self.graph[key]
        index = int(key.parts[-1][1:])
        return steps.resolve(key, self.root_frame(index) if node.is_root else None)

    def step(self, label: str) -> None:
        """One pipeline step in both; then a second resolution in mxd must be empty.

        Downstream features are resolved twice before they are written, in full and
        narrowed from their checkpoints (work proportional to what changed): both must
        equal the oracle, counts included."""
        steps = self.steps()
        for key in self.graph.order:
            node = self.graph[key]
            index = int(key.parts[-1][1:])
            got = self.resolve(steps, key)
            want = self.oracle.resolve(key, self.oracle_samples(index) if node.is_root else None)
            assert_same(f"{label} {key}", got, want)
            if node.is_root and key in self.root_marks:
                # From its last step's checkpoint: while the table is as then, and held one
                # row per sample, its current rows are read without the latest-row pass.
                mark, stored = self.root_marks[key]
                again = steps.resolve(
                    key, self.root_frame(index), baseline=Baseline(mark, {}, stored)
                )
                assert_same(f"{label} {key} (from its checkpoint)", again, want)
                assert again.counts == got.counts, f"{label} {key}: counts from its checkpoint"
            narrowed = None if node.is_root else self.narrowed(steps, key)
            if narrowed is not None:
                assert_same(f"{label} {key} (narrowed)", narrowed, want)
                assert narrowed.counts == got.counts, f"{label} {key}: narrowed counts"
                if got.counts["stale"]:
                    # Status's causes: attributed from the touched samples' sources when
                    # narrowed, by comparing upstream rows then and now in full.
                    assert stale_causes(steps.session, node, narrowed) == stale_causes(
                        steps.session, node, got
                    ), f"{label} {key}: causes"
                if self.always_narrowed:
                    assert narrowed.narrowed is not None, f"{label} {key}: not narrowed"
            steps.write(key, got)
            self.oracle.apply(key, want)
            if node.is_root:
                mark = self.store.write_mark(key.parts)
                counts = got.counts
                if mark is not None:
                    self.root_marks[key] = (
                        mark,
                        counts["unchanged"] + counts["new"] + counts["stale"],
                    )
            state = None if node.is_root else self.state(steps, key)
            if state is not None:
                counts = got.counts
                self.checkpoints[key] = (
                    state,
                    counts["unchanged"] + counts["new"] + counts["stale"],
                )
        steps = self.steps()
        for key in self.graph.order:
            again = self.resolve(steps, key)
            assert not again.pending, f"{label} {key}: not empty right after writing"

    def apply(self, edit: Edit) -> None:
        if isinstance(edit, AddSamples):
            self.samples[edit.root].update(edit.samples)
        elif isinstance(edit, ChangeProvenance):
            present = sorted(self.samples[edit.root])
            if present:
                sid = present[edit.pick % len(present)]
                self.samples[edit.root][sid] = {
                    **self.samples[edit.root][sid],
                    edit.field: edit.value,
                }
        elif isinstance(edit, RemoveSamples):
            for sid in edit.ids:
                self.samples[edit.root].pop(sid, None)
        elif isinstance(edit, FlipCodeVersion):
            plans = list(self.plans)
            plans[edit.feature] = flip(plans[edit.feature], edit.field)
            self.plans = tuple(plans)
            self.graph = build_graph(self.plans)
            self.versions = GraphVersions(self.graph, self.scenario.length)
            self.oracle.use_graph(self.graph)
        else:
            self.soft_delete(edit)

    def soft_delete(self, edit: SoftDelete) -> None:
        """Tombstone some current rows of a feature, as read from the store."""
        key = self.plans[edit.feature].key
        version = self.versions.feature_version(key)
        current = self.store.read(key.parts, [ID], feature_version=version)
        rows = (
            pl.DataFrame()
            if current is None
            else current.filter(pl.col(ID).is_in(list(edit.ids))).collect()
        )
        wanted = {(sid,) for sid in edit.ids}
        assert ids_of(rows) == wanted & set(self.oracle.current(key)), f"soft delete {key}"
        self.store.soft_delete(
            key.parts, rows, feature_version=version, project_version=self.versions.project_version
        )
        self.oracle.soft_delete(key, wanted)


def run(scenario: Scenario, store: MetadataStore | None = None) -> None:
    pipeline = Pipeline(scenario, store)
    try:
        pipeline.step("first run")
        for n, edit in enumerate(scenario.edits, 1):
            pipeline.apply(edit)
            pipeline.step(f"after edit {n} ({type(edit).__name__})")
    finally:
        pipeline.close()


# 100 random graphs with edits per property in the default run (1-2 minutes each on one
# core): 200 per backend, counting the all-optional graphs, each checking the narrowed
# resolve too; MXD_PROPERTY_EXAMPLES raises it for a longer hunt.
SETTINGS = settings(
    max_examples=int(os.environ.get("MXD_PROPERTY_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(scenarios())
def test_increments_match_oracle(scenario: Scenario) -> None:
    run(scenario)


@SETTINGS
@given(scenarios(all_optional=True))
def test_increments_match_oracle_all_optional(scenario: Scenario) -> None:
    # every dep of every downstream feature optional: full outer joins everywhere
    run(scenario)


def run_on_delta(scenario: Scenario) -> None:
    from mxd_cli.store.delta import DeltaStore

    with tempfile.TemporaryDirectory() as folder:
        run(scenario, DeltaStore("t", {"root_path": folder}))


@SETTINGS
@given(scenarios())
def test_increments_match_oracle_on_delta(scenario: Scenario) -> None:
    run_on_delta(scenario)


@SETTINGS
@given(scenarios(all_optional=True))
def test_increments_match_oracle_all_optional_on_delta(scenario: Scenario) -> None:
    run_on_delta(scenario)


# The same property on the spark store, a few graphs (each Spark query costs ~0.3 s here);
# MXD_SPARK_PROPERTY_EXAMPLES raises it.
@pytest.mark.spark
@settings(
    max_examples=int(os.environ.get("MXD_SPARK_PROPERTY_EXAMPLES", "3")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_increments_match_oracle_on_spark(scenario: Scenario) -> None:
    from mxd_cli.store.spark import SparkStore

    with tempfile.TemporaryDirectory() as folder:
        run(scenario, SparkStore("t", {"warehouse": folder, "master": "local[2]"}))


class BranchPipeline(Pipeline):
    """A pipeline whose first run built a "prod" store and whose edits then run in a
    "branch" store falling back to it: the branch's increments must still equal the
    oracle's, and prod must never change."""

    always_narrowed = False

    def __init__(self, scenario: Scenario, folder: str) -> None:
        super().__init__(scenario, DuckDBStore("prod", {"database": f"{folder}/prod.duckdb"}))
        self.prod: MetadataStore | None = None
        self.folder = folder

    def branch(self) -> None:
        self.prod = self.store
        self.prod.close()
        self.prod = DuckDBStore("prod", {"database": f"{self.folder}/prod.duckdb"}, read_only=True)
        self.store = DuckDBStore("branch", {"database": f"{self.folder}/branch.duckdb"})

    def steps(self) -> Steps:
        return Steps(
            self.store,
            self.graph,
            self.versions,
            algorithm=self.scenario.algorithm,
            length=self.scenario.length,
            project="props",
            fallbacks=[] if self.prod is None else [self.prod],
        )

    def soft_delete(self, edit: SoftDelete) -> None:
        key = self.plans[edit.feature].key
        steps = self.steps()
        if steps.session.served_by(key) is not None:
            steps.session.adopt(key)  # (a branch deletes from rows of its own)
        super().soft_delete(edit)

    def close(self) -> None:
        super().close()
        if self.prod is not None:
            self.prod.close()


@settings(
    max_examples=int(os.environ.get("MXD_PROPERTY_EXAMPLES", "100")) // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_a_branch_over_a_built_store_matches_the_oracle(scenario: Scenario) -> None:
    import hashlib

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    with tempfile.TemporaryDirectory() as folder:
        pipeline = BranchPipeline(scenario, folder)
        try:
            pipeline.step("first run (prod)")
            pipeline.branch()
            built = digest(Path(folder) / "prod.duckdb")
            pipeline.step("branch, nothing changed")
            for n, edit in enumerate(scenario.edits, 1):
                pipeline.apply(edit)
                pipeline.step(f"branch, after edit {n} ({type(edit).__name__})")
            assert digest(Path(folder) / "prod.duckdb") == built
        finally:
            pipeline.close()


# -- the machinery itself ---------------------------------------------------------------------


def collisions(plans: tuple[FeaturePlan, ...]) -> Iterator[str]:
    """Columns two deps of one feature would bring under the same name (should be none)."""
    carried: dict[int, set[str]] = {}
    for plan in plans:
        names: list[str] = []
        for dep in plan.deps:
            rename = dict(dep.rename)
            names += [rename.get(col, col) for col in carried[dep.upstream]]
        yield from sorted({n for n in names if names.count(n) > 1})
        carried[plan.index] = set(names) if plan.deps else {f"col_f{plan.index}"}


@settings(max_examples=50, deadline=None)
@given(feature_plans(all_optional=False))
def test_generated_graphs_build_without_column_collisions(plans: tuple[FeaturePlan, ...]) -> None:
    assert list(collisions(plans)) == []
    assert len(build_graph(plans)) == len(plans)


def test_a_hand_written_scenario_runs() -> None:
    """A diamond with an optional leg, a rename, a code flip and a soft delete."""
    f0 = FeaturePlan(0, (FieldPlan("a"), FieldPlan("b", "2")))
    f1 = FeaturePlan(1, (FieldPlan("c"),))
    f2 = FeaturePlan(
        2,
        (FieldPlan("a", deps=((0, ("b",)),)), FieldPlan("c", deps="all")),
        (DepPlan(0), DepPlan(1, optional=True)),
    )
    f3 = FeaturePlan(3, (), (DepPlan(2), DepPlan(0, rename=(("col_f0", "col_f0_f3d1"),))))
    scenario = Scenario(
        features=(f0, f1, f2, f3),
        algorithm="xxhash32",
        length=8,
        samples={
            0: {"s0": {"a": "u", "b": "v"}, "s1": {"a": "w", "b": "w"}},
            1: {"s1": {"c": "u"}},
        },
        edits=(
            ChangeProvenance(0, 1, "b", "u"),
            FlipCodeVersion(2, 1),
            SoftDelete(3, ("s0", "s5")),
            RemoveSamples(1, ("s1",)),
        ),
    )
    assert list(collisions(scenario.features)) == []
    run(scenario)


def test_a_sample_gone_from_one_optional_upstream_is_not_blamed_on_it_later() -> None:
    """Found on Delta by CI: s0 left f0 (its row tombstoned, f2 rewritten); when f1 then
    changed s0, the full comparison of causes took f0's tombstone for the row current
    when f2's row was written (a tombstone keeps the row's updated_at), saw no row now,
    and blamed f0 as well as f1. The narrowed attribution blamed f1 alone."""
    f0 = FeaturePlan(0)
    f1 = FeaturePlan(1)
    f2 = FeaturePlan(2, (), (DepPlan(0, optional=True), DepPlan(1, optional=True)))
    scenario = Scenario(
        features=(f0, f1, f2),
        algorithm="md5",
        length=8,
        samples={
            0: {"s0": {"default": "u"}, "s1": {"default": "u"}},
            1: {"s0": {"default": "u"}, "s1": {"default": "u"}},
        },
        edits=(RemoveSamples(0, ("s0",)), ChangeProvenance(1, 0, "default", "v")),
    )
    run(scenario)
    run_on_delta(scenario)
