"""A peer's own virtual environment: installed by the harness, cached, checked before use.

Each peer (another tool run on the benchmark's scenario) lives in
``benchmarks/.peers/<name>-<version>/`` (git-ignored): ``venv/`` with exactly the pinned
requirements from PyPI, and ``ready.json`` saying what was installed. A folder whose
``ready.json`` matches the pins and whose interpreter imports the pinned versions is
reused; anything else is installed afresh. An install that fails makes the peer
*missing*, with the reason, in the report: never silently skipped.

For Metaxy's DuckDB store the folder also gets a stand-in for DuckDB's ``hashfuncs``
community extension (``hashfuncs.c``, compiled against the C API headers of the pinned
duckdb sdist from PyPI and checked against polars-hash), because Metaxy installs that
extension from DuckDB's community repository, which this machine cannot reach. If it
cannot be built the DuckDB runs of the peer are missing, with the reason; Delta runs are
unaffected.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HOME = HERE.parent / ".peers"
INSTALL_TIMEOUT = 1800  # seconds for pip; a cold install of Metaxy's extras takes ~1 min
HASHFUNCS_SOURCE = HERE / "hashfuncs.c"
# A DuckDB repository name that DuckDB resolves to ./build/release/repository under the
# working directory; the peer runs there, so Metaxy's `extensions=` option can point at it.
LOCAL_REPOSITORY = "local_build_release"
C_API_VERSION = "v1.2.0"  # the stable C extension API the stand-in is built against


@dataclass(frozen=True)
class Peer:
    """A tool compared with mxd: its pinned requirements and the runner of its phases."""

    name: str
    version: str
    requirements: tuple[str, ...]
    runner: Path  # run by the peer's interpreter, one process per phase
    probe: str  # Python printing a JSON {distribution: version} of what must be importable

    @property
    def folder(self) -> Path:
        return HOME / f"{self.name}-{self.version}"

    @property
    def python(self) -> Path:
        return self.folder / "venv" / "bin" / "python"


@dataclass
class Environment:
    """What the harness knows of a peer before running it."""

    peer: Peer
    missing: str | None = None  # why the peer cannot run at all
    missing_on: dict[str, str] = field(default_factory=dict)  # store -> why not on that store
    packages: dict[str, str] = field(default_factory=dict)
    extension_repository: str | None = None
    installed_now: bool = False

    def why_missing(self, store: str) -> str | None:
        return self.missing or self.missing_on.get(store)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.peer.name,
            "version": self.peer.version,
            "requirements": list(self.peer.requirements),
            "folder": str(self.peer.folder),
            "missing": self.missing,
            "missing_on": self.missing_on,
            "packages": self.packages,
            "installed_now": self.installed_now,
            "duckdb_hashfuncs": "stand-in (benchmarks/peers/hashfuncs.c)"
            if self.extension_repository
            else None,
        }


def _run(cmd: list[str], *, cwd: Path | None = None, timeout: float = 600) -> tuple[bool, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    output = (proc.stdout + proc.stderr).strip()
    return proc.returncode == 0, output


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.splitlines() if not line.startswith("WARNING: Location")]
    return " | ".join(kept[-lines:])


def _installed(peer: Peer) -> dict[str, str] | None:
    """The pinned distributions' versions as the peer's interpreter imports them."""
    if not peer.python.exists():
        return None
    ok, out = _run([str(peer.python), "-c", peer.probe], timeout=120)
    if not ok:
        return None
    try:
        found: dict[str, str] = json.loads(out.splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return found


def _pins(peer: Peer) -> dict[str, str]:
    pins = {}
    for requirement in peer.requirements:
        name, _, version = requirement.partition("==")
        pins[name.split("[")[0].lower()] = version
    return pins


def healthy(peer: Peer) -> dict[str, str] | None:
    """The installed versions when the cached environment matches the pins, else None."""
    ready = peer.folder / "ready.json"
    if not ready.exists():
        return None
    try:
        recorded = json.loads(ready.read_text())
    except ValueError:
        return None
    if recorded.get("requirements") != list(peer.requirements):
        return None
    found = _installed(peer)
    if found is None or any(found.get(k) != v for k, v in _pins(peer).items()):
        return None
    return found


def prepare(peer: Peer, say: Callable[[str], None], *, stores: tuple[str, ...]) -> Environment:
    """The peer's environment, installed if absent or unhealthy; a failure is recorded."""
    env = Environment(peer)
    found = healthy(peer)
    if found is None:
        say(f"peer {peer.name} {peer.version}: installing {' '.join(peer.requirements)} ...")
        shutil.rmtree(peer.folder / "venv", ignore_errors=True)
        (peer.folder / "ready.json").unlink(missing_ok=True)
        peer.folder.mkdir(parents=True, exist_ok=True)
        ok, out = _run([sys.executable, "-m", "venv", str(peer.folder / "venv")])
        if ok:
            pip = [str(peer.python), "-m", "pip", "install", "-q", *peer.requirements]
            ok, out = _run(pip, timeout=INSTALL_TIMEOUT)
        if not ok:
            env.missing = f"install failed: {_tail(out)}"
            return env
        found = _installed(peer)
        if found is None or any(found.get(k) != v for k, v in _pins(peer).items()):
            env.missing = f"installed but not importable at the pinned versions: {found}"
            return env
        record = {"requirements": list(peer.requirements), "packages": found}
        (peer.folder / "ready.json").write_text(json.dumps(record, indent=1))
        env.installed_now = True
    env.packages = found
    if "duckdb" in stores and peer.name == "metaxy":
        repository, why = hashfuncs_stand_in(peer, say)
        if repository is None:
            env.missing_on["duckdb"] = why
        env.extension_repository = repository
    return env


