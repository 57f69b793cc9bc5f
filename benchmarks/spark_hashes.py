"""What each hash costs on the spark store: Spark's built-ins (md5, sha256) against mxd's
vectorized Arrow UDFs (the xxhash family and wyhash, seeded as Metaxy seeds them).

    python benchmarks/spark_hashes.py --rows 1000000 [--repeat 3] [--master 'local[2]']

Each algorithm hashes the same N strings (``sample-<i>|<i * 7919 mod 1000003>``, ~20
bytes) and the query sums the digests' lengths, so every row is hashed; the first call
of each is a warm-up (Python workers start, the UDF is registered). Prints seconds per
call (median, min–max) and the cost per million rows beside md5's.
"""

from __future__ import annotations

import argparse
import statistics
import time

ALGORITHMS = ("md5", "sha256", "xxhash32", "xxhash64", "xxh3_64", "wyhash")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    from sqlglot import exp

    from mxd_cli.store.spark import SparkEngine, spark_session

    spark = spark_session({"master": args.master})
    engine = SparkEngine(spark, location="benchmark")
    text = "concat('sample-', CAST(id AS STRING), '|', CAST(id * 7919 % 1000003 AS STRING))"
    spark.range(args.rows).selectExpr(f"{text} AS s").cache().createOrReplaceTempView("texts")
    spark.sql("SELECT count(*) FROM texts").collect()  # (cached before any timing)
    timings: dict[str, list[float]] = {}
    for algorithm in ALGORITHMS:
        call = engine.hash_call(algorithm, exp.column("s"))
        query = exp.select(exp.func("sum", exp.func("length", call))).from_("texts")
        engine.rows(query)  # warm-up
        runs = []
        for _ in range(args.repeat):
            clock = time.perf_counter()
            engine.rows(query)
            runs.append(time.perf_counter() - clock)
        timings[algorithm] = runs
    base = statistics.median(timings["md5"])
    print(f"{args.rows:,} strings, master {args.master}, {args.repeat} repeat(s)")
    print(f"{'algorithm':<10} {'how':<10} {'seconds (min-max)':>24} {'vs md5':>8}")
    for algorithm, runs in timings.items():
        how = "built-in" if algorithm in ("md5", "sha256") else "Arrow UDF"
        median = statistics.median(runs)
        spread = f"{median:.3f} ({min(runs):.3f}-{max(runs):.3f})"
        print(f"{algorithm:<10} {how:<10} {spread:>24} {median / base:>7.2f}x")


if __name__ == "__main__":
    main()
