"""`python -m t2ibench.compat install`: register the start-up hooks of the compatibility fixes."""

import sys
import sysconfig
from pathlib import Path

from t2ibench.compat import torchvision_ops


def main(argv: list[str]) -> int:
    if argv[:1] != ["install"]:
        print("usage: python -m t2ibench.compat install", file=sys.stderr)
        return 2
    site = Path(sysconfig.get_paths()["purelib"])
    pth = torchvision_ops.write_pth(site)
    print(f"registered {pth}")
    from t2ibench.compat import hpsv2_files

    for line in hpsv2_files.repair():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
