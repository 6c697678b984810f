"""Built-in heads against the multilingual bridge on GCompris, one language at a time (issue 16).

For each language, the GCompris photos (or drawings) captioned in it are scored with each
projector folder given and with ``builtin:conse-multi`` (the USE-m bridge), from the cached frozen
features (the same figures ``itr eval gcompris-photos:LANG -m local:FOLDER`` gives). GCompris is
never trained on; this reports, it does not choose.

    python benchmarks/languages_gcompris.py --langs en,fr,de,es,it,nl,pl,pt,ru,tr,zh_CN,zh_TW \
        src/itr/encoders/weights/builtin-multi-v1 /tmp/four-languages
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from itr.encoders.builtin import BuiltinProjectorEncoder
from itr.eval import load_eval_dataset
from itr.train import projector as P


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="projector folders (USE-m heads)")
    ap.add_argument("--langs", default="en,fr,de,es")
    ap.add_argument("--sets", default="gcompris-photos,gcompris-drawings")
    args = ap.parse_args()
    torch.set_num_threads(2)
    models = {f.name: BuiltinProjectorEncoder(f"local:{f}", f) for f in args.folders}
    for sub in args.sets.split(","):
        print(sub)
        for lang in args.langs.split(","):
            ds = load_eval_dataset(f"{sub}:{lang}")
            row = [f"{lang:6} n={len(ds.items):3}"]
            part = None
            for name, enc in models.items():
                part = P.feature_part(enc, ds, None)
                r = P._report(enc.heads, enc, part)
                row.append(f"{name} {r['t2i']['R@1']:.1f}/{r['rsum']:.0f}")
            assert part is not None
            b = P._bridge_report(enc, part)
            row.append(f"conse-multi {b['t2i']['R@1']:.1f}/{b['rsum']:.0f}")
            print("  ".join(row), flush=True)


if __name__ == "__main__":
    main()
