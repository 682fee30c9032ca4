"""Upload a model directory to the Hugging Face Hub, with a model card, all or nothing.

    from mathtune.export.push import push_folder
    url = push_folder("runs/export/x", "me/smollm2-gsm8k")        # mathtune push DIR REPO_ID

Order of work, so a failure leaves nothing half-way:
1. check the folder and the repo id locally; refuse at once when HF_HUB_OFFLINE is set;
2. `whoami()`: offline or not logged in fails here, before anything exists on the Hub;
3. create the repo if it does not exist yet;
4. ONE commit holding every file (plus a generated README.md when the folder has no card): the Hub
   applies a commit whole or not at all. If that commit fails on a repo created in step 3, the
   empty repo is deleted again.
Used by `mathtune push` and by the train recipe's `run.push_to_hub`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from ..models import HUB_ID
from .card import fallback_card

_LOGIN_HINT = "log in with `hf auth login` (or set HF_TOKEN to a token with write access), then run the same command again"


def folder_files(folder: Path) -> list[Path]:
    """Every file to upload (hidden files and folders, such as `.cache` or partial writes, excluded)."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _failure(repo_id: str, e: Exception) -> MathtuneError:
    name = type(e).__name__
    first = (str(e).splitlines() or [name])[0][:200]
    status = getattr(getattr(e, "response", None), "status_code", None)
    if name == "LocalTokenNotFoundError" or status in (401, 403):
        return MathtuneError(f"cannot push to {repo_id!r}: not logged in to the Hugging Face Hub, or the token "
                             f"cannot write there ({first}); nothing was uploaded", _LOGIN_HINT)
    offline = name == "OfflineModeIsEnabled" or "connect" in name.lower() or "timeout" in name.lower()
    if status is None and (offline or isinstance(e, OSError)):
        return MathtuneError(f"cannot push to {repo_id!r}: the Hugging Face Hub is unreachable ({first}); nothing was uploaded",
                             "check the network connection (and that HF_HUB_OFFLINE is not set), then run the same command again")
    return MathtuneError(f"pushing to {repo_id!r} failed: {first}; nothing was uploaded",
                         "check the repo id and your permissions on it, then run the same command again")


def _check_offline(repo_id: str) -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise MathtuneError(f"cannot push to {repo_id!r}: HF_HUB_OFFLINE is set; nothing was uploaded",
                            "unset HF_HUB_OFFLINE (and check the network), then run the same command again")


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str | None = None, api: Any = None) -> str:
    """Upload `folder` to the model repo `repo_id` in one commit; returns the repo URL."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MathtuneError(f"nothing to push: {folder} is not a directory", "pass the directory an export or train run wrote")
    files = folder_files(folder)
    if not files:
        raise MathtuneError(f"nothing to push: {folder} holds no files", "pass the directory an export or train run wrote")
    if not HUB_ID.fullmatch(repo_id):
        raise MathtuneError(f"not a Hub repo id: {repo_id!r}", "use OWNER/NAME, e.g. yourname/smollm2-gsm8k")
    _check_offline(repo_id)
    from huggingface_hub import CommitOperationAdd, HfApi

    api = api if api is not None else HfApi(token=token)
    try:
        api.whoami()
        created = not api.repo_exists(repo_id)
        if created:
            api.create_repo(repo_id, private=private, exist_ok=True)
    except Exception as e:  # offline, no token, no permission: nothing exists yet
        raise _failure(repo_id, e) from None
    ops = [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p)) for p in files]
    if not (folder / "README.md").is_file():
        ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=fallback_card(folder, repo_id).encode()))
    try:
        api.create_commit(repo_id=repo_id, operations=ops,
                          commit_message=commit_message or f"Upload {folder.name} with mathtune")
    except Exception as e:
        if created:
            with contextlib.suppress(Exception):
                api.delete_repo(repo_id)
        raise _failure(repo_id, e) from None
    return f"https://huggingface.co/{repo_id}"
