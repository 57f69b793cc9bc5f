"""Apache Spark backend: feature tables as Parquet in a warehouse folder, increments as Spark SQL.

Each table is a folder under ``warehouse`` (``("demo", "raw")`` at ``demo__raw/``) holding
one sub-folder of Parquet files per commit and a log, ``_mxd_log.json``, naming the
commits that make up the table now. A write puts its files in a new folder, then replaces
the log (``os.replace``: atomic), so readers see a commit whole or not at all, a killed
write leaves only a folder no log names, and a hard delete — the kept rows written to a
new folder, then a log naming only it — is atomic too. The log's version is the table's
write mark; the folders appended since a version are the rows written since.

Queries run in the store's Spark session (``master``, default ``local[*]``, or a Spark
Connect ``remote``): the plans of :mod:`mxd_cli.engine` are rendered as Spark SQL by
:class:`SparkEngine`, so joins, lineage, provenance hashing and the compare run on the
cluster and only counts and the rows of a chunk handed to an asset reach Python. md5 and
sha256 are Spark built-ins; Spark's own xxhash64 is seeded differently from Metaxy's, so
the xxhash family and wyhash run as Arrow UDFs (polars-hash on Arrow batches, on the
executors: they need polars and polars-hash installed).

One process writes a store at a time: the writer lock is a file lock in the warehouse
folder (``fcntl.flock``: local disks and NFSv4 honour it; object storage is not supported
as a warehouse).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
from sqlglot import exp

from mxd_cli.errors import ConfigError, StoreError
from mxd_cli.store.base import MetadataStore, Table, split_where
from mxd_cli.store.registry import Backend, Option, register
from mxd_cli.store.sql_engine import (
    FINGERPRINTS,
    HASH_UDFS,
    UDF_ALGORITHMS,
    SqlEngine,
    digest_kernel,
    integer_kernel,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DIALECT = "spark"
DEFAULT_WAREHOUSE = ".mxd/spark-warehouse"
_LOG = "_mxd_log.json"
_ROW = "__mxd_batch_row"


def _check_options(store: str, options: Mapping[str, Any], where: Any) -> None:
    if "master" in options and "remote" in options:
        raise ConfigError(
            f"store '{store}': give either 'master' or 'remote', not both",
            hint="'remote' connects to a Spark Connect server; 'master' starts a session",
            location=where("remote"),
        )
    for key, value in (options.get("conf") or {}).items():
        if not isinstance(value, (str, int, float, bool)):
            raise ConfigError(
                f"store '{store}': Spark setting conf.{key} must be a string, number or "
                f"boolean, got {value!r}",
                location=where("conf"),
            )
    warehouse = options.get("warehouse", "")
    if "://" in warehouse and not warehouse.startswith("file://"):
        raise ConfigError(
            f"store '{store}': warehouse {warehouse!r} is not a local or mounted folder",
            hint="mxd commits Spark tables by renaming files; use a path every node mounts",
            location=where("warehouse"),
        )
    if os.path.isfile(warehouse):
        raise ConfigError(
            f"store '{store}': warehouse {warehouse} is a file, not a folder",
            location=where("warehouse"),
        )


BACKEND = register(
    Backend(
        type="spark",
        aliases=("pyspark",),
        options=(
            Option("master", "string", "the Spark master URL (default local[*])"),
            Option("remote", "string", "a Spark Connect URL, e.g. sc://cluster:15002"),
            Option("conf", "table", "Spark settings for the session, e.g. spark.executor.memory"),
            Option(
                "warehouse",
                "path",
                "the folder of the tables (relative to the config file); every node mounts it",
                default=DEFAULT_WAREHOUSE,
            ),
            Option(
                "format",
                "string",
                "the tables' file format",
                choices=("parquet", "delta", "iceberg"),
                unsupported="mxd writes Parquet with its own commit log; delta and iceberg "
                "tables are not written yet",
                default="parquet",
            ),
            Option(
                "database",
                "string",
                "",
                unsupported="tables live in the warehouse folder, not in a catalog database",
                default="default",
            ),
            Option(
                "catalog",
                "string",
                "",
                unsupported="tables live in the warehouse folder, not in a catalog",
                default="spark_catalog",
            ),
        ),
        opener="mxd_cli.store.spark:SparkStore",
        check=_check_options,
    )
)

# Settings every session gets unless the store's conf says otherwise: UTC (Metaxy's
# timestamps are UTC), Parquet timestamps as microseconds that other readers understand,
# for a local session as many shuffle partitions as cores (Spark's 200 cost ~0.3 s a query
# on small data; adaptive execution still splits skewed ones).
_DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.adaptive.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def spark_session(options: Mapping[str, Any]) -> SparkSession:
    """The process's Spark session for a store's options (created on first use, then
    shared: a JVM per process)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - pyspark is a dependency
        raise StoreError(
            "the spark store needs pyspark", hint="pip install 'pyspark>=4.1'"
        ) from exc
    builder = SparkSession.builder.appName("mxd")
    defaults = dict(_DEFAULT_CONF)
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # (spark-submit started this process)
    master = str(options.get("master") or ("" if submitted else "local[*]"))
    if options.get("remote"):
        builder = builder.remote(options["remote"])
    elif master:
        builder = builder.master(master)
    if not options.get("remote") and master.startswith("local"):
        # Python workers of a local session run this Python (its packages: polars-hash).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        defaults["spark.sql.shuffle.partitions"] = str(_local_cores(master))
        # A local session keeps every partition in the driver's JVM: Spark's 1g default
        # dies at a million rows; a quarter of the machine's memory, up to 8g.
        defaults["spark.driver.memory"] = _driver_memory()
        logging = Path(__file__).with_name("spark_log4j2.properties").as_uri()
        defaults["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={logging}"
        defaults["spark.log.level"] = "ERROR"
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    if options.get("remote"):
        # A Connect session shares a running server: only SQL settings can be set per
        # session (the others are the server's, and setting them only warns).
        defaults = {k: v for k, v in defaults.items() if k.startswith("spark.sql.")}
        # (Numbering an increment in sort order is one ordered window: expected here.)
        warnings.filterwarnings("ignore", message=".*No Partition Defined for Window")
    conf = {**defaults, **{k: _text(v) for k, v in (options.get("conf") or {}).items()}}
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:
        raise StoreError(
            f"cannot start Spark: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            hint="Spark needs a Java runtime (17 or newer) on PATH or in JAVA_HOME",
        ) from exc
    if not options.get("remote"):
        session.sparkContext.setLogLevel("FATAL")  # (mxd reports failures itself)
    _quiet_query_errors()
    return session


def _quiet_query_errors() -> None:
    """PySpark logs every failed query's JVM stack as JSON on stderr; mxd reports the
    failure itself (one line, with a hint), so those loggers stay silent."""
    try:
        from pyspark.logger import PySparkLogger
    except ImportError:  # pragma: no cover - older pyspark
        return
    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).disabled = True


