from __future__ import annotations

import pytest

import mxd_cli as mx
from mxd_cli.definitions import FeatureKey, Registry, collecting
from mxd_cli.errors import DefinitionError


def test_subclass_registers_into_active_registry_with_columns() -> None:
    registry = Registry()
    with collecting(registry):

        class Base(mx.BaseFeature):  # no spec: an intermediate base, not registered
            shared: str

        class Raw(Base, spec=mx.FeatureSpec(key="t/raw", id_columns=["id"])):
            path: str

    assert list(registry.features) == [FeatureKey.parse("t/raw")]
    definition = registry.features[FeatureKey.parse("t/raw")]
    assert definition.cls is Raw
    assert definition.columns == ("path",)
    assert definition.origin.file is not None and definition.origin.file.endswith("test_feature.py")
    assert Raw.class_path().endswith("Raw")


def test_duplicate_key_names_both_places() -> None:
    with collecting(Registry()), pytest.raises(DefinitionError, match="declared twice") as info:

        class A(mx.BaseFeature, spec=mx.FeatureSpec(key="t/dup", id_columns=["id"])):
            pass

        class B(mx.BaseFeature, spec=mx.FeatureSpec(key="t/dup", id_columns=["id"])):
            pass

    assert info.value.message.count("test_feature.py") == 2


def test_spec_must_be_a_feature_spec() -> None:
    with collecting(Registry()), pytest.raises(DefinitionError, match="must be a FeatureSpec"):

        class Bad(mx.BaseFeature, spec={"key": "x"}):  # type: ignore[arg-type]
            pass
