"""hrdash's own Dash app with another ``assets/hrdash.js``: the page of an earlier revision
(``--rev``, read with ``git show REV:assets/hrdash.js``) or a file (``--js``), everything else
(layout, callbacks, the other assets) from the working tree. The benchmark uses it to measure a
change of the page's per-reading path against the code before it, in the same run, on the same
bridge. Benchmark only: hrdash itself has no such switch.

``python -m benchmarks.peers.hrdash_rev --port 8053 --bridge ws://127.0.0.1:8765/ws --rev db631b2``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.common import ROOT
from benchmarks.peers._common import parse_args


def script(rev: str | None, path: str | None) -> str:
    """The text of ``assets/hrdash.js`` at git revision ``rev``, or of the file ``path``."""
    if path:
        return Path(path).read_text()
    out = subprocess.run(
        ["git", "show", f"{rev}:assets/hrdash.js"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def main() -> None:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--rev", help="git revision whose assets/hrdash.js to serve")
        parser.add_argument("--js", help="a hrdash.js file to serve instead")

    args = parse_args(__doc__ or "", extra)
    if not (args.rev or args.js):
        raise SystemExit("hrdash_rev: give --rev REV or --js FILE")
    text = script(args.rev, args.js)
    assets = Path(tempfile.mkdtemp(prefix="hrdash-rev-assets-"))
    try:
        from hrdash import webapp

        shutil.copytree(webapp.ASSETS, assets, dirs_exist_ok=True)
        (assets / "hrdash.js").write_text(text)
        webapp.ASSETS = assets
        # The page connects to the benchmark's bridge (absolute URL: used as is, plus overlap=1).
        os.environ["HRDASH_PUBLIC_WS_URL"] = args.bridge
        app = webapp.create_app()
        app.run(host="127.0.0.1", port=args.port, debug=False)
    finally:
        shutil.rmtree(assets, ignore_errors=True)


if __name__ == "__main__":
    main()