# The DuckDB hashfuncs stand-in
_SELF_TEST = """
import json, sys, duckdb, polars as pl, polars_hash
words = ["", "a", "abc", "x" * 15, "y" * 16, "z" * 31, "w" * 32, "v" * 33, "hé llo", None,
         "frames=s3://bench-media/frames/clip-123.mp4#etag=0123456789abcdef"]
con = duckdb.connect(config={"allow_unsigned_extensions": "true",
                             "extension_directory": "duckdb-extensions"})
con.install_extension("hashfuncs", repository=sys.argv[1])
con.load_extension("hashfuncs")
frame = pl.DataFrame({"s": words})
got = con.execute("select s, xxh32(s)::varchar a, xxh64(s)::varchar b from frame").pl()
want = frame.with_columns(a=pl.col("s").nchash.xxhash32().cast(pl.String),
                          b=pl.col("s").nchash.xxhash64().cast(pl.String))
assert got.equals(want), (got, want)
print("ok")
"""
_PLATFORM = (
    'import duckdb; print(duckdb.__version__, duckdb.execute("pragma platform").fetchone()[0])'
)


def _footer(platform: str, extension_version: str) -> bytes:
    """DuckDB's extension metadata: a WebAssembly-style custom section named
    ``duckdb_signature`` of eight 32-byte fields (last first) and 256 bytes of signature
    (left empty: the extension is loaded with ``allow_unsigned_extensions``)."""

    def text(value: str) -> bytes:
        return value.encode("ascii").ljust(32, b"\0")

    section = bytes([0, 0x93, 0x04, 16]) + b"duckdb_signature" + bytes([0x80, 0x04])
    fields = ["", "", "", "C_STRUCT", extension_version, C_API_VERSION, platform, "4"]
    return section + b"".join(text(f) for f in fields) + b"\0" * 256


def hashfuncs_stand_in(peer: Peer, say: Callable[[str], None]) -> tuple[str | None, str]:
    """Build (or reuse) the stand-in under the peer's folder; (repository name, reason)."""
    source_hash = hashlib.sha256(HASHFUNCS_SOURCE.read_bytes()).hexdigest()[:16]
    marker = peer.folder / "hashfuncs.json"
    if marker.exists() and json.loads(marker.read_text()).get("source") == source_hash:
        return LOCAL_REPOSITORY, ""
    say(f"peer {peer.name}: building the DuckDB hashfuncs stand-in ...")
    ok, out = _run([str(peer.python), "-c", _PLATFORM])
    if not ok:
        return None, f"hashfuncs stand-in: cannot ask duckdb its platform: {_tail(out)}"
    version, platform = out.split()[-2:]
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return None, "hashfuncs stand-in: no C compiler (cc) on PATH"
    build = peer.folder / "build"
    shutil.rmtree(build, ignore_errors=True)
    headers = build / "include"
    headers.mkdir(parents=True)
    sdist = build / "sdist"
    download = [str(peer.python), "-m", "pip", "download", "-q", "--no-deps"]
    download += ["--no-binary", "duckdb", f"duckdb=={version}", "-d", str(sdist)]
    ok, out = _run(download, timeout=INSTALL_TIMEOUT)
    archives = sorted(sdist.glob("duckdb-*.tar.gz")) if ok else []
    if not archives:
        return None, f"hashfuncs stand-in: duckdb {version} sdist not downloaded: {_tail(out)}"
    with tarfile.open(archives[0]) as archive:
        for member in archive.getmembers():
            if member.name.endswith(("/src/include/duckdb.h", "/src/include/duckdb_extension.h")):
                extracted = archive.extractfile(member)
                assert extracted is not None
                (headers / Path(member.name).name).write_bytes(extracted.read())
    if not (headers / "duckdb_extension.h").exists():
        return None, "hashfuncs stand-in: the duckdb sdist has no duckdb_extension.h"
    library = build / "hashfuncs.so"
    compile_cmd = [compiler, "-O3", "-fPIC", "-shared", "-fvisibility=hidden"]
    compile_cmd += ["-DDUCKDB_EXTENSION_NAME=hashfuncs", f"-I{headers}"]
    compile_cmd += ["-o", str(library), str(HASHFUNCS_SOURCE)]
    ok, out = _run(compile_cmd)
    if not ok:
        return None, f"hashfuncs stand-in: compile failed: {_tail(out)}"
    target = peer.folder / "build" / "release" / "repository" / f"v{version}" / platform
    target.mkdir(parents=True, exist_ok=True)
    extension = target / "hashfuncs.duckdb_extension"
    extension.write_bytes(library.read_bytes() + _footer(platform, f"mxd-{source_hash[:8]}"))
    shutil.rmtree(sdist, ignore_errors=True)
    shutil.rmtree(peer.folder / "duckdb-extensions", ignore_errors=True)  # the older build
    ok, out = _run([str(peer.python), "-c", _SELF_TEST, LOCAL_REPOSITORY], cwd=peer.folder)
    if not ok:
        return None, f"hashfuncs stand-in: self-test against polars-hash failed: {_tail(out)}"
    marker.write_text(json.dumps({"source": source_hash, "duckdb": version, "platform": platform}))
    return LOCAL_REPOSITORY, ""
