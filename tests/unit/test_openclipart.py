"""Open Clip Art metadata: reading SVG RDF (two cc namespaces in the wild) and cleaning it."""

from __future__ import annotations

from pathlib import Path

import pytest

from itr.datasets.openclipart import clean_keywords, clean_title, read_svg_metadata

SVG = """<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:cc="{cc}" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<metadata><rdf:RDF><cc:Work rdf:about=""><dc:title>Clipart by Nicu Buculei - bored_dog_01</dc:title>
<dc:subject><rdf:Bag><rdf:li>mammal</rdf:li><rdf:li></rdf:li><rdf:li>hash</rdf:li><rdf:li>Dog</rdf:li>
<rdf:li>0x8b754fc</rdf:li><rdf:li>united_nations_member</rdf:li></rdf:Bag></dc:subject>
<dc:publisher><cc:Agent><dc:title>Open Clip Art Library</dc:title></cc:Agent></dc:publisher>
</cc:Work></rdf:RDF></metadata><path d="M0 0"/></svg>"""


@pytest.mark.parametrize("cc", ["http://web.resource.org/cc/", "http://creativecommons.org/ns#"])
def test_read_and_clean_metadata(tmp_path: Path, cc: str) -> None:
    path = tmp_path / "dog.svg"
    path.write_text(SVG.format(cc=cc))
    title, keywords = read_svg_metadata(path)
    assert title == "Clipart by Nicu Buculei - bored_dog_01"  # the Work's title, not the publisher's
    assert clean_title(title) == "bored dog"
    assert clean_keywords(keywords, "bored dog") == ["mammal", "dog"]


def test_clean_keywords_drops_title_and_duplicates() -> None:
    assert clean_keywords(["Cat", "cat", "kitten", "x", "2004"], "Cat") == ["kitten"]
