"""Evaluation protocols by name: which captions count, how many score matrices, what it reproduces.

The metrics are the same in every protocol (``metrics``; a hit at K when any own caption is in the
top K for i2t, the own image for t2i; exact ties reported as a band). What the field's reference
codes differ in is what they feed those metrics, and that is what a protocol fixes:

- ``itr`` (the default): each dataset's own caption rule (every caption; the first 5 for
  ``karpathy``), one score matrix, ties pessimistic.
- ``clip_benchmark``: every caption (MSCOCO 5K has 25,010, as the published R@K fractions show),
  one matrix ``texts @ images.T``: CLIP_benchmark's ``zeroshot_retrieval``.
- ``karpathy5``: the first 5 captions of each image (MSCOCO 5K: 25,000): SCAN / VSE++ ``i2t``/``t2i``
  and the papers that follow them.
- ``lavis``: every caption, and **one score matrix per direction** (``score_matrix_i2t`` and
  ``score_matrix_t2i``), as LAVIS's retrieval task reports re-ranked models: a re-ranker scores each
  direction's own top candidates, so the two matrices differ. A dual encoder gives the same matrix
  both ways.

The reference codes break exact ties by their sort order (``torch.topk``, ``np.argsort``), which no
rule reproduces in general; their figures lie inside the reported tie band (optimistic to pessimistic).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError, UnknownNameError


@dataclass(frozen=True, slots=True)
class Protocol:
    """One named evaluation protocol.

    Attributes:
        name: what ``--protocol`` takes.
        max_captions: captions per image and language (0: all; None: the dataset's own default).
        two_matrices: each direction is ranked from its own score matrix when the model gives two.
        reproduces: the reference code whose figures it reproduces, in words.
    """

    name: str
    max_captions: int | None
    two_matrices: bool
    reproduces: str


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("itr", None, False, "ITR's defaults: every caption (karpathy: the first 5), ties pessimistic"),
    Protocol("clip_benchmark", 0, False, "CLIP_benchmark zeroshot_retrieval: every caption, one matrix"),
    Protocol("karpathy5", 5, False, "SCAN / VSE++ evaluation: the first 5 captions of each image"),
    Protocol("lavis", 0, True, "LAVIS retrieval task: every caption, one score matrix per direction"),
)}
DEFAULT_PROTOCOL = "itr"


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; UnknownNameError lists the valid names."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UnknownNameError(f"unknown protocol '{name}'; valid: {', '.join(PROTOCOLS)}") from None


def captions_for(protocol: Protocol, max_captions: int | None) -> int | None:
    """The caption cap a run uses: an explicit ``--max-captions`` must agree with the protocol's."""
    if max_captions is None or protocol.max_captions is None:
        return protocol.max_captions if max_captions is None else max_captions
    if max_captions != protocol.max_captions:
        want = "every caption" if protocol.max_captions == 0 else f"{protocol.max_captions} captions"
        raise InputError(f"--max-captions {max_captions} contradicts --protocol {protocol.name} "
                               f"({want} per image); drop one of them")
    return max_captions
