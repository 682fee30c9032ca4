"""`mathtune push`: upload a model directory (an export, a train run's adapter or merged model) to
the Hugging Face Hub in one commit, with a model card; offline or logged out fails before anything
is created.

    mathtune push out/x-gguf yourname/smollm2-gsm8k-gguf
    mathtune push runs/train/x/merged yourname/smollm2-gsm8k --private
"""

from __future__ import annotations

import argparse

HELP = "upload a model directory to the Hugging Face Hub (one commit, with a model card)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", help="the directory to upload (an export, adapter or merged model)")
    p.add_argument("repo_id", help="the Hub model repo, OWNER/NAME (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--message", help="commit message")


def run(args: argparse.Namespace) -> int:
    from ..export import push_folder

    url = push_folder(args.directory, args.repo_id, private=args.private, commit_message=args.message)
    print(f"pushed {args.directory} to {url}")
    return 0