def _driver_memory() -> str:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux
        return "2g"
    return f"{max(1, min(8, total // 4 // 2**30))}g"


def _local_cores(master: str) -> int:
    """The worker threads of a ``local``, ``local[N]`` or ``local[*]`` master."""
    inside = master.partition("[")[2].partition("]")[0].partition(",")[0]
    if inside.isdigit():
        return max(1, int(inside))
    return os.cpu_count() or 1 if inside == "*" else 1


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---- hash kernels: the DuckDB engine's Arrow kernels, typed as Spark wants them ----------
def _digest(algorithm: str) -> Callable[[pa.Array], pa.Array]:
    kernel = digest_kernel(algorithm)

    def spark_kernel(values: pa.Array) -> pa.Array:
        return kernel(values).cast(pa.string())  # (Spark takes no large strings)

    return spark_kernel


def _fingerprint(algorithm: str) -> Callable[[pa.Array], pa.Array]:
    kernel = integer_kernel(algorithm)

    def spark_kernel(values: pa.Array) -> pa.Array:
        return kernel(values).cast(pa.decimal128(20, 0))  # (Spark has no unsigned 64-bit)

    return spark_kernel


class SparkEngine(SqlEngine):
    """A Spark session seen as a SQL engine: plans rendered as Spark SQL, temporary tables
    as temp views (computed ones checkpointed), chunks fetched a range of rows at a time."""

    dialect = DIALECT

    def __init__(self, spark: SparkSession, *, location: str) -> None:
        self.spark = spark
        self.location = location
        self._names = 0
        self._frames: dict[str, DataFrame] = {}  # temp views this engine made, by name
        self._registered: set[str] = set()
        self._parts: dict[str, int] = {}
        self._shipped: set[str] = set()

    # SQL text
    def render(self, query: exp.Expr | str) -> str:
        if isinstance(query, str):
            return query
        spark = _hoist_ctes(query.transform(_to_spark, copy=True))
        return spark.sql(dialect=DIALECT, identify=True)

    def _sql(self, query: exp.Expr | str) -> DataFrame:
        sql = self.render(query)
        self._ensure_functions(sql)
        try:
            return self.spark.sql(sql)
        except Exception as exc:
            raise _error(self.location, exc) from exc

    def _fetch(self, run: Callable[[], Any]) -> Any:
        try:
            return run()
        except StoreError:
            raise
        except Exception as exc:
            if _is_user_error(exc):
                raise
            raise _error(self.location, exc) from exc

    # execution
    def execute(self, query: exp.Expr | str) -> None:
        frame = self._sql(query)
        self._fetch(frame.collect)

    def rows(self, query: exp.Expr | str) -> list[tuple[Any, ...]]:
        frame = self._sql(query)
        return [tuple(r) for r in self._fetch(frame.collect)]

    def arrow(self, query: exp.Expr | str) -> pa.Table:
        frame = self._sql(query)
        table: pa.Table = self._fetch(frame.toArrow)
        return table

    def _numbered(self, query: exp.Expr | str) -> DataFrame:
        """The result with its rows numbered 1.. in the query's order (``__mxd_batch_row``),
        computed once into a checkpoint on the executors."""
        from pyspark.sql import functions as F
        from pyspark.sql.window import Window

        parsed = exp.maybe_parse(query, dialect="duckdb") if isinstance(query, str) else query
        order = parsed.args.get("order")
        bare = parsed.copy()
        bare.set("order", None)
        frame = self._sql(bare)
        if order is not None:
            keys = [F.col(o.this.name).asc_nulls_last() for o in order.expressions]
        else:
            keys = [F.monotonically_increasing_id()]
        numbered = frame.withColumn(_ROW, F.row_number().over(Window.orderBy(*keys)))
        checkpoint: DataFrame = self._fetch(lambda: numbered.localCheckpoint(eager=True))
        return checkpoint

    def batches(self, query: exp.Expr | str, size: int) -> Iterator[pa.RecordBatch]:
        """Rows ``size`` at a time in the query's order: the result is numbered once (in a
        checkpoint on the executors), then each batch is one job fetching a range."""
        from pyspark.sql import functions as F

        numbered = self._numbered(query)
        try:
            start = 0
            while True:
                part = numbered.where((F.col(_ROW) > start) & (F.col(_ROW) <= start + size))
                table: pa.Table = self._fetch(part.orderBy(_ROW).drop(_ROW).toArrow)
                for batch in table.combine_chunks().to_batches(max_chunksize=size):
                    if batch.num_rows:
                        yield batch
                if table.num_rows < size:
                    break
                start += size
        finally:
            numbered.unpersist()

    def ranges(self, query: exp.Expr | str, size: int) -> Iterator[tuple[DataFrame, int]]:
        """The result in consecutive ranges of ``size`` rows (query order), each a
        DataFrame spread over the session's cores, with its row count."""
        from pyspark.sql import functions as F

        numbered = self._numbered(query)
        try:
            total = int(self._fetch(numbered.count))
            parts = self.parallelism()
            for start in range(0, total, size):
                part = numbered.where((F.col(_ROW) > start) & (F.col(_ROW) <= start + size))
                yield part.drop(_ROW).repartition(parts), min(size, total - start)
        finally:
            numbered.unpersist()

    def ship(self, module: str) -> str | None:
        """Make a project module importable on the executors (single-file modules as they
        are, packages zipped), once per session; the top-level name shipped, if any."""
        import importlib
        import tempfile

        top = module.partition(".")[0]
        if top in self._shipped:
            return top
        found = importlib.import_module(top)
        path = getattr(found, "__file__", None)
        if path is None or "site-packages" in path:
            return None  # (installed packages are the executors' own business)
        if os.path.basename(path) == "__init__.py":
            # Zipped once per content: a fixed folder, the archive named by its digest (one
            # file per version of the package, not one temporary folder per run).
            import hashlib

            folder = os.path.dirname(path)
            shipped = os.path.join(tempfile.gettempdir(), "mxd-ship")
            os.makedirs(shipped, exist_ok=True)
            staging = tempfile.mkdtemp(prefix="staging-", dir=shipped)
            try:
                made = shutil.make_archive(
                    os.path.join(staging, top), "zip", os.path.dirname(folder), top
                )
                with open(made, "rb") as archive:
                    digest = hashlib.sha256(archive.read()).hexdigest()[:16]
                path = os.path.join(shipped, f"{digest}", f"{top}.zip")
                if not os.path.exists(path):
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    os.replace(made, path)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        if self.connect:
            self.spark.addArtifacts(path, pyfile=True)
        else:
            self.spark.sparkContext.addPyFile(path)
        self._shipped.add(top)
        return top

    @property
    def connect(self) -> bool:
        """The session is a Spark Connect client (no JVM, no SparkContext here)."""
        return type(self.spark).__module__.startswith("pyspark.sql.connect")

    def parallelism(self) -> int:
        """How many tasks the cluster runs at once (the partitions a range is spread over)."""
        if not self.connect:
            return max(1, int(self.spark.sparkContext.defaultParallelism))
        found = self.spark.conf.get("spark.default.parallelism", None)
        if found is None:
            found = self.spark.conf.get("spark.sql.shuffle.partitions", "2")
        return max(1, int(str(found)))

    # data from Python
    def _name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}_{self._names}"

    def _keep(self, name: str, frame: DataFrame) -> exp.Table:
        frame.createOrReplaceTempView(name)
        self._frames[name] = frame
        return exp.to_table(name, quoted=True)

    def dataframe(self, data: pa.Table | pl.DataFrame) -> DataFrame:
        """A Spark DataFrame of Arrow data (shipped from the driver)."""
        arrow = data.to_arrow() if isinstance(data, pl.DataFrame) else data
        arrow = _spark_arrow(arrow)
        if arrow.num_rows == 0:
            from pyspark.sql.pandas.types import from_arrow_schema

            return self.spark.createDataFrame([], from_arrow_schema(arrow.schema))
        created: DataFrame = self._fetch(lambda: self.spark.createDataFrame(arrow))
        return created

    def register(self, data: pa.Table | pl.DataFrame, prefix: str = "__mxd_data") -> exp.Table:
        return self._keep(self._name(prefix), self.dataframe(data))

    def unregister(self, table: exp.Table) -> None:
        self.drop(table)

    def temp_table(self, columns: pa.Schema, prefix: str = "__mxd_stage") -> exp.Table:
        return self.register(pa.Table.from_batches([], schema=columns), prefix)

    def insert_arrow(self, table: exp.Table, data: pa.Table | pl.DataFrame) -> None:
        name = table.name
        merged = self._frames[name].unionByName(self.dataframe(data), allowMissingColumns=True)
        # Keep the plan short: fold the parts into one checkpoint now and then.
        self._parts[name] = self._parts.get(name, 0) + 1
        if self._parts[name] % 16 == 0:
            merged = self._fetch(lambda: merged.localCheckpoint(eager=True))
        self._keep(name, merged)

    def materialize(self, query: exp.Expr, prefix: str = "__mxd_rows") -> exp.Table:
        frame = self._sql(query)
        kept = self._fetch(lambda: frame.localCheckpoint(eager=True))
        return self._keep(self._name(prefix), kept)

    def view(self, name: exp.Table, query: exp.Expr | str) -> None:
        self._keep(name.name, self._sql(query))

    def union_by_name(self, parts: Sequence[exp.Expr]) -> exp.Expr:
        frames = [self._sql(exp.select("*").from_(p)) for p in parts]
        union = frames[0]
        for frame in frames[1:]:
            union = union.unionByName(frame, allowMissingColumns=True)
        return self._keep(self._name("__mxd_union"), union)

    def drop(self, table: exp.Table) -> None:
        frame = self._frames.pop(table.name, None)
        self.spark.catalog.dropTempView(table.name)
        if frame is not None:
            frame.unpersist()

    # what differs from DuckDB
    def struct(self, fields: Sequence[tuple[str, exp.Expr]]) -> exp.Expr:
        args: list[exp.Expr] = []
        for name, value in fields:
            args += [exp.Literal.string(name), value]
        return exp.Anonymous(this="named_struct", expressions=args)

    def field(self, struct: exp.Expr, name: str) -> exp.Expr:
        return exp.Bracket(this=struct, expressions=[exp.Literal.string(name)])

    def ordered_join(self, value: exp.Expr, order: Sequence[exp.Expr], separator: str) -> exp.Expr:
        # collect (order keys..., value) structs, sort them (structs compare field by field),
        # keep the values; array_join skips NULLs.
        keyed = self.struct([*((f"k{n}", o) for n, o in enumerate(order)), ("v", value)])
        collected = exp.Anonymous(this="collect_list", expressions=[keyed])
        ordered = exp.Anonymous(this="array_sort", expressions=[collected])
        values = exp.Anonymous(
            this="transform",
            expressions=[
                ordered,
                exp.Lambda(
                    this=exp.Dot(this=exp.column("x"), expression=exp.to_identifier("v")),
                    expressions=[exp.to_identifier("x")],
                ),
            ],
        )
        return exp.Anonymous(this="array_join", expressions=[values, exp.Literal.string(separator)])

    def hash_call(self, algorithm: str, text: exp.Expr) -> exp.Expr:
        if algorithm == "md5":
            return exp.Anonymous(this="md5", expressions=[text])
        if algorithm == "sha256":
            return exp.Anonymous(this="sha2", expressions=[text, exp.Literal.number(256)])
        return exp.Anonymous(this=HASH_UDFS[algorithm], expressions=[text])

    def fingerprint_calls(self, text: exp.Expr) -> tuple[exp.Expr, exp.Expr]:
        a, b = FINGERPRINTS
        return (
            exp.Anonymous(this=a, expressions=[text]),
            exp.Anonymous(this=b, expressions=[text.copy()]),
        )

    def _ensure_functions(self, sql: str) -> None:
        """Register the Arrow UDFs ``sql`` calls (once per engine)."""
        text = sql.lower()
        wanted = [n for n in (*HASH_UDFS.values(), *FINGERPRINTS) if n in text]
        missing = [n for n in wanted if n not in self._registered]
        if not missing:
            return
        from pyspark.sql.functions import arrow_udf  # type: ignore[attr-defined]
        from pyspark.sql.types import DecimalType, StringType

        for name in missing:
            if name in FINGERPRINTS:
                function = arrow_udf(_fingerprint(FINGERPRINTS[name]), DecimalType(20, 0))
            else:
                function = arrow_udf(_digest(UDF_ALGORITHMS[name]), StringType())
            self.spark.udf.register(name, function)
            self._registered.add(name)

    def close(self) -> None:
        for name in list(self._frames):
            self.drop(exp.to_table(name))


