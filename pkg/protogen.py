"""Generate the protobuf / gRPC Python modules of the wire contract (``make proto``).

Runs ``grpc_tools.protoc`` on every ``proto/*.proto`` of the repository and writes
``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` into an output directory. protoc
imports a dependency by its path relative to the ``-I`` root (``import
connect_ext_pb2 as connect__ext__pb2``); those imports are rewritten into
package-relative ones (``from . import connect_ext_pb2 as connect__ext__pb2``) so
the generated modules import each other inside ``gim.pkg.pb``.

``python -m gim.pkg.protogen`` regenerates into ``pkg/pb``. grpcio-tools is a
development dependency only, so it is imported when generating, not at import time.
"""

from __future__ import annotations

import pathlib
import re
import sys
from importlib import resources

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = REPO_ROOT / "proto"
DEFAULT_OUT_DIR = REPO_ROOT / "pkg" / "pb"

GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


class ProtocError(RuntimeError):
    """protoc reported an error (its message went to stderr)."""


def proto_files(proto_dir: pathlib.Path = PROTO_DIR) -> list[pathlib.Path]:
    """Return the ``.proto`` files of ``proto_dir``, sorted by name."""
    return sorted(proto_dir.glob("*.proto"))


def is_generated(path: pathlib.Path) -> bool:
    """Tell whether ``path`` is named like a file that :func:`generate` writes."""
    return path.name.endswith(GENERATED_SUFFIXES)


def _rewrite_imports(text: str, modules: set[str]) -> str:
    """Turn ``import X_pb2 as Y`` of our own modules into ``from . import X_pb2 as Y``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1) not in modules:
            return match.group(0)
        return f"from . import {match.group(1)} as {match.group(2)}"

    return re.sub(r"^import (\w+) as (\w+)$", replace, text, flags=re.MULTILINE)


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Generate the modules of every ``proto/*.proto`` into ``out_dir``.

    Previously generated files in ``out_dir`` (named ``*_pb2.py``, ``*_pb2.pyi``,
    ``*_pb2_grpc.py``) are removed first, so a deleted ``.proto`` leaves nothing
    behind; other files (``__init__.py``) are kept. Returns the written files,
    sorted. Raises :class:`ProtocError` if protoc fails.
    """
    from grpc_tools import protoc  # development dependency (grpcio-tools)

    protos = proto_files()
    if not protos:
        raise ProtocError(f"no .proto files in {PROTO_DIR}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in sorted(out_dir.iterdir()):
        if old.is_file() and is_generated(old):
            old.unlink()

    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(proto) for proto in protos),
    ]
    if protoc.main(args) != 0:
        raise ProtocError(f"protoc failed on {PROTO_DIR} (see its message above)")

    modules = {f"{proto.stem}_pb2" for proto in protos}
    written = sorted(path for path in out_dir.iterdir() if path.is_file() and is_generated(path))
    for path in written:
        text = path.read_text(encoding="utf-8")
        rewritten = _rewrite_imports(text, modules)
        if rewritten != text:
            path.write_text(rewritten, encoding="utf-8")
    return written


def main() -> int:
    """Regenerate into ``pkg/pb`` and list the written files."""
    for path in generate(DEFAULT_OUT_DIR):
        print(path.relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
