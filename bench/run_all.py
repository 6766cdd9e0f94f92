"""Run every bench/bench_*.py in turn; each prints its own figures and ratios (see RESULTS.md)."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    print(f"# gpuprep benchmarks, {time.strftime('%Y-%m-%d')}, {platform.node()}, "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    # gpuprep as pip installs it: byte-compiled. A checkout where PYTHONDONTWRITEBYTECODE is set (this
    # workplace sets it) would otherwise compile every changed module again in every timed process.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "gpuprep")], check=True)
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n## {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], check=False).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
