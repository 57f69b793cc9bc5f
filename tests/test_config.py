"""Tests for mxd_cli.config: real files in tmp_path, no mocks."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

from mxd_cli.config import HASH_ALGORITHMS, TOP_LEVEL_KEYS, Config, find_config_file, load_config
from mxd_cli.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]

DUCKDB_DEV = """
[stores.dev]
type = "duckdb"
[stores.dev.config]
database = "dev.duckdb"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def file_of(location: str | None) -> str | None:
    """The file part of a ``file:line`` location."""
    if location is None:
        return None
    head, _, tail = location.rpartition(":")
    return head if head and tail.isdigit() else location


def load(folder: Path, text: str, **environ: str) -> Config:
    write(folder / "metaxy.toml", text)
    return load_config(cwd=folder, environ=environ)


# ---- discovery -------------------------------------------------------------------------


def test_metaxy_toml_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = write(tmp_path / "metaxy.toml", 'project = "here"\n')
    monkeypatch.chdir(tmp_path)
    assert find_config_file(environ={}) == config_file
    config = load_config(environ={})
    assert (config.path, config.root, config.project) == (config_file, tmp_path, "here")


def test_metaxy_toml_in_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = write(tmp_path / "metaxy.toml", 'project = "parent"\n')
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert find_config_file(environ={}) == config_file
    assert load_config(environ={}).root == tmp_path


def test_metaxy_config_variable_beats_discovery(tmp_path: Path) -> None:
    write(tmp_path / "metaxy.toml", 'project = "discovered"\n')
    other = write(tmp_path / "conf" / "other.toml", 'project = "from_env"\n')
    environ = {"METAXY_CONFIG": "conf/other.toml"}
    assert find_config_file(cwd=tmp_path, environ=environ) == other
    config = load_config(cwd=tmp_path, environ=environ)
    assert (config.project, config.root) == ("from_env", tmp_path / "conf")


def test_explicit_path_beats_metaxy_config_variable(tmp_path: Path) -> None:
    write(tmp_path / "metaxy.toml", 'project = "discovered"\n')
    write(tmp_path / "env.toml", 'project = "from_env"\n')
    explicit = write(tmp_path / "explicit.toml", 'project = "explicit"\n')
    environ = {"METAXY_CONFIG": str(tmp_path / "env.toml")}
    config = load_config(Path("explicit.toml"), cwd=tmp_path, environ=environ)
    assert (config.path, config.project) == (explicit, "explicit")


def test_os_environ_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "metaxy.toml", 'project = "a"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METAXY_PROJECT", "from_os_environ")
    assert load_config().project == "from_os_environ"


def test_pyproject_tool_metaxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pyproject = write(
        tmp_path / "pyproject.toml",
        """
        [project]
        name = "demo"
        [tool.metaxy]
        project = "from_pyproject"
        entrypoints = ["pipeline"]
        """,
    )
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    config = load_config(environ={})
    assert (config.path, config.project, config.entrypoints) == (
        pyproject,
        "from_pyproject",
        ("pipeline",),
    )


def test_empty_tool_metaxy_is_skipped(tmp_path: Path) -> None:
    parent_config = write(tmp_path / "metaxy.toml", 'project = "parent"\n')
    write(tmp_path / "sub" / "pyproject.toml", "[tool.metaxy]\n[tool.other]\nx = 1\n")
    assert find_config_file(cwd=tmp_path / "sub", environ={}) == parent_config


def test_metaxy_toml_beats_pyproject_in_the_same_folder(tmp_path: Path) -> None:
    config_file = write(tmp_path / "metaxy.toml", 'project = "toml"\n')
    write(tmp_path / "pyproject.toml", '[tool.metaxy]\nproject = "pyproject"\n')
    assert find_config_file(cwd=tmp_path, environ={}) == config_file


def test_nearer_pyproject_beats_metaxy_toml_further_up(tmp_path: Path) -> None:
    # Metaxy's search: each folder is checked for both files before moving up.
    write(tmp_path / "metaxy.toml", 'project = "outer"\n')
    inner = write(tmp_path / "inner" / "pyproject.toml", '[tool.metaxy]\nproject = "inner"\n')
    assert find_config_file(cwd=tmp_path / "inner", environ={}) == inner


def test_explicit_pyproject_uses_tool_metaxy(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.metaxy]\nproject = "explicit_py"\n')
    config = load_config(tmp_path / "pyproject.toml", cwd=tmp_path, environ={})
    assert config.project == "explicit_py"


