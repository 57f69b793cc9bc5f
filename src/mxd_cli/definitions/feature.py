"""``BaseFeature``: subclass it with ``spec=FeatureSpec(...)`` to declare a feature."""

from __future__ import annotations

from typing import Any, ClassVar

from mxd_cli.definitions.registry import FeatureDefinition, Origin, active_registry
from mxd_cli.definitions.spec import SYSTEM_PREFIX, FeatureSpec
from mxd_cli.errors import DefinitionError


class BaseFeature:
    """Base class of features.

    Example::

        class Raw(BaseFeature, spec=FeatureSpec(key="demo/raw", id_columns=["id"])):
            path: str          # user columns may be annotated; informational

    Declaring the class registers the feature in the active registry.
    """

    spec: ClassVar[FeatureSpec]

    def __init_subclass__(cls, spec: FeatureSpec | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if spec is None:
            # An intermediate base class (shared columns or helpers): nothing to register.
            return
        if not isinstance(spec, FeatureSpec):
            raise DefinitionError(
                f"class {cls.__qualname__}: spec must be a FeatureSpec, got {type(spec).__name__}",
                location=str(Origin.of(cls)),
            )
        cls.spec = spec
        columns = tuple(
            name
            for name in getattr(cls, "__annotations__", {})
            if not name.startswith("_") and not name.startswith(SYSTEM_PREFIX) and name != "spec"
        )
        active_registry().add_feature(FeatureDefinition(spec, cls, Origin.of(cls), columns))

    @classmethod
    def class_path(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"