def _to_spark(node: exp.Expr) -> exp.Expr:
    """DuckDB function names the plans use, as Spark spells them."""
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        if name == "sha256":
            return exp.Anonymous(
                this="sha2", expressions=[*node.expressions, exp.Literal.number(256)]
            )
        if name == "epoch_us":
            return exp.Anonymous(this="unix_micros", expressions=node.expressions)
    return node


def _map_shipped(
    payload: bytes, shipped: str | None, target: pa.Schema, batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """On an executor: the pickled chunk function over a partition's batches, in ``target``.

    The function is unpickled here, not by Spark, so that its asset's module is the copy the
    driver shipped: a Python worker imports from its working directory first, and a local
    session's workers keep the directory the JVM started in, where a module of the same
    name may be another project's."""
    if shipped is not None:
        from pyspark import SparkFiles

        root = SparkFiles.getRootDirectory()
        held = sys.modules.get(shipped)
        if held is not None and not str(getattr(held, "__file__", "")).startswith(root):
            for name in [n for n in sys.modules if n == shipped or n.startswith(shipped + ".")]:
                del sys.modules[name]
        ours = [p for p in sys.path if p.startswith(root)] or [root]  # (and shipped zips)
        sys.path[:] = [*ours, *(p for p in sys.path if not p.startswith(root))]
    from pyspark import cloudpickle

    function = cloudpickle.loads(payload)
    for batch in function(batches):
        yield pa.Table.from_batches([batch]).cast(target).combine_chunks().to_batches()[0]


def _executor_error(function: object, exc: StoreError) -> Exception:
    """A chunk that failed on an executor: the asset's error when the asset raised."""
    from mxd_cli.errors import AssetError

    asset = getattr(function, "asset", None)
    if asset is None or "Python worker failed" not in exc.message:
        return exc
    raised = exc.message.split("Python worker failed: ", 1)[1]
    if raised.startswith("mxd_cli.errors.AssetError: "):
        raised = raised[len("mxd_cli.errors.AssetError: ") :]
        raised = raised.removeprefix(f"{asset.origin}: ")  # (the location is added again)
        return AssetError(raised, location=str(asset.origin))
    return AssetError(
        f"asset {asset.name!r} of {asset.feature} raised on an executor: {raised}",
        location=str(asset.origin),
    )


def _hoist_ctes(query: exp.Expr) -> exp.Expr:
    """Every CTE in one top-level WITH, as Spark SQL wants them (sqlglot's Spark dialect
    moves them up too, but keeps both copies of a subquery the plan uses twice, which
    Spark refuses as duplicate names): a name defined twice with the same body is kept
    once."""
    from sqlglot.transforms import move_ctes_to_top_level

    if not isinstance(query, exp.Query):
        return query
    hoisted = move_ctes_to_top_level(query)
    top = hoisted.args.get("with_")
    if top is None:
        return hoisted
    seen: dict[str, str] = {}
    kept = []
    for cte in top.expressions:
        body = cte.this.sql(dialect=DIALECT)
        if cte.alias in seen:
            if seen[cte.alias] != body:
                raise StoreError(f"internal error: two different CTEs named {cte.alias}")
            continue
        seen[cte.alias] = body
        kept.append(cte)
    top.set("expressions", kept)
    return hoisted


def _error(location: str, exc: Exception) -> StoreError:
    """A Spark failure as a store error: its first line (the JVM stack stays out)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return StoreError(f"{location}: {type(exc).__name__}")
    if "Python worker" in lines[0] and len(lines) > 1:
        # A UDF failed on an executor: its Python error is the traceback's last line.
        last = next((line for line in reversed(lines) if "Error" in line), lines[-1])
        return StoreError(
            f"{location}: a Python worker failed: {last.strip()}",
            hint="the executors need polars and polars-hash (mxd's hash functions run there)",
        )
    return StoreError(f"{location}: {lines[0]}")


def _is_user_error(exc: Exception) -> bool:
    """Errors raised by user code (assets) pass through the engine unchanged."""
    return not type(exc).__module__.startswith(("pyspark", "py4j"))


def _spark_arrow(table: pa.Table) -> pa.Table:
    """Arrow types Spark takes: large strings as strings, views as plain arrays."""
    fields = []
    changed = False
    for f in table.schema:
        target = _spark_type(f.type)
        changed |= target != f.type
        fields.append(pa.field(f.name, target, f.nullable))
    return table.cast(pa.schema(fields)) if changed else table


def _spark_type(dtype: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return pa.string()
    if pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype):
        return pa.binary()
    if pa.types.is_large_list(dtype) or pa.types.is_list_view(dtype):
        return pa.list_(_spark_type(dtype.value_type))
    if pa.types.is_list(dtype):
        return pa.list_(_spark_type(dtype.value_type))
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(f.name, _spark_type(f.type), f.nullable) for f in dtype])
    if pa.types.is_timestamp(dtype) and dtype.unit == "ns":
        return pa.timestamp("us", dtype.tz)
    return dtype


class SparkStore(MetadataStore):
    """Feature tables as Parquet folders under ``warehouse``, queried by Spark.

    Example::

        store = SparkStore("lake", {"warehouse": "/mnt/lake/mxd", "master": "local[2]"})
        store.append(("demo", "raw"), frame)  # /mnt/lake/mxd/demo__raw/c000001-…/
    """

    kind = "spark"

    def __init__(self, name: str, options: Mapping[str, Any], *, read_only: bool = False) -> None:
        super().__init__(name, read_only=read_only)
        BACKEND.validate(name, options, lambda key: None)
        warehouse = str(options.get("warehouse") or DEFAULT_WAREHOUSE)
        if warehouse.startswith("file://"):
            warehouse = warehouse[len("file://") :]
        self.warehouse = os.path.abspath(warehouse)
        self.options = dict(options)
        self._engine: SparkEngine | None = None
        self._logs: dict[str, dict[str, Any] | None] = {}
        self._views: dict[tuple[int, str], exp.Table] = {}

    # ---- where it lives ----------------------------------------------------------------
    def location(self) -> str:
        return self.warehouse

    def lock_path(self) -> Path | None:
        return Path(self.warehouse) / ".mxd-writer.lock"

    def physical_name(self, table: Table) -> str:
        return "__".join(table)

    def _folder(self, table: Table) -> str:
        return os.path.join(self.warehouse, self.physical_name(table))

    def tables(self) -> set[str]:
        if not os.path.isdir(self.warehouse):
            return set()
        return {
            entry.name
            for entry in os.scandir(self.warehouse)
            if entry.is_dir() and os.path.exists(os.path.join(entry.path, _LOG))
        }

    # ---- the log -------------------------------------------------------------------------
    def _log(self, table: Table) -> dict[str, Any] | None:
        """The table's log (None: no table): ``version``, the ``commits`` (folders) it
        consists of, and per version what happened (``append`` of a folder or ``rewrite``)."""
        name = self.physical_name(table)
        if name not in self._logs:
            path = os.path.join(self._folder(table), _LOG)
            try:
                with open(path, encoding="utf-8") as handle:
                    self._logs[name] = json.load(handle)
            except FileNotFoundError:
                self._logs[name] = None
            except (OSError, ValueError) as exc:
                raise StoreError(f"cannot read the log of Spark table {path}: {exc}") from exc
        return self._logs[name]

    def _commit(self, table: Table, folder: str, *, rewrite: bool) -> None:
        """Make ``folder`` (already complete, inside the table's folder) part of the table:
        one atomic replace of the log."""
        log = self._log(table) or {"format": 1, "version": 0, "commits": [], "history": []}
        version = int(log["version"]) + 1
        dropped = list(log["commits"]) if rewrite else []
        log = {
            "format": 1,
            "version": version,
            "commits": [folder] if rewrite else [*log["commits"], folder],
            "history": [
                *log["history"],
                {"version": version, "op": "rewrite" if rewrite else "append", "folder": folder},
            ],
        }
        path = os.path.join(self._folder(table), _LOG)
        staged = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(staged, "w", encoding="utf-8") as handle:
            json.dump(log, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staged, path)
        self.refresh(table)
        for old in dropped:  # (a hard delete: the rows it removed go physically)
            shutil.rmtree(os.path.join(self._folder(table), old), ignore_errors=True)

    def _new_folder(self, table: Table) -> tuple[str, str]:
        """A staging folder for a write (ignored by readers: its name starts with '_') and
        the name it gets when complete."""
        os.makedirs(self._folder(table), exist_ok=True)
        log = self._log(table)
        version = 1 + (int(log["version"]) if log else 0)
        final = f"c{version:06d}-{uuid.uuid4().hex[:12]}"
        return os.path.join(self._folder(table), f"_staging-{final}"), final

    def _finish(self, table: Table, staged: str, final: str, *, rewrite: bool) -> None:
        os.replace(staged, os.path.join(self._folder(table), final))
        self._commit(table, final, rewrite=rewrite)

    # ---- tables in the engine ----------------------------------------------------------
    def engine(self) -> SparkEngine:
        if self._engine is None:
            self._engine = SparkEngine(spark_session(self.options), location=self.warehouse)
        return self._engine

    def ref(self, table: Table) -> exp.Table | None:
        return self._view(self.engine(), table, prefix="")

    def bind(self, engine: SqlEngine, alias: str) -> Callable[[Table], exp.Table | None]:
        if not isinstance(engine, SparkEngine):
            raise StoreError(
                f"store {self.name!r} (spark) cannot serve as a fallback of a store whose "
                f"queries run in {engine.dialect}",
                hint="give a store fallbacks of its own kind",
            )
        return lambda table: self._view(engine, table, prefix=f"{alias}__")

    def _view(self, engine: SparkEngine, table: Table, *, prefix: str) -> exp.Table | None:
        log = self._log(table)
        if log is None:
            return None
        slot = (id(engine), self.physical_name(table))
        if slot not in self._views:
            frame = self._read(engine, table, log["commits"])
            name = f"{prefix}__mxd_t_{_safe(self.physical_name(table))}_v{log['version']}"
            self._views[slot] = engine._keep(name, frame)
        return self._views[slot]

    def _read(self, engine: SparkEngine, table: Table, commits: Sequence[str]) -> DataFrame:
        folders = [os.path.join(self._folder(table), name) for name in commits]
        missing = [f for f in folders if not os.path.isdir(f)]
        if missing:
            raise StoreError(
                f"Spark table {self._folder(table)} is missing commit folder {missing[0]}",
                hint="the table's log names files that are gone; restore them or the table",
            )
        schema = _footer_schema(folders)
        if schema is None:  # (types pyarrow cannot unify: let Spark merge the footers)
            reader = engine.spark.read.option("mergeSchema", "true")
        else:
            reader = engine.spark.read.schema(schema)
        frame: DataFrame = engine._fetch(lambda: reader.parquet(*folders))
        return frame

    def schema(self, table: Table) -> pa.Schema | None:
        ref = self.ref(table)
        if ref is None:
            return None
        return self.engine().arrow(exp.select("*").from_(ref).limit(0)).schema

    def refresh(self, table: Table) -> None:
        name = self.physical_name(table)
        self._logs.pop(name, None)
        # (The views of earlier versions stay: queries built before the write still name
        # them. They go with the engine.)
        for slot in [s for s in self._views if s[1] == name]:
            del self._views[slot]

    # ---- change tracking ---------------------------------------------------------------
    def write_mark(self, table: Table) -> str | None:
        log = self._log(table)
        return "" if log is None else str(log["version"])

    def _appended_since(self, table: Table, mark: str) -> list[str] | None:
        log = self._log(table)
        if log is None or not mark.isdigit() or int(mark) > int(log["version"]):
            return None
        later = [h for h in log["history"] if h["version"] > int(mark)]
        if any(h["op"] != "append" for h in later):
            return None  # rewritten since: every row may have changed
        return [h["folder"] for h in later]

    def changed_since(self, table: Table, mark: str) -> exp.Expr | None:
        ref = self.ref(table)
        if mark == "":
            return exp.select("*").from_(ref) if ref is not None else None
        added = self._appended_since(table, mark)
        if added is None or ref is None:
            return None
        if not added:
            return exp.select("*").from_(ref).where(exp.false())
        engine = self.engine()
        return exp.select("*").from_(
            engine._keep(engine._name("__mxd_added"), self._read(engine, table, added))
        )

    def rows_before(self, table: Table, mark: str) -> exp.Expr | None:
        added = self._appended_since(table, mark)
        log = self._log(table)
        if added is None or log is None:
            return None
        before = [f for f in log["commits"] if f not in set(added)]
        engine = self.engine()
        if not before:
            ref = self.ref(table)
            assert ref is not None
            return exp.select("*").from_(ref).where(exp.false())
        return exp.select("*").from_(
            engine._keep(engine._name("__mxd_before"), self._read(engine, table, before))
        )

    # ---- writes ------------------------------------------------------------------------
    def append(self, table: Table, data: pl.DataFrame | pa.Table) -> int:
        self.check_writable()
        arrow = data.to_arrow() if isinstance(data, pl.DataFrame) else data
        if arrow.num_rows == 0:
            return 0
        self._write_arrow(table, arrow, rewrite=False)
        return int(arrow.num_rows)

    def append_query(self, table: Table, query: exp.Expr) -> int:
        self.check_writable()
        return self._write_query(table, query, rewrite=False)

    def maps_chunks(self) -> bool:
        return True

    def append_mapped(
        self,
        table: Table,
        query: exp.Expr,
        function: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]],
        schema: pa.Schema,
        job_rows: int,
    ) -> Iterator[tuple[int, int]]:
        """``mapInArrow`` over ranges of the query's rows; each range is one Spark job
        whose output is one commit (a killed run loses only the range in flight)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        self.check_writable()
        engine = self.engine()
        target = pa.schema([pa.field(f.name, _spark_type(f.type), f.nullable) for f in schema])
        spark_schema = from_arrow_schema(target)
        fn = getattr(getattr(function, "asset", None), "fn", None)
        shipped = engine.ship(fn.__module__) if fn is not None else None
        from pyspark import cloudpickle

        payload = cloudpickle.dumps(function)  # type: ignore[no-untyped-call]
        on_executor = partial(_map_shipped, payload, shipped, target)
        for part, rows_in in engine.ranges(query, job_rows):
            mapped = part.mapInArrow(on_executor, spark_schema)
            failed = partial(_executor_error, function)
            yield rows_in, self._write_frame(table, mapped, rewrite=False, failed=failed)

    def delete_where(self, table: Table, condition: exp.Expr) -> int:
        self.check_writable()
        ref = self.ref(table)
        if ref is None:
            return 0
        counted, kept = split_where(ref, condition)
        removed = self.engine().rows(counted)[0][0]
        if not removed:
            return 0
        self._write_query(table, kept, rewrite=True)
        return int(removed)

    def replace(self, table: Table, frame: pl.DataFrame) -> None:
        self.check_writable()
        self._write_arrow(table, frame.to_arrow(), rewrite=True)

    def _write_arrow(self, table: Table, arrow: pa.Table, *, rewrite: bool) -> None:
        prepared = _writable(arrow, None if rewrite else self.schema(table))
        staged, final = self._new_folder(table)
        try:
            os.makedirs(staged)
            import pyarrow.parquet as pq

            pq.write_table(prepared, os.path.join(staged, "part-00000.parquet"))
            self._finish(table, staged, final, rewrite=rewrite)
        except OSError as exc:
            raise StoreError(f"cannot write Spark table {self._folder(table)}: {exc}") from exc
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def _write_query(self, table: Table, query: exp.Expr, *, rewrite: bool) -> int:
        return self._write_frame(table, self.engine()._sql(query), rewrite=rewrite)

    def _write_frame(
        self,
        table: Table,
        frame: DataFrame,
        *,
        rewrite: bool,
        failed: Callable[[StoreError], Exception] | None = None,
    ) -> int:
        """One commit of a DataFrame's rows, written by Spark into a staging folder (an
        append of no rows commits nothing); ``failed`` turns a failed write into the
        error to raise."""
        engine = self.engine()
        staged, final = self._new_folder(table)
        try:
            try:
                engine._fetch(partial(frame.write.mode("error").parquet, staged))
            except StoreError as exc:
                raise (exc if failed is None else failed(exc)) from exc
            rows = int(engine._fetch(engine.spark.read.parquet(staged).count))
            if rows or rewrite:
                self._finish(table, staged, final, rewrite=rewrite)
            return rows
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self._views.clear()


def _footer_schema(folders: Sequence[str]) -> Any:
    """The table's columns from its files' footers, unified (new columns, new struct
    fields), as a Spark schema; None when they do not unify. Reading the footers here
    costs milliseconds; Spark's own schema merge is a job (~0.2 s) per read."""
    import pyarrow.parquet as pq  # (imported when used: every command loads this module)
    from pyspark.sql.pandas.types import from_arrow_schema

    schemas = []
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            if name.endswith(".parquet") and not name.startswith(("_", ".")):
                schemas.append(pq.read_schema(os.path.join(folder, name)))
    if not schemas:
        return None
    try:
        unified = pa.unify_schemas(schemas, promote_options="permissive")
        return from_arrow_schema(unified)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def _writable(table: pa.Table, stored: pa.Schema | None) -> pa.Table:
    """Columns typed the way the table stores them: Spark reads a column of two types in
    two commits as an error. An all-null column takes the stored type (or is left out
    until a commit brings values); timestamps are microseconds, tz-aware in UTC."""
    known = {} if stored is None else {f.name: f.type for f in stored}
    columns, fields = [], []
    for f, column in zip(table.schema, table.columns, strict=True):
        target = known.get(f.name)
        dtype = _spark_type(f.type)
        if pa.types.is_null(f.type):
            if target is None:
                continue
            dtype = target
        elif pa.types.is_timestamp(f.type):
            dtype = pa.timestamp(
                "us",
                "UTC"
                if f.type.tz is not None
                or (target is not None and pa.types.is_timestamp(target) and target.tz)
                else None,
            )
        if dtype != f.type:
            column = column.cast(dtype)
        columns.append(column)
        fields.append(pa.field(f.name, dtype, f.nullable))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