def test_nothing_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no metaxy\.toml found in .* or its parents$") as info:
        find_config_file(cwd=tmp_path, environ={})
    assert str(tmp_path) in info.value.message
    assert info.value.hint == (
        "create one (metaxy.toml.example documents every key) or pass --config PATH"
    )


def test_explicit_path_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml \(from --config\) does not exist"):
        load_config(missing, cwd=tmp_path, environ={})


def test_metaxy_config_variable_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gone\.toml \(from METAXY_CONFIG\) does not exist"):
        load_config(cwd=tmp_path, environ={"METAXY_CONFIG": "gone.toml"})


# ---- keys and types ----------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'stor'$") as info:
        load(tmp_path, 'stor = "dev"\n')
    assert info.value.hint == "did you mean 'store'?"
    assert file_of(info.value.location) == str(tmp_path / "metaxy.toml")
    assert str(tmp_path / "metaxy.toml") in str(info.value)


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'zzz'") as info:
        load(tmp_path, "zzz = 1\n")
    assert info.value.hint is not None
    assert info.value.hint.startswith("valid keys: auto_create_tables, enable_map_datatype,")


def test_unknown_store_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'stores\.dev\.typ'$") as info:
        load(tmp_path, '[stores.dev]\ntyp = "duckdb"\n')
    assert info.value.hint == "did you mean 'type'?"
    assert file_of(info.value.location) == str(tmp_path / "metaxy.toml")


