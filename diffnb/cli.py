"""Command line: ``python -m diffnb`` (also installed as ``diffnb``).

Sub-commands::

    diffnb list                          the experiments, their chapters and job counts per scale
    diffnb run NAME [--scale S] [--dask] [--address A] [--cluster slurm] [--workers N] [--export]
    diffnb cached [NAME] [--scale S]     what the cache holds
    diffnb export NAME [--scale S] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from diffnb import __version__
from diffnb.config import SCALES, ScaleError, get_scale
from diffnb.experiments import REGISTRY, cached_jobs


def _cmd_list(args: argparse.Namespace) -> int:
    print(f"{'experiment':<26} {'chapter':>7} " + " ".join(f"{s:>6}" for s in SCALES) + "  description")
    for name, exp in sorted(REGISTRY.items()):
        counts = " ".join(f"{len(exp.jobs(s)):>6}" for s in SCALES)
        print(f"{name:<26} {exp.chapter:>7} {counts}  {exp.description}")
    print("\ncolumns quick/full/paper: number of jobs at each scale")
    return 0


def _cmd_cached(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else sorted(REGISTRY)
    for name in names:
        jobs = cached_jobs(name, args.scale)
        done = sum(record is not None for _, record in jobs)
        seconds = sum(record["seconds"] for _, record in jobs if record is not None)
        print(f"{name:<26} {done:>4}/{len(jobs):<4} jobs cached at scale {get_scale(args.scale)} ({seconds:.0f} s)")
        if args.name:
            for job, record in jobs:
                print(f"  {'done' if record else '----'}  {json.dumps(job, sort_keys=True)}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from diffnb.sweeps import run_sweep

    options = dict(item.split("=", 1) for item in args.cluster_option)
    summary = run_sweep(
        args.name,
        args.scale,
        executor="dask" if (args.dask or args.address or args.cluster) else "sequential",
        address=args.address,
        cluster=args.cluster,
        n_workers=args.workers,
        cluster_options=options or None,
        progress=not args.quiet,
    )
    print(summary.report())
    if args.export:
        from diffnb.results import export

        files = export(args.name, args.scale)
        print(f"exported {len(files) // 2} jobs to {files[0].parent if files else '(nothing to export)'}")
    return 1 if summary.failed else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from diffnb.results import export

    files = export(args.name, args.scale, args.out)
    if not files:
        print(f"nothing cached for {args.name} at scale {get_scale(args.scale)}; run it first", file=sys.stderr)
        return 1
    print(f"exported {len(files) // 2} jobs to {files[0].parent}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``diffnb`` command line: sub-commands ``list``, ``cached``, ``run`` and ``export``, with their
    options and help texts (``diffnb --help`` also lists the registered experiments)."""
    listing = "\n".join(
        f"  {name:<26} chapter {exp.chapter}: {exp.description}" for name, exp in sorted(REGISTRY.items())
    )
    parser = argparse.ArgumentParser(
        prog="diffnb",
        description=f"Run the experiments behind the book (diffnb {__version__}).",
        epilog=f"experiments:\n{listing}\n\nexample: diffnb run {min(REGISTRY, default='NAME')} --scale full --dask",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments").set_defaults(func=_cmd_list)

    scale_help = f"one of {', '.join(SCALES)} (default: $DIFFNB_SCALE or quick)"
    cached = sub.add_parser("cached", help="show what the cache holds")
    cached.add_argument("name", nargs="?", choices=sorted(REGISTRY))
    cached.add_argument("--scale", help=scale_help)
    cached.set_defaults(func=_cmd_cached)

    run = sub.add_parser("run", help="run an experiment's jobs (cached jobs are skipped)")
    run.add_argument("name", choices=sorted(REGISTRY))
    run.add_argument("--scale", help=scale_help)
    run.add_argument("--dask", action="store_true", help="run the jobs on a local Dask cluster")
    run.add_argument("--address", help="scheduler address of a running Dask cluster, e.g. tcp://host:8786")
    run.add_argument("--cluster", choices=["slurm", "pbs", "sge", "lsf", "htcondor"], help="dask-jobqueue cluster")
    run.add_argument(
        "--cluster-option", action="append", default=[], metavar="KEY=VALUE", help="passed to the jobqueue cluster"
    )
    run.add_argument("--workers", type=int, help="local workers (default 2) or batch jobs (default 1)")
    run.add_argument("--export", action="store_true", help="export the results to results/ afterwards")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)

    export = sub.add_parser("export", help="write cached results as .npz + .json under results/")
    export.add_argument("name", choices=sorted(REGISTRY))
    export.add_argument("--scale", help=scale_help)
    export.add_argument("--out", help="folder (default: results/ at the repository top, or $DIFFNB_RESULTS)")
    export.set_defaults(func=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m diffnb`` and ``diffnb``."""
    args = build_parser().parse_args(argv)
    try:
        get_scale(getattr(args, "scale", None))
        return args.func(args)
    except (ScaleError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
