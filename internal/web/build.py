"""`make web`: the chat page's sources (web/) -> the files the server sends (static/).

No Node and no minifier: `app.js` is the scripts of web/js/ in `SCRIPTS` order inside one
strict-mode function, and index.html and the stylesheet are copied. The result depends on
the sources alone (a test rebuilds it and compares it with the committed files).
"""

from __future__ import annotations

import sys
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parents[2] / "web"
STATIC_DIR = Path(__file__).resolve().parent / "static"
SCRIPTS = ("proto.js", "api.js", "connection.js", "app.js")  # each uses only what comes before it or at run time
HEADER = "// Built by `make web` from web/ (gim.internal.web.build): edit the sources, not this file.\n"


def outputs(source: Path = SOURCE_DIR) -> dict[str, bytes]:
    """File name -> content of every static file."""
    parts = [HEADER, '(() => {\n"use strict";\n']
    for name in SCRIPTS:
        parts.append(f"\n// ---- web/js/{name}\n")
        parts.append((source / "js" / name).read_text(encoding="utf-8"))
    parts.append("})();\n")
    return {
        "index.html": (source / "index.html").read_bytes(),
        "app.css": (source / "style.css").read_bytes(),
        "app.js": "".join(parts).encode("utf-8"),
    }


def write(target: Path = STATIC_DIR, source: Path = SOURCE_DIR) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in outputs(source).items():
        path = target / name
        path.write_bytes(content)
        written.append(path)
    return written


def main() -> None:
    for path in write():
        print(f"wrote {path}", file=sys.stdout)


if __name__ == "__main__":
    main()
