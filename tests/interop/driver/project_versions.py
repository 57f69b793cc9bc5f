"""Print, as JSON, what Metaxy makes of a project: ``python project_versions.py CONFIG``.

Loads the project as Metaxy does (``metaxy.init``: the config, then the entrypoint
modules; the config's folder is put on ``sys.path`` first, as a project installed in the
environment would be importable) and prints per feature its versions and its spec as
Metaxy serializes it in graph snapshots. Runs in an environment where Metaxy is
installed; imports nothing of the tests.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

warnings.simplefilter("ignore")

import metaxy as mx  # noqa: E402


def main(config: Path) -> None:
    sys.path.insert(0, str(config.resolve().parent))
    mx.init(config)
    graph = mx.FeatureGraph.get_active()
    out = {}
    for key in graph.topological_sort_features():
        definition = graph.get_feature_definition(key)
        out[key.to_string()] = {
            "feature_version": graph.get_feature_version(key),
            "field_versions": graph.get_feature_version_by_field(key),
            "code_version": definition.spec.code_version,
            "spec_version": definition.spec.feature_spec_version,
            "feature_spec": json.dumps(definition.spec.model_dump(mode="json")),
            "dump": definition.spec.model_dump(mode="json"),
            "id_columns": list(definition.spec.id_columns),
            "deps": [d.feature.to_string() for d in definition.spec.deps],
        }
    print(json.dumps({"order": list(out), "features": out}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
