"""A trained model, found by its DVC hash and checked byte for byte before anything loads it.

Which model: `champion` (registry/<domain>.json), `v<N>` (a promotion in its log) or `candidate`
(the workspace's trained outputs, by dvc.lock). Where: the DVC cache, or the DVC remote through a
temporary `.dvc` file naming only that hash (`dvc fetch`). Pickles and torch checkpoints are code
to whoever opens them, so every file is copied out of the cache and its MD5 compared with the
directory listing, whose own MD5 is the recorded hash: a tampered, truncated or half-pulled model is
refused in one line before it is ever loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from domains.common.champion import read_registry, train_md5
from domains.common.errors import PipelineError

TRAINED_PARAMS = "trained_params.json"  # the domain's params the model was trained with
PROFILE = "reference_profile.json"  # the drift reference, built from the training split
T = TypeVar("T")


@dataclass(frozen=True)
class ModelRef:
    domain: str
    version: str  # "v3", or "candidate"
    model: str  # which of the domain's trained models scores
    md5: str  # DVC hash of data/<domain>/train (a '.dir' hash)


def resolve(root: Path, domain: str, selector: str, candidate_model: str) -> ModelRef:
    """`champion`, `candidate` or `v<N>` -> the model and its DVC hash; one line when there is none."""
    registry = read_registry(root, domain)
    if selector == "champion":
        champion = registry["champion"]
        if champion is None:
            raise PipelineError(
                f"{domain}: no champion yet: run `aiflow run {domain}` and "
                f"`aiflow champion promote {domain}` (or score `--model candidate`)"
            )
        return _from_record(domain, champion)
    if selector == "candidate":
        md5 = train_md5(root, domain)
        if not md5:
            raise PipelineError(f"{domain}: no trained model in dvc.lock: run `aiflow run {domain}` first")
        return ModelRef(domain, "candidate", candidate_model, md5)
    match = re.fullmatch(r"v(\d+)", selector)
    if not match:
        raise PipelineError(f"--model: expected champion, candidate or v<N>, got '{selector}'")
    for event in registry["events"]:
        if event["event"] == "promote" and event["version"] == int(match.group(1)):
            return _from_record(domain, event)
    versions = ", ".join(f"v{e['version']}" for e in registry["events"] if e["event"] == "promote") or "none"
    raise PipelineError(f"{domain}: no model {selector} in registry/{domain}.json (versions: {versions})")


def _from_record(domain: str, record: dict) -> ModelRef:
    if not record.get("train_md5"):
        raise PipelineError(f"{domain}: champion v{record['version']} has no recorded DVC hash; promote it again")
    return ModelRef(domain, f"v{record['version']}", record["model"], record["train_md5"])


def materialise(root: Path, ref: ModelRef, dest: Path) -> None:
    """Copy the model's files from the DVC cache (fetched from the remote when missing) into `dest`, verified."""
    cache = _cache_dir(root)
    listing_file = _object(cache, ref.md5)
    if not listing_file.is_file() or not _all_present(cache, listing_file):
        _fetch(root, ref)
    if not listing_file.is_file():
        raise PipelineError(
            f"{ref.domain} {ref.version}: model {ref.md5} is neither in the DVC cache nor on the "
            f"remote (run `dvc pull` where it was trained, or `dvc push` there first)"
        )
    listing_bytes = listing_file.read_bytes()
    if hashlib.md5(listing_bytes).hexdigest() != ref.md5.removesuffix(".dir"):
        raise PipelineError(
            f"{ref.domain} {ref.version}: the model's file list in the DVC cache does not match "
            f"its recorded hash {ref.md5}: refusing to load it"
        )
    for entry in json.loads(listing_bytes):
        source, target = _object(cache, entry["md5"]), dest / entry["relpath"]
        if not source.is_file():
            raise PipelineError(
                f"{ref.domain} {ref.version}: {entry['relpath']} is missing from the DVC cache "
                f"and the remote: refusing a half-pulled model"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        if _md5(target) != entry["md5"]:  # the copy is what gets loaded: check the copy
            raise PipelineError(
                f"{ref.domain} {ref.version}: {entry['relpath']} does not match its recorded hash "
                f"(altered or truncated): refusing to load it"
            )


def materialise_file(root: Path, domain: str, version: str, md5: str, dest: Path) -> None:
    """Copy one file recorded by its DVC hash (a champion's predictions) out of the cache or remote, verified."""
    cache = _cache_dir(root)
    if not _object(cache, md5).is_file():
        _fetch(root, ModelRef(domain, version, "", md5))
    if not _object(cache, md5).is_file():
        raise PipelineError(f"{domain} {version}: {dest.name} {md5} is neither in the DVC cache nor on the remote")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_object(cache, md5), dest)
    if _md5(dest) != md5:
        raise PipelineError(f"{domain} {version}: {dest.name} does not match its recorded hash (altered or truncated)")


def _cache_dir(root: Path) -> Path:
    """The DVC cache's MD5 object folder (honours `dvc cache dir`)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return Path(repo.cache.local.path)


def _object(cache: Path, md5: str) -> Path:
    return cache / md5[:2] / md5[2:]


def _all_present(cache: Path, listing_file: Path) -> bool:
    try:
        return all(_object(cache, e["md5"]).is_file() for e in json.loads(listing_file.read_bytes()))
    except ValueError:
        return True  # not a listing: the hash check says so


def _fetch(root: Path, ref: ModelRef) -> None:
    """`dvc fetch` of exactly this hash, through a throwaway .dvc file (the workspace is not touched)."""
    from domains.common.dvc import dvc

    with tempfile.TemporaryDirectory(prefix=".aiflow-fetch-", dir=root) as tmp:
        pointer = Path(tmp) / "model.dvc"
        pointer.write_text(f"outs:\n- md5: {ref.md5}\n  path: model\n  hash: md5\n")
        try:
            dvc(root, "fetch", str(pointer.relative_to(root)), capture=True, timeout=600)
        except subprocess.TimeoutExpired:
            pass  # what arrived is checked like the rest


def _md5(file: Path) -> str:
    digest = hashlib.md5()
    with file.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_LOADED: dict[tuple[str, str, int, int, int], object] = {}
_LOADED_LOCK = threading.Lock()  # the endpoint warms a new champion on one thread while another scores
_LOADED_MAX = 16


def cached_load(file: Path, loader: Callable[[Path], T]) -> T:
    """`loader(file)`, kept for the next call with the same loader while the file is unchanged (path, inode,
    size, mtime).

    A long-lived scorer (the HTTP endpoint) would otherwise unpickle its model for every request. Only
    files under a folder `materialise` filled and verified are passed here, and nothing writes to them.
    """
    stat = file.stat()
    key = (f"{loader.__module__}.{loader.__qualname__}", str(file), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _LOADED_LOCK:
        if key in _LOADED:
            return _LOADED[key]  # type: ignore[return-value]
    loaded = loader(file)
    with _LOADED_LOCK:
        if len(_LOADED) >= _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))  # the oldest: a replaced champion's files
        _LOADED[key] = loaded
    return loaded
