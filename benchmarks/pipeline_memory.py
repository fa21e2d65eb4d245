"""Memory benchmark: peak RSS of ``dfx-infer`` on a small and a large folder tree must be about the same.

Builds folder trees of N files (folders of 1,000 hard links to the given images, so no disk is spent), scans
each with :func:`dfx.engine.scan.scan` in a fresh process, and records that process's peak RSS. (Decode worker
processes are the fork server's children, not this process's, so their memory is not in the figure; each holds
one image at a time besides the shared buffers, which the main process's figure already includes.) Run from the
repository root::

    python -m dfx.benchmarks.pipeline_memory --data ../shared/data/mesonet-deepfake/validate \\
        --counts 1000,100000 --out benchmarks/results/pipeline-memory-cpu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from dfx.benchmarks.report import save_result
from dfx.engine.decode_pool import DECODE_MODES
from dfx.engine.inputs import list_images

__all__ = ["build_tree", "peak_rss", "markdown"]

_CHILD = """
import json, resource, sys
from dfx.engine.scan import scan
if __name__ == "__main__":
    s = scan([sys.argv[1]], output=sys.argv[2], recursive=True, progress=False, decode=sys.argv[3], faces="off")
    print(json.dumps({"rows": s.scored + s.failed, "seconds": s.seconds,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build_tree(files: list[Path], n: int, root: Path, per_folder: int = 1000) -> Path:
    """``root`` with ``n`` files in folders of ``per_folder``, hard links to ``files`` in turn."""
    for i in range(n):
        folder = root / f"{i // per_folder:05d}"
        if i % per_folder == 0:
            folder.mkdir(parents=True)
        src = files[i % len(files)]
        dst = folder / f"{i:07d}{src.suffix}"
        try:
            os.link(src, dst)
        except OSError:  # another file system: a symlink reads the same
            dst.symlink_to(src.resolve())
    return root


def peak_rss(tree: Path, output: Path, decode: str) -> dict:
    """Scans ``tree`` in a fresh Python process; its row count, time and peak RSS."""
    done = subprocess.run([sys.executable, "-c", _CHILD, str(tree), str(output), decode], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(result: dict, n_images: int) -> str:
    """The runs as a Markdown table, each peak against the smallest run of its decode mode."""
    env = result["machine"]
    lines = [f"Machine: {env['cpu']}, {env['cores']} cores. Bundled model, default batch; files are hard links to "
             f"{n_images} images of {result['data']} in folders of 1,000.", "",
             "| files | decode | rows | seconds | peak RSS MiB (main process) | vs the smallest run |",
             "|---|---|---|---|---|---|"]
    smallest: dict[str, float] = {}
    for r in result["runs"]:
        base = smallest.setdefault(r["decode"], r["peak_rss_mib"])
        lines.append(f"| {r['files']:,} | {r['decode']} | {r['rows']:,} | {r['seconds']:.0f} | "
                     f"{r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] / base:.2f}× |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Command-line entry: writes ``OUT.json`` and ``OUT.md``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--counts", default="1000,100000")
    p.add_argument("--decode", default="threads,processes", help=f"comma-separated, of {', '.join(DECODE_MODES)}")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/pipeline-memory-cpu"))
    args = p.parse_args()
    files = list_images(args.data)
    from dfx.benchmarks.bench import _environment

    result = {"machine": _environment(), "data": str(args.data), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(c) for c in args.counts.split(",")):
            tree = build_tree(files, n, Path(tmp) / f"tree{n}")
            for mode in args.decode.split(","):
                r = peak_rss(tree, Path(tmp) / f"scores-{n}-{mode}.csv", mode) | {"files": n, "decode": mode}
                result["runs"].append(r)
                print(json.dumps(r), flush=True)
    save_result(args.out, result, markdown(result, len(files)))


if __name__ == "__main__":
    main()