def test_metaxy_keys_mxd_does_not_use_are_accepted(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        theme = "default"
        migrations_dir = ".metaxy/migrations"
        enable_map_datatype = true
        sync = false
        locked = true
        extra_features = []
        metaxy_lock_path = "metaxy.lock"
        [ext.sqlmodel]
        enable = true
        anything = "goes"
        """,
    )
    assert config.mxd == {}


def test_bad_toml_reports_line_and_column(tmp_path: Path) -> None:
    config_file = tmp_path / "metaxy.toml"
    with pytest.raises(ConfigError, match=r"invalid TOML: ") as info:
        load(tmp_path, 'project = "x"\nstore = \n')
    assert info.value.location == f"{config_file}:2:9"
    assert str(info.value).startswith(f"{config_file}:2:9: invalid TOML: Invalid value")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'entrypoints = "pipeline"',
            "'entrypoints' must be an array of strings, got string \"pipeline\"",
        ),
        (
            "entrypoints = [1]",
            "'entrypoints' must be an array of strings, got an array containing integer 1",
        ),
        (
            'hash_truncation_length = "8"',
            "'hash_truncation_length' must be an integer, got string \"8\"",
        ),
        (
            "hash_truncation_length = true",
            "'hash_truncation_length' must be an integer, got boolean true",
        ),
        (
            'auto_create_tables = "yes"',
            "'auto_create_tables' must be a boolean, got string \"yes\"",
        ),
        ("project = 3", "'project' must be a string, got integer 3"),
        ('stores = "dev"', "'stores' must be a table, got string \"dev\""),
        ("[stores]\ndev = 1", "'stores.dev' must be a table, got integer 1"),
        (
            '[stores.dev]\ntype = "duckdb"\nconfig = 1',
            "'stores.dev.config' must be a table, got integer 1",
        ),
        ("ext = 1", "'ext' must be a table, got integer 1"),
        ("[ext]\nother = 1", "'ext.other' must be a table, got integer 1"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text + "\n")
    assert info.value.message == message
    assert file_of(info.value.location) == str(tmp_path / "metaxy.toml")


def test_hash_truncation_length_minimum(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'hash_truncation_length' must be at least 8, got 7"):
        load(tmp_path, "hash_truncation_length = 7\n")
    assert load(tmp_path, "hash_truncation_length = 12\n").hash_truncation_length == 12


def test_defaults(tmp_path: Path) -> None:
    project = tmp_path / "my-project"
    config = load(project, "")
    assert config.project == "my-project"
    assert config.entrypoints == ()
    assert config.hash_truncation_length == 8
    assert config.auto_create_tables is True
    assert config.mxd == {}


def test_invalid_project_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="project name 'a__b' is not valid") as info:
        load(tmp_path, 'project = "a__b"\n')
    assert info.value.hint == "use letters, digits, '-' and '_' only, and no double underscore"


# ---- stores ------------------------------------------------------------------------------


def test_default_store_when_none_configured(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.store == "dev"
    dev = config.store_config()
    assert (dev.name, dev.type, dev.hash_algorithm, dev.fallback_stores) == (
        "dev",
        "duckdb",
        "xxhash32",
        (),
    )
    assert dev.options == {"database": str(tmp_path / ".mxd" / "dev.duckdb")}


def test_default_store_takes_the_store_name(tmp_path: Path) -> None:
    config = load(tmp_path, 'store = "prod"\n')
    assert list(config.stores) == ["prod"]
    assert config.store_config().options["database"] == str(tmp_path / ".mxd" / "prod.duckdb")


def test_store_defaults_to_dev_then_to_the_only_store(tmp_path: Path) -> None:
    two = DUCKDB_DEV + '[stores.prod]\ntype = "delta"\nconfig = { root_path = "p" }\n'
    assert load(tmp_path, two).store == "dev"
    one = '[stores.main]\ntype = "duckdb"\nconfig.database = "m.duckdb"\n'
    assert load(tmp_path, one).store == "main"


def test_several_stores_without_dev_need_store(tmp_path: Path) -> None:
    text = (
        '[stores.a]\ntype = "duckdb"\nconfig.database = "a.duckdb"\n'
        '[stores.b]\ntype = "duckdb"\nconfig.database = "b.duckdb"\n'
    )
    with pytest.raises(ConfigError, match="'store' must name the default") as info:
        load(tmp_path, text)
    assert info.value.hint == 'add store = "a" (configured: a, b)'


def test_store_names_a_missing_store(tmp_path: Path) -> None:
    text = (
        'store = "prd"\n[stores.prod]\ntype = "duckdb"\nconfig.database = "p.duckdb"\n' + DUCKDB_DEV
    )
    with pytest.raises(ConfigError, match=r"store 'prd' is not configured$") as info:
        load(tmp_path, text)
    assert info.value.hint == "did you mean 'prod'?"
    assert file_of(info.value.location) == str(tmp_path / "metaxy.toml")


def test_store_config_lookup(tmp_path: Path) -> None:
    config = load(tmp_path, DUCKDB_DEV)
    assert config.store_config("dev") is config.store_config()
    with pytest.raises(ConfigError, match="store 'deb' is not configured") as info:
        config.store_config("deb")
    assert info.value.hint == "did you mean 'dev'?"


@pytest.mark.parametrize(
    ("type_name", "kind"),
    [
        ("duckdb", "duckdb"),
        ("DuckDB", "duckdb"),
        ("metaxy.ext.duckdb.DuckDBMetadataStore", "duckdb"),
        ("metaxy.ext.duckdb.metadata_store.DuckDBMetadataStore", "duckdb"),
        ("metaxy.ext.duckdb.legacy_store.DuckDBMetadataStore", "duckdb"),
        ("metaxy.ext.metadata_stores.duckdb.DuckDBMetadataStore", "duckdb"),
        ("metaxy.metadata_store.duckdb.DuckDBMetadataStore", "duckdb"),
        ("delta", "delta"),
        ("metaxy.ext.polars.handlers.delta.DeltaMetadataStore", "delta"),
        ("metaxy.ext.polars.DeltaMetadataStore", "delta"),
        ("metaxy.ext.delta.DeltaMetadataStore", "delta"),
        ("metaxy.ext.delta.legacy_store.DeltaMetadataStore", "delta"),
        ("metaxy.ext.metadata_stores.delta.DeltaMetadataStore", "delta"),
        ("metaxy.metadata_store.delta.DeltaMetadataStore", "delta"),
    ],
)
def test_accepted_store_types(tmp_path: Path, type_name: str, kind: str) -> None:
    option = "database" if kind == "duckdb" else "root_path"
    config = load(tmp_path, f'[stores.dev]\ntype = "{type_name}"\nconfig.{option} = "x"\n')
    assert config.store_config().type == kind


def test_unknown_store_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown store type 'duckbd' for store 'dev'$") as info:
        load(tmp_path, '[stores.dev]\ntype = "duckbd"\n')
    assert info.value.exit_code == 2
    assert info.value.hint == (
        "did you mean 'duckdb'? accepted types: duckdb, delta, spark (or Metaxy's import path for one)"
    )


def test_unsupported_metaxy_store_type(tmp_path: Path) -> None:
    text = '[stores.dev]\ntype = "metaxy.ext.clickhouse.ClickHouseMetadataStore"\n'
    with pytest.raises(ConfigError, match="unknown store type") as info:
        load(tmp_path, text)
    assert (
        info.value.hint == "accepted types: duckdb, delta, spark (or Metaxy's import path for one)"
    )


def test_store_without_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"store 'dev' has no 'type'$") as info:
        load(tmp_path, '[stores.dev.config]\ndatabase = "x.duckdb"\n')
    assert info.value.hint == 'add type = "duckdb" (or "delta") to [stores.dev]'


def test_store_options_fallbacks_and_hash_algorithm(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [stores.dev]
        type = "duckdb"
        [stores.dev.config]
        database = ":memory:"
        hash_algorithm = "XXHASH64"
        fallback_stores = ["prod"]
        config = { threads = 2 }
        [stores.prod]
        type = "duckdb"
        config = { database = "/data/prod.duckdb", hash_algorithm = "xxhash64" }
        """,
    )
    dev = config.store_config()
    assert dev.options == {"database": ":memory:", "config": {"threads": 2}}
    assert (dev.hash_algorithm, dev.fallback_stores) == ("xxhash64", ("prod",))
    assert config.store_config("prod").options == {"database": "/data/prod.duckdb"}


