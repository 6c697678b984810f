"""Hugging Face hub checkpoints: the local cache first, a download on first use, and clear failures.

``hf:ORG/NAME`` behaves as in transformers, sentence-transformers and clip-retrieval: a checkpoint
that is not cached is downloaded once (huggingface_hub's progress bars, resumable ``.incomplete``
files) and read from the cache afterwards, with no network call. Two things differ on purpose:

* Only the files a PyTorch load needs are fetched (configs, tokenizer, one weight format): hub
  repositories often hold the same weights three times (safetensors, ``.bin``, TF, Flax, ONNX).
* Every network step has a short timeout. huggingface_hub's API calls have none by default, so an
  unreachable or black-holed endpoint would hang a command forever; here it fails in seconds with a
  one-line error that says how to work offline.

Offline mode: ``HF_HUB_OFFLINE=1`` (read at call time, so ``itr --offline`` can set it) reads only
the cache.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._utils import require
from ..errors import InputError

DEFAULT_TIMEOUT_S = 5.0

# Weight formats transformers' PyTorch path reads, best first; a repository's other copies are skipped.
_WEIGHT_PATTERNS = (("*.safetensors", "*.safetensors.index.json"), ("*.bin", "*.bin.index.json"))
# What else a load needs: configs, tokenizers, processors (never weights in another framework).
_SIDE_PATTERNS = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.spm", "*.py")
_NOT_NEEDED = ("onnx/*", "openvino/*", "coreml/*", "tflite/*", "*.onnx*", "*.h5", "*.msgpack", "*.ot",
               "*.gguf", "*.mlmodel", "training_args.bin", "optimizer.*", "scheduler.*", "rng_state*")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """Whether the hub must not be contacted (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``, read now)."""
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE"))


def hub_cache_dir() -> Path:
    """The hub cache, from the environment at call time (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _timeout() -> float:
    try:
        return max(0.1, float(os.environ.get("ITR_HUB_TIMEOUT", DEFAULT_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def files_to_fetch(repo_files: list[str]) -> list[str]:
    """The files of a repository a PyTorch load reads: side files plus one weight format."""
    usable = [f for f in repo_files if not any(fnmatch.fnmatch(f, p) for p in _NOT_NEEDED)]
    chosen = [f for f in usable if any(fnmatch.fnmatch(f, p) for p in _SIDE_PATTERNS)]
    for patterns in _WEIGHT_PATTERNS:
        weights = [f for f in usable if any(fnmatch.fnmatch(f, p) for p in patterns)]
        if weights:
            return sorted(set(chosen) | set(weights))
    return sorted(set(chosen))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _cached(hub: Any, repo: str, revision: str | None) -> Path | None:
    """The cached snapshot, if it holds everything a load needs (an interrupted download does not)."""
    storage = hub_cache_dir() / ("models--" + repo.replace("/", "--"))
    ref = storage / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else (revision or "")
    snapshot = storage / "snapshots" / commit
    if not commit or not snapshot.is_dir():
        return None
    # Only the files ITR fetched must be there: the weight format present, never the others.
    present = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*")]
    weights = next((pats for pats in _WEIGHT_PATTERNS
                    if any(fnmatch.fnmatch(f, p) for f in present for p in pats)), None)
    if weights is None:
        return None
    try:
        return Path(hub.snapshot_download(repo, revision=revision, local_files_only=True,
                                          cache_dir=str(hub_cache_dir()),
                                          allow_patterns=list(_SIDE_PATTERNS + weights),
                                          ignore_patterns=list(_NOT_NEEDED)))
    except Exception:  # noqa: BLE001 - "not cached" or "incomplete" come as several exception types
        return None


def resolve_hub_model(spec: str, repo: str, *, offline: bool | None = None) -> Path:
    """The local folder of hub model ``repo`` (``ORG/NAME[@REVISION]``), downloading it if needed.

    Raises:
        InputError: offline and not cached, hub unreachable, no such repository, or no usable files.
    """
    hub = require("huggingface_hub", "hf", f"model '{spec}'")
    repo, _, revision_text = repo.partition("@")
    revision = revision_text or None
    cached = _cached(hub, repo, revision)
    if cached is not None:
        return cached
    offline = hub_offline() if offline is None else offline
    if offline:
        raise InputError(
            f"model '{spec}' is not in the local Hugging Face cache ({hub_cache_dir()}) and the hub is "
            f"off (--offline or HF_HUB_OFFLINE=1): run once without it to download, or on a connected "
            f"machine 'huggingface-cli download {repo}' (or save_pretrained to a folder and use local:PATH)")
    endpoint, timeout = hub_endpoint(), _timeout()
    api = hub.HfApi(endpoint=endpoint)
    try:
        info = api.model_info(repo, revision=revision, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - mapped to one line below
        raise InputError(_hub_failure(spec, repo, endpoint, exc)) from exc
    siblings = [s.rfilename for s in (info.siblings or [])]
    wanted = files_to_fetch(siblings)
    if not any(f.endswith((".safetensors", ".bin")) for f in wanted):
        raise InputError(f"model '{spec}': the hub repository {repo} has no PyTorch weights "
                         f"(.safetensors or .bin) among its {len(siblings)} files")
    try:  # by the name asked for, not info.sha: the hub then records refs/<name>, which the cache check reads
        folder = hub.snapshot_download(repo, revision=revision, allow_patterns=wanted, endpoint=endpoint,
                                       etag_timeout=timeout, cache_dir=str(hub_cache_dir()))
    except Exception as exc:  # noqa: BLE001 - mapped to one line below
        raise InputError(_hub_failure(spec, repo, endpoint, exc) + " (a re-run resumes the download)") from exc
    return Path(folder)


def _hub_failure(spec: str, repo: str, endpoint: str, exc: BaseException) -> str:
    name = type(exc).__name__
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if name in ("RepositoryNotFoundError",) or status == 404:
        return f"model '{spec}': no repository {repo} on {endpoint} (check the name; private ones need HF_TOKEN)"
    if name == "GatedRepoError" or status in (401, 403):
        return f"model '{spec}': {repo} on {endpoint} needs access: accept its terms on the hub and set HF_TOKEN"
    return (f"model '{spec}' is not cached and the hub at {endpoint} cannot be reached ({_first_line(exc)}); "
            "check the network or HF_ENDPOINT, or work offline (--offline) with a cached or local:PATH model")


@dataclass(frozen=True, slots=True)
class CachedModel:
    """One model repository in the local hub cache, and what ITR can do with it."""

    repo: str
    revisions: int
    size_bytes: int
    folder: Path
    kind: str  # "dual encoder", "re-ranker", or what it is not
    spec: str  # the string to pass to --model / --rerank-model, or "" when ITR cannot use it
    needs: str  # what must be installed or fetched to use it ("" when nothing)


def _classify(folder: Path) -> tuple[str, bool]:
    """(what the checkpoint is, whether ITR loads it) from its config.json, without importing torch."""
    import json

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no config.json (incomplete download?)", False
    archs = [str(a) for a in config.get("architectures") or []]
    model_type = str(config.get("model_type", ""))
    if any("ForImageTextRetrieval" in a for a in archs):
        return "re-ranker", True
    if model_type in ("clip", "siglip", "siglip2", "chinese_clip", "altclip", "metaclip_2") or (
            "vision_config" in config and "text_config" in config):
        return "dual encoder", True
    return f"not an image-text model ({model_type or 'unknown type'})", False


def list_cached_models() -> list[CachedModel]:
    """The model repositories in the hub cache (``itr models --cached``)."""
    hub = require("huggingface_hub", "hf", "listing cached models")
    cache = hub_cache_dir()
    if not cache.is_dir():
        return []
    try:
        info = hub.scan_cache_dir(cache)
    except Exception as exc:  # noqa: BLE001 - a corrupt cache is reported, not a crash
        raise InputError(f"cannot read the Hugging Face cache {cache}: {_first_line(exc)}") from exc
    torch_ok = _importable("torch") and _importable("transformers")
    found = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified)
        kind, usable = _classify(Path(newest.snapshot_path))
        needs = "" if torch_ok else "pip install 'itr[hf]'"
        found.append(CachedModel(repo=repo.repo_id, revisions=len(repo.revisions), size_bytes=repo.size_on_disk,
                                 folder=Path(newest.snapshot_path), kind=kind,
                                 spec=f"hf:{repo.repo_id}" if usable else "", needs=needs if usable else ""))
    return found


def _importable(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(name) is not None
