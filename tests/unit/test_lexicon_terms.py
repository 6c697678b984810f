"""Which vocabulary entries a lexicon head may use as terms."""

from __future__ import annotations

from itr.sparse.head import content_terms, dictionary_words


def test_dictionary_keeps_words_and_inflections_and_drops_names_and_fragments() -> None:
    vocab = ["[CLS]", "jar", "jars", "beans", "berries", "painted", "running", "gregg", "keller", "ind", "isbn", "the",
             "ge", "##ing", "km²", "coffee", "women"]
    words = dictionary_words()
    assert {"jar", "bean", "berry", "paint", "run", "coffee"} <= words and "gregg" not in words
    kept = [vocab[i] for i in content_terms(vocab, words)]
    assert kept == ["jar", "jars", "beans", "berries", "painted", "running", "coffee", "women"]
    everything = [vocab[i] for i in content_terms(vocab)]  # no dictionary: builtin-lex-v2's terms
    assert everything == ["jar", "jars", "beans", "berries", "painted", "running", "gregg", "keller", "ind", "isbn",
                          "km²", "coffee", "women"]
