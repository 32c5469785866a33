"""Every benchmark in turn (`./dev bench`); each prints its own table. About 33 minutes.

Pass `--quick` for short windows (a few minutes in all); the figures are then noisier.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    runs = [
        ["validate.py"],
        ["agent.py"] + (["--steady", "60"] if quick else []),
        ["desktop.py"] + (["--quick"] if quick else []),
        ["commands.py"] + (["--count", "200", "--junk-seconds", "5"] if quick else []),
        ["rules.py"] + (["--window", "20"] if quick else []),
        ["proxmox.py"] + (["--quick"] if quick else []),
        ["console.py"] + (["--quick"] if quick else []),
        ["editor.py"] + (["--bursts", "6"] if quick else []),
    ]
    failed = 0
    for run in runs:
        print(f"\n=== bench/{run[0]} {' '.join(run[1:])}".rstrip(), flush=True)
        failed |= subprocess.call([sys.executable, str(HERE / run[0]), *run[1:]]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