@pytest.mark.parametrize("algorithm", HASH_ALGORITHMS)
def test_every_hash_algorithm(tmp_path: Path, algorithm: str) -> None:
    config = load(tmp_path, DUCKDB_DEV + f'hash_algorithm = "{algorithm}"\n')
    assert config.store_config().hash_algorithm == algorithm


def test_invalid_hash_algorithm(tmp_path: Path) -> None:
    text = '[stores.dev]\ntype = "duckdb"\nconfig.hash_algorithm = "sha265"\n'
    with pytest.raises(
        ConfigError, match="unknown hash_algorithm 'sha265' for store 'dev'"
    ) as info:
        load(tmp_path, text)
    assert info.value.hint == "did you mean 'sha256'?"


def test_unknown_fallback_store(tmp_path: Path) -> None:
    text = DUCKDB_DEV + 'fallback_stores = ["prd"]\n[stores.prod]\ntype = "delta"\n'
    text += 'config.root_path = "p"\n'
    with pytest.raises(
        ConfigError, match="store 'dev' falls back to 'prd', which is not configured"
    ) as info:
        load(tmp_path, text)
    assert info.value.hint == "did you mean 'prod'?"


def test_fallback_cycle(tmp_path: Path) -> None:
    text = """
    [stores.dev]
    type = "duckdb"
    config.database = "d.duckdb"
    config.fallback_stores = ["prod"]
    [stores.prod]
    type = "duckdb"
    config.database = "p.duckdb"
    config.fallback_stores = ["dev"]
    """
    with pytest.raises(ConfigError, match="store 'dev' falls back to itself"):
        load(tmp_path, text)


def test_a_fallback_must_hash_like_the_store_falling_back_to_it(tmp_path: Path) -> None:
    text = DUCKDB_DEV + 'fallback_stores = ["prod"]\n[stores.prod]\ntype = "duckdb"\n'
    text += 'config.database = "p.duckdb"\nconfig.hash_algorithm = "md5"\n'
    with pytest.raises(
        ConfigError,
        match="store 'dev' hashes with xxhash32 but falls back to 'prod', which hashes with md5",
    ) as info:
        load(tmp_path, text)
    assert info.value.hint == "every store of a fallback chain must use the same hash_algorithm"


def test_fallback_stores_must_be_strings(tmp_path: Path) -> None:
    text = '[stores.dev]\ntype = "duckdb"\nconfig.fallback_stores = "prod"\n'
    with pytest.raises(
        ConfigError, match="'stores.dev.config.fallback_stores' must be an array of strings"
    ):
        load(tmp_path, text)


