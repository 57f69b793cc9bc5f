from __future__ import annotations

import pytest

from mxd_cli.definitions import FeatureKey, FieldKey
from mxd_cli.errors import DefinitionError


def test_feature_key_forms_and_table_name() -> None:
    key = FeatureKey.parse("my-team/raw_audio")
    assert key.parts == ("my-team", "raw_audio")
    assert str(key) == "my-team/raw_audio"
    assert key.table_name == "my_team__raw_audio"
    assert FeatureKey.parse(["my-team", "raw_audio"]) == key
    assert FeatureKey.parse(key) is key


def test_keys_order_by_parts() -> None:
    keys = [FeatureKey.parse(k) for k in ["b/a", "a/b/c", "a/b"]]
    assert [str(k) for k in sorted(keys)] == ["a/b", "a/b/c", "b/a"]


def test_field_key_struct_key() -> None:
    assert FieldKey.parse("audio/en").struct_key == "audio_en"
    assert str(FieldKey.parse(["audio", "en"])) == "audio/en"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Demo/raw", "may only contain"),
        ("demo//raw", "empty part"),
        ("demo/raw__x", "contains '__'"),
        ("1demo/raw", "must start with a letter"),
        ("", "empty part"),
        ("demo/ra w", "may only contain"),
    ],
)
def test_invalid_feature_keys(text: str, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        FeatureKey.parse(text)


def test_key_must_be_string_or_parts() -> None:
    with pytest.raises(DefinitionError, match="must be a string"):
        FeatureKey.parse(3)  # type: ignore[arg-type]
