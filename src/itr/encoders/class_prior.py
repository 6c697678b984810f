"""A WordNet class prior: which of the image backbone's 1000 ImageNet classes a query's nouns name.

The bridge (``builtin:conse``) and the trained heads compare a query with an image through MiniLM's
sentence space, which knows that "frog" is near "tree frog" only as well as its embeddings say. The
image backbone's classes are WordNet synsets, so WordNet itself says it exactly: a query noun names
the classes at or below its synset (``frog`` -> tree frog, bullfrog, tailed frog), or, when no class
lies below it, those below its nearest ancestors, discounted (``Eiffel Tower`` -> tower -> lighthouse).
This is the hierarchy-based knowledge transfer of Rohrbach et al. ("What helps where - and why?",
CVPR 2010), measured in ``benchmarks/class_prior.py``.

A text becomes a distribution ``q`` over the 1000 classes; an image its class probabilities ``p``;
the two meet by the Bhattacharyya coefficient ``sum(sqrt(p * q))``. Written as one extra block of
each vector (``sqrt(p)``, ``sqrt(q)``), it keeps the model a dual encoder that any index searches:
``[sqrt(1 - w) * dense, sqrt(w) * sqrt(p)]`` scores ``(1 - w) cos + w BC``. English only (WordNet);
a text with no WordNet noun has ``q = 0`` and is scored by the dense part alone.

Hand-written, not nltk's WordNet reader: the runtime needs only lemma lookup and the plural rules
(WordNet's morphy for nouns), over a 1.1 MB table derived once (``scripts/build_wordnet_classes.py``),
where nltk would add a dependency and a 30 MB corpus download that the registries here do not serve.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WORDNET_CLASSES = Path(__file__).parent / "weights" / "wordnet-classes-v1"
N_CLASSES = 1000
PERSON_LEXFILE = 18  # WordNet's noun.person: "chicken" and "dog" also name people (a coward, a cad)

# WordNet has nouns for many function words ("a" is vitamin A, "it" information technology): a
# one-word match must be a content word of three letters or more.
STOPWORDS = frozenset("""
a about above after again all also am an and any are as at be been being below between both but by
can could did do does doing down during each few for from further had has have having he her here
hers herself him himself his how i if in into is it its itself just like made make many may me
might more most much must my myself no nor not now of off on once one only or other our ours out
over own same she should so some such than that the their theirs them themselves then there these
they this those through to too two three under until up upon us very was we well were what when
where which while who whom why will with within without would yet you your yours
able known used mostly usually often called kind lot lots thing things way ways part parts
""".split())

# WordNet's morphy for nouns: detachment rules tried in order, the first base form that is a lemma wins.
NOUN_SUFFIXES = (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
                 ("men", "man"), ("ies", "y"), ("s", ""))
TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
MAX_NGRAM = 3  # "polar bear", "great white shark", "statue of liberty" are lemmas
MAX_WORDS = 512  # about what MiniLM reads (256 tokens); a bound on what one hostile query costs


@dataclass(frozen=True, kw_only=True)
class ClassPriorConfig:
    """How much the prior counts and how it reads WordNet (chosen in ``benchmarks/class_prior.py``)."""

    weight: float = 0.3  # w in (1 - w) cos + w BC
    temperature: float = 0.7  # softmax temperature of the image's class probabilities
    gamma: float = 0.3  # discount per hypernym step of a stand-in ancestor
    sense_decay: float = 0.5  # weight of a lemma's k-th most frequent sense: decay ** k
    person_weight: float = 1.0  # how much a person sense that is not the lemma's first counts, relative


class WordNetClassPrior:
    """Texts -> (n, 1000) distributions over the ImageNet-1k classes their nouns name."""

    def __init__(self, config: ClassPriorConfig, folder: Path = WORDNET_CLASSES) -> None:
        self.config = config
        self.folder = folder
        with np.load(folder / "classes.npz", allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}  # each npz[key] decompresses anew: read once
        lemmas = (folder / "lemmas.txt").read_text(encoding="utf-8").split("\n")[:-1]
        indptr = arrays["lemma_indptr"]
        if len(lemmas) + 1 != len(indptr):
            raise ValueError(f"{folder}: lemmas.txt has {len(lemmas)} lemmas, classes.npz {len(indptr) - 1}")
        set_indptr, set_classes = arrays["set_indptr"], arrays["set_classes"].astype(np.int64)
        self._sets = [set_classes[set_indptr[i] : set_indptr[i + 1]] for i in range(len(set_indptr) - 1)]
        weight = (config.sense_decay ** arrays["lemma_rank"].astype(np.float64)
                  * np.where((arrays["lemma_lexfile"] == PERSON_LEXFILE) & (arrays["lemma_rank"] > 0),
                             config.person_weight, 1.0))
        self._sense_weight = weight * config.gamma ** arrays["lemma_up"].astype(np.float64)
        self._sense_rank_weight = weight
        self._sense_set = arrays["lemma_set"]
        self._indptr = indptr
        self._senses = {lemma: i for i, lemma in enumerate(lemmas)}  # lemma -> row (sliced when first used)
        self._exceptions: dict[str, str] = {}
        for line in (folder / "exceptions.txt").read_text(encoding="utf-8").splitlines():
            plural, base = line.split()[:2]
            self._exceptions.setdefault(plural, base)

    def files(self) -> list[Path]:
        return [self.folder / "classes.npz", self.folder / "lemmas.txt", self.folder / "exceptions.txt"]

    def _base_forms(self, word: str) -> list[str]:
        """The lemmas ``word`` (words joined by ``_``) can be: itself, its irregular or regular singular."""
        out = [word] if word in self._senses else []
        base = self._exceptions.get(word)
        if base in self._senses and base not in out:
            out.append(base)
        for suffix, replacement in NOUN_SUFFIXES:
            if word.endswith(suffix) and len(word) > len(suffix):
                stem = word[: -len(suffix)] + replacement
                if stem in self._senses and stem not in out:
                    out.append(stem)
        return out

    @functools.lru_cache(maxsize=65536)  # noqa: B019  (one prior per encoder, kept for its lifetime)
    def _lemma_distribution(self, lemma: str) -> np.ndarray:
        row = self._senses[lemma]
        senses = slice(self._indptr[row], self._indptr[row + 1])
        out = np.zeros(N_CLASSES)
        for s, w in zip(self._sense_set[senses], self._sense_weight[senses], strict=True):
            classes = self._sets[int(s)]
            out[classes] += w / len(classes)
        return out / self._sense_rank_weight[senses].sum()

    def nouns(self, text: str) -> list[str]:
        """The WordNet noun lemmas found in ``text`` (longest match first, left to right)."""
        return [forms[0] for forms in self._matches(text)]

    def _matches(self, text: str) -> list[tuple[str, ...]]:
        """Each noun found in ``text``, as the lemmas it can be ("glasses": glasses, glass)."""
        tokens = TOKEN.findall(text[: 16 * MAX_WORDS].lower())[:MAX_WORDS]
        found: list[tuple[str, ...]] = []
        i = 0
        while i < len(tokens):
            for n in range(min(MAX_NGRAM, len(tokens) - i), 0, -1):
                words = tokens[i : i + n]
                if n == 1 and (words[0] in STOPWORDS or len(words[0]) < 3 or words[0].isdigit()):
                    continue
                forms = self._base_forms("_".join(words))
                if forms:
                    found.append(tuple(forms))
                    i += n
                    break
            else:
                i += 1
        return found

    def distribution(self, text: str) -> np.ndarray:
        """(1000,) float64 summing to 1, or all zeros when ``text`` names no WordNet noun."""
        q = np.zeros(N_CLASSES)
        for forms in self._matches(text):  # a word that is two lemmas counts each half
            q += sum(self._lemma_distribution(f) for f in forms) / len(forms)
        total = q.sum()
        return q / total if total > 0 else q

    def distributions(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.distribution(t) for t in texts]) if texts else np.zeros((0, N_CLASSES))


def image_block(logits: Any, config: ClassPriorConfig) -> Any:
    """An image's prior block (torch, in the logits' float type): the square root of its class
    probabilities, unit L2 norm. Taken as ``exp(log_softmax / 2)``, finite and differentiable where a
    probability underflows (white-box attacks take gradients through it)."""
    import torch

    z = torch.as_tensor(logits) / config.temperature
    return (z.log_softmax(-1) / 2).exp()


def join(dense: Any, block: Any, weight: float) -> Any:
    """``[sqrt(1 - w) * dense, sqrt(w) * block]`` (torch, float32), ``dense`` L2-normalised first:
    dot products are then ``(1 - w) cos + w <block, block'>``. Callers normalise the result (a text
    with no WordNet noun, ``block = 0``, is then its dense part alone)."""
    import torch

    dense = torch.nn.functional.normalize(torch.as_tensor(dense).float(), dim=-1)
    block = torch.as_tensor(block).float()
    return torch.cat([(1.0 - weight) ** 0.5 * dense, weight ** 0.5 * block], dim=-1)


def dense_part(vectors: np.ndarray, dim: int) -> np.ndarray:
    """The dense part of stored prior-joined vectors, L2-normalised again (what a head trained on the
    model without the prior reads, e.g. the lexicon head)."""
    part = np.asarray(vectors, dtype=np.float32)[:, :dim]
    return part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