# ---- relative paths ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_name", "option", "value", "expected"),
    [
        ("duckdb", "database", "data/dev.duckdb", "{root}/data/dev.duckdb"),
        ("duckdb", "database", "../shared.duckdb", "{parent}/shared.duckdb"),
        ("duckdb", "database", "/abs/dev.duckdb", "/abs/dev.duckdb"),
        ("duckdb", "database", ":memory:", ":memory:"),
        ("duckdb", "database", "s3://bucket/dev.duckdb", "s3://bucket/dev.duckdb"),
        ("delta", "root_path", "delta", "{root}/delta"),
        ("delta", "root_path", "s3://bucket/metaxy", "s3://bucket/metaxy"),
        ("delta", "root_path", "gs://bucket/metaxy", "gs://bucket/metaxy"),
        (
            "delta",
            "root_path",
            "abfss://c@acct.dfs.core.windows.net/m",
            "abfss://c@acct.dfs.core.windows.net/m",
        ),
        ("delta", "root_path", "file:///data/metaxy", "file:///data/metaxy"),
    ],
)
def test_store_paths_resolve_against_the_config_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    type_name: str,
    option: str,
    value: str,
    expected: str,
) -> None:
    root = tmp_path / "project"
    monkeypatch.chdir(tmp_path)  # not the project folder: paths must not follow the cwd
    text = f'[stores.dev]\ntype = "{type_name}"\n[stores.dev.config]\n{option} = "{value}"\n'
    config = load(root, text)
    assert config.store_config().options[option] == expected.format(root=root, parent=tmp_path)


# ---- environment -------------------------------------------------------------------------


def test_env_expansion(tmp_path: Path) -> None:
    text = """
    project = "${PROJECT_NAME}"
    entrypoints = ["${MODULE:-pipeline}", "fixed"]
    [stores.dev]
    type = "delta"
    [stores.dev.config]
    root_path = "s3://${BUCKET:-default-bucket}/${BRANCH}/metaxy"
    storage_options = { region = "${REGION:-eu-west-1}" }
    """
    config = load(tmp_path, text, PROJECT_NAME="demo", BRANCH="main", REGION="us-east-1")
    assert config.project == "demo"
    assert config.entrypoints == ("pipeline", "fixed")
    options = config.store_config().options
    assert options["root_path"] == "s3://default-bucket/main/metaxy"
    assert options["storage_options"] == {"region": "us-east-1"}


def test_env_expansion_set_but_empty_wins_over_default(tmp_path: Path) -> None:
    assert load(tmp_path, 'project = "p${SUFFIX:-b}"\n', SUFFIX="").project == "p"


def test_missing_env_variable(tmp_path: Path) -> None:
    text = '[stores.dev]\ntype = "duckdb"\n[stores.dev.config]\ndatabase = "${DB_PATH}"\n'
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert info.value.message == (
        "environment variable DB_PATH is not set (used in 'stores.dev.config.database')"
    )
    assert info.value.hint == "set DB_PATH or write ${DB_PATH:-default}"
    assert file_of(info.value.location) == str(tmp_path / "metaxy.toml")


def test_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = DUCKDB_DEV + '[stores.prod]\ntype = "duckdb"\nconfig.database = "prod.duckdb"\n'
    monkeypatch.chdir(tmp_path)
    config = load(
        tmp_path,
        text,
        METAXY_STORE="prod",
        METAXY_HASH_TRUNCATION_LENGTH="12",
        METAXY_AUTO_CREATE_TABLES="false",
        METAXY_ENTRYPOINTS='["a", "b"]',
        METAXY_PROJECT="2024",
        METAXY_STORES__DEV__CONFIG__DATABASE="/tmp/x.duckdb",
        METAXY_STORES__PROD__CONFIG__HASH_ALGORITHM="md5",
        METAXY_EXT__MXD__CHUNK_SIZE="500",
        METAXY_CONFIG=str(tmp_path / "metaxy.toml"),
    )
    assert config.store == "prod"
    assert config.hash_truncation_length == 12
    assert config.auto_create_tables is False
    assert config.entrypoints == ("a", "b")
    assert config.project == "2024"  # text keys stay text
    assert config.store_config("dev").options["database"] == "/tmp/x.duckdb"
    assert config.store_config("prod").hash_algorithm == "md5"
    assert config.mxd == {"chunk_size": 500}


def test_env_override_adds_a_store_with_paths_relative_to_cwd(tmp_path: Path) -> None:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    write(tmp_path / "metaxy.toml", DUCKDB_DEV)
    environ = {
        "METAXY_STORES__CI__TYPE": "duckdb",
        "METAXY_STORES__CI__CONFIG__DATABASE": "ci.duckdb",
        "METAXY_STORE": "ci",
    }
    config = load_config(tmp_path / "metaxy.toml", cwd=cwd, environ=environ)
    assert config.store_config().options["database"] == str(cwd / "ci.duckdb")
    assert config.store_config("dev").options["database"] == str(tmp_path / "dev.duckdb")


