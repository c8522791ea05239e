"""`python -m sgdexp.report PATH [--out DIR] [--wandb]`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sgdexp.report",
                                     description="Figures and an HTML report of a run or a multirun directory.")
    parser.add_argument("path", type=Path, help="a run's output directory or a multirun directory")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: PATH itself)")
    parser.add_argument("--wandb", action="store_true", help="also publish it as a W&B Report (online only)")
    args = parser.parse_args(argv)
    from sgdexp.report.build import build_report

    from sgdexp.cli_checks import unmakeable_dir

    why = unmakeable_dir(args.out) if args.out is not None else None
    if why:
        why = "a file is in its place" if why.endswith("is a file") else why
        print(f"sgdexp.report: error: --out {args.out} is not allowed: a directory ({why})", file=sys.stderr)
        return 2
    try:
        report = build_report(args.path, args.out)
    except FileNotFoundError as err:
        print(f"sgdexp.report: error: {err}", file=sys.stderr)
        return 2
    except PermissionError as err:
        print(f"sgdexp.report: error: cannot write the report: {err}", file=sys.stderr)
        return 1
    print(f"report: {report}")
    if args.wandb:
        from sgdexp.report.wandb_report import publish

        print(publish(args.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
