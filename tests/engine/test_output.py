"""attach_provenance: every path (in the chunk's order, reordered, expanded, echoed) gives
the rows a join gives, and every wrong output is refused with the rows named."""

from __future__ import annotations

import polars as pl
import pytest

from mxd_cli.definitions.asset import AssetDefinition
from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.definitions.registry import Origin
from mxd_cli.engine.output import attach_provenance
from mxd_cli.errors import AssetError
from mxd_cli.store import columns as c


def clean(ctx: object, rows: pl.DataFrame) -> pl.DataFrame:
    return rows


ASSET = AssetDefinition(
    FeatureKey(("demo", "clean")), clean, None, Origin("pipeline", "pipeline.py", 1), 2
)
CHUNK = pl.DataFrame(
    {
        "id": ["a", "b", "c"],
        "value": [1, 2, 3],
        c.PROVENANCE_BY_FIELD: [{"value": f"p{i}"} for i in range(3)],
        c.PROVENANCE: ["pa", "pb", "pc"],
    }
)


def joined(output: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    given = CHUNK.select(*key, c.PROVENANCE_BY_FIELD, c.PROVENANCE)
    return output.join(given, on=key, how="left")


@pytest.mark.parametrize(
    "output",
    [
        pl.DataFrame({"id": ["a", "b", "c"], "out": [10, 20, 30]}),  # the chunk's order
        pl.DataFrame({"id": ["c", "a", "b"], "out": [30, 10, 20]}),  # reordered
        pl.DataFrame({"id": ["a", "b", "c"], "out": [1, 2, 3], c.UPDATED_AT: [None] * 3}),
        pl.DataFrame(  # echoed unchanged
            {"id": ["b", "a", "c"], c.PROVENANCE: ["pb", "pa", "pc"], "out": [2, 1, 3]}
        ),
    ],
)
def test_every_path_gives_the_joined_rows(output: pl.DataFrame) -> None:
    got = attach_provenance(output, CHUNK, ["id"], ASSET)
    expected = joined(output.drop(c.PROVENANCE, c.UPDATED_AT, strict=False), ["id"])
    assert got.columns == expected.columns
    assert got.sort("id").equals(expected.sort("id"))


def test_an_expansion_gets_its_parents_provenance() -> None:
    output = pl.DataFrame({"id": ["a", "a", "b", "c"], "k": [0, 1, 0, 0]})
    got = attach_provenance(output, CHUNK, ["id"], ASSET)
    assert got[c.PROVENANCE].to_list() == ["pa", "pa", "pb", "pc"]


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (pl.DataFrame({"id": ["a", "b", "x"]}), "1 row(s) outside the chunk"),
        (pl.DataFrame({"id": ["a", "b"]}), "lacks 1 of the 3 sample(s)"),
        (pl.DataFrame({"id": ["a", "a", "b"]}), "lacks 1 of the 3 sample(s)"),
        (
            pl.DataFrame({"id": ["a", "b", "c"], c.PROVENANCE: ["pa", "zz", "pc"]}),
            "system column 'metaxy_provenance' differs",
        ),
    ],
)
def test_wrong_outputs_are_refused(output: pl.DataFrame, message: str) -> None:
    with pytest.raises(AssetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        attach_provenance(output, CHUNK, ["id"], ASSET)