def test_env_override_json_table_merges(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        DUCKDB_DEV,
        METAXY_STORES='{"dev": {"config": {"config": {"threads": 1}}}}',
    )
    assert config.store_config().options == {
        "database": str(tmp_path / "dev.duckdb"),
        "config": {"threads": 1},
    }


def test_unknown_top_level_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'stroe'$") as info:
        load(tmp_path, "", METAXY_STROE="prod")
    assert info.value.hint == "did you mean 'store'?"
    assert info.value.location == "environment variable METAXY_STROE"


def test_unknown_nested_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'stores\.dev\.typ'$") as info:
        load(tmp_path, DUCKDB_DEV, METAXY_STORES__DEV__TYP="duckdb")
    assert info.value.hint == "did you mean 'type'?"
    assert info.value.location == "environment variable METAXY_STORES__DEV__TYP"


def test_override_of_wrong_type_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'hash_truncation_length' must be an integer") as info:
        load(tmp_path, "", METAXY_HASH_TRUNCATION_LENGTH="twelve")
    assert info.value.location == "environment variable METAXY_HASH_TRUNCATION_LENGTH"


def test_override_store_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="store 'prd' is not configured") as info:
        load(tmp_path, DUCKDB_DEV, METAXY_STORE="prd")
    assert info.value.location == "environment variable METAXY_STORE"


def test_override_below_a_scalar(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot set 'store.name': 'store' is not a table"):
        load(tmp_path, 'store = "dev"\n', METAXY_STORE__NAME="x")


# ---- extend ------------------------------------------------------------------------------


def test_extend_merges_like_metaxy(tmp_path: Path) -> None:
    write(
        tmp_path / "shared" / "base.toml",
        """
        project = "base"
        entrypoints = ["shared_features"]
        hash_truncation_length = 16
        [stores.dev]
        type = "duckdb"
        config.database = "base-dev.duckdb"
        [stores.prod]
        type = "delta"
        config.root_path = "lake"
        [ext.mxd]
        chunk_size = 100
        lock_timeout = 5
        """,
    )
    config = load(
        tmp_path / "app",
        """
        extend = "../shared/base.toml"
        project = "app"
        entrypoints = ["app_features"]
        [stores.dev]
        type = "duckdb"
        config.database = "app-dev.duckdb"
        [ext.mxd]
        chunk_size = 7
        """,
    )
    assert config.project == "app"
    assert config.root == tmp_path / "app"
    assert config.hash_truncation_length == 16
    assert config.entrypoints == ("shared_features", "app_features")  # arrays appended
    # Tables merge one level deep: [stores.dev] replaced, [stores.prod] kept.
    assert config.store_config("dev").options["database"] == str(
        tmp_path / "app" / "app-dev.duckdb"
    )
    assert config.store_config("prod").options["root_path"] == str(tmp_path / "shared" / "lake")
    assert config.mxd == {"chunk_size": 7}


def test_extend_chain(tmp_path: Path) -> None:
    write(tmp_path / "a.toml", 'project = "a"\ntheme = "dark"\n')
    write(tmp_path / "b" / "b.toml", 'extend = "../a.toml"\nproject = "b"\n')
    config = load(tmp_path / "c", 'extend = "../b/b.toml"\nhash_truncation_length = 9\n')
    assert (config.project, config.hash_truncation_length) == ("b", 9)


def test_extend_cycle(tmp_path: Path) -> None:
    write(tmp_path / "a.toml", 'extend = "b.toml"\n')
    write(tmp_path / "b.toml", 'extend = "metaxy.toml"\n')
    config_file = tmp_path / "metaxy.toml"
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    with pytest.raises(ConfigError) as info:
        load(tmp_path, 'extend = "a.toml"\n')
    assert (
        info.value.message
        == f"'extend' forms a cycle: {config_file} -> {a} -> {b} -> {config_file}"
    )
    assert file_of(info.value.location) == str(b)


def test_extend_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'extend' points to a missing file: .*base\.toml"):
        load(tmp_path, 'extend = "base.toml"\n')


def test_extend_must_be_a_string(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'extend' must be a string, got an array"):
        load(tmp_path, 'extend = ["base.toml"]\n')


def test_error_in_extended_file_names_that_file(tmp_path: Path) -> None:
    base = write(tmp_path / "base.toml", 'hash_truncation_length = "8"\n')
    with pytest.raises(ConfigError, match="'hash_truncation_length' must be an integer") as info:
        load(tmp_path / "app", 'extend = "../base.toml"\n')
    assert file_of(info.value.location) == str(base)


def test_extend_cannot_come_from_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'extend' cannot be set from the environment"):
        load(tmp_path, "", METAXY_EXTEND="base.toml")


# ---- [ext.mxd] ---------------------------------------------------------------------------


def test_ext_mxd_settings(tmp_path: Path) -> None:
    config = load(tmp_path, "[ext.mxd]\nchunk_size = 500\nlock_timeout = 3\nenable = true\n")
    assert config.mxd == {"chunk_size": 500, "lock_timeout": 3.0, "enable": True}
    assert isinstance(config.mxd["lock_timeout"], float)


def test_ext_mxd_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'ext\.mxd\.chunksize'$") as info:
        load(tmp_path, "[ext.mxd]\nchunksize = 5\n")
    assert info.value.hint == "did you mean 'chunk_size'?"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("chunk_size = 0", "'ext.mxd.chunk_size' must be positive, got 0"),
        ("chunk_size = 1.5", "'ext.mxd.chunk_size' must be an integer, got float 1.5"),
        ("lock_timeout = -1", "'ext.mxd.lock_timeout' must be 0 or more seconds, got -1"),
        ('lock_timeout = "5"', "'ext.mxd.lock_timeout' must be a number, got string \"5\""),
    ],
)
def test_ext_mxd_invalid_values(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"[ext.mxd]\n{text}\n")
    assert info.value.message == message


