"""Shrink the carried wheels to what the H200 image needs, and report the total size.

Two wheels do not fit the 64 MiB carry as published (measured with prepare.sh):
bitsandbytes 0.50.2 (~41 MiB: one CUDA library per toolkit, 11.8 to 13.2, plus ROCm) and
unsloth 2026.10.9 (~27 MiB: its ``studio`` web app and CLI ride along with the library).
The GPU image runs torch 2.11+cu130, so bitsandbytes keeps only its CUDA 13.0 library
(and the CPU one), and unsloth keeps only the ``unsloth`` package. RECORD is rewritten
so pip installs the slim wheel like any other.

    python3 bench/gpu/slim_wheels.py bench/gpu/wheels [--limit-mib 64] [--tree-mib 2]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys
import zipfile
from pathlib import Path

# wheel name prefix -> predicate: keep this member?
KEEP = {
    "bitsandbytes-": lambda n: not re.search(r"libbitsandbytes_(cuda(?!130)\d+|rocm\d+)", n),
    "unsloth-": lambda n: n.startswith(("unsloth/", "unsloth-")),
}
MIB = 1 << 20


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def slim(wheel: Path, keep) -> tuple[int, int]:
    """Rewrite ``wheel`` in place with only the members ``keep`` accepts; (old, new) bytes."""
    old = wheel.stat().st_size
    tmp = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        lines = []
        for info in src.infolist():
            if info.filename == record_name or not keep(info.filename):
                continue
            data = src.read(info)
            dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
            lines.append(_record_line(info.filename, data))
        lines.append(f"{record_name},,")
        dst.writestr(record_name, "\n".join(lines) + "\n")
    tmp.replace(wheel)
    return old, wheel.stat().st_size


def report(folder: Path, limit_mib: float, tree_mib: float) -> int:
    wheels = sorted(folder.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels)
    for w in sorted(wheels, key=lambda w: -w.stat().st_size):
        print(f"  {w.stat().st_size / MIB:7.2f} MiB  {w.name}")
    room = limit_mib - tree_mib
    print(f"  {total / MIB:7.2f} MiB  total of {len(wheels)} wheels; carry limit {limit_mib:.0f} MiB "
          f"minus {tree_mib:.1f} MiB of working tree = {room:.1f} MiB")
    if total / MIB > room:
        print("  DOES NOT FIT: drop a wheel (bench/README.md says which arms then cannot run)")
        return 1
    print("  fits")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--limit-mib", type=float, default=64.0)
    ap.add_argument("--tree-mib", type=float, default=0.0, help="Size of the working tree that travels too.")
    ap.add_argument("--no-slim", action="store_true", help="Only report the sizes.")
    args = ap.parse_args(argv)
    if not args.no_slim:
        for wheel in sorted(args.folder.glob("*.whl")):
            keep = next((k for prefix, k in KEEP.items() if wheel.name.startswith(prefix)), None)
            if keep is not None:
                old, new = slim(wheel, keep)
                print(f"  slimmed {wheel.name}: {old / MIB:.1f} -> {new / MIB:.1f} MiB")
    return report(args.folder, args.limit_mib, args.tree_mib)


if __name__ == "__main__":
    sys.exit(main())