# ---- the documented example --------------------------------------------------------------


def test_example_file_loads(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "metaxy.toml.example", tmp_path / "metaxy.toml")
    config = load_config(cwd=tmp_path, environ={})
    assert config.store == "dev"
    assert set(config.stores) == {"dev", "prod", "lake"}
    dev, prod = config.store_config("dev"), config.store_config("prod")
    assert dev.options["database"] == str(tmp_path / ".mxd" / "dev.duckdb")
    assert dev.fallback_stores == ("prod",)
    assert (prod.type, prod.options["root_path"]) == ("delta", "s3://my-bucket/metaxy")
    lake = config.store_config("lake")
    assert lake.options["warehouse"] == str(tmp_path / ".mxd" / "spark-warehouse")
    assert config.mxd == {"chunk_size": 10000, "lock_timeout": 0.0}


def test_example_file_documents_every_top_level_key() -> None:
    text = (REPO_ROOT / "metaxy.toml.example").read_text()
    for key in TOP_LEVEL_KEYS:
        assert any(f"\n{form}" in text for form in (f"{key} =", f"# {key} =", f"[{key}.")), key


def test_spark_warehouse_defaults_beside_the_config_file(tmp_path: Path) -> None:
    config = load(
        tmp_path, '[stores.lake]\ntype = "spark"\n[stores.lake.config]\nmaster = "local[1]"\n'
    )
    lake = config.store_config("lake")
    assert lake.options["warehouse"] == str(tmp_path / ".mxd" / "spark-warehouse")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('master = "local"\nremote = "sc://h:15002"', "either 'master' or 'remote'"),
        ('format = "delta"', "does not support option 'format'"),
        ('conf = { "spark.x" = [1] }', "conf.spark.x must be"),
        ('warehouse = "s3://bucket/x"', "not a local or mounted folder"),
    ],
)
def test_spark_options_are_checked(tmp_path: Path, options: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(tmp_path, f'[stores.lake]\ntype = "spark"\n[stores.lake.config]\n{options}\n')


def test_wrong_module_for_a_known_store_class(tmp_path: Path) -> None:
    text = '[stores.dev]\ntype = "metaxy.ext.duckdb.store.DuckDBMetadataStore"\n'
    with pytest.raises(ConfigError, match="unknown store type") as info:
        load(tmp_path, text)
    assert info.value.hint is not None
    assert info.value.hint.startswith("did you mean 'metaxy.ext.duckdb.")


def test_pyproject_tool_metaxy_must_be_a_table(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool]\nmetaxy = "x"\n')
    with pytest.raises(ConfigError, match=r"\[tool\.metaxy\] must be a table"):
        find_config_file(cwd=tmp_path, environ={})
