"""The tokens-across-languages view against the tokenizer itself."""

from __future__ import annotations

import pyqtgraph as pg

from playground.demos.scenario import find_scenario
from playground.demos.tokens import load_parallel
from playground.ui.languages_view import LanguagesView, chips_html, clusters

SCENARIO = find_scenario("tokens")


def test_view_shows_every_language_as_the_tokenizer_cuts_it(qtbot, embedded_engine):
    view = LanguagesView()
    qtbot.addWidget(view)
    view.set_scenario(SCENARIO, "small")
    assert len(view.sections()) == len(SCENARIO.steps)
    view.sentence.setCurrentIndex(2)
    result = view.job().work(embedded_engine, lambda done, total: None, lambda: False)
    view.show_result(result)

    parallel = load_parallel()
    assert [c.language for c in result.counts] == list(parallel)
    for row, count in enumerate(result.counts):
        ids = embedded_engine.tokenize(parallel[count.language][2], add_special=False)
        assert count.tokens == len(ids)
        assert view.rows.itemAtPosition(row, 2).widget().text() == f"{len(ids)} tokens"
        # Every token is in exactly one chip, and the chips spell the sentence.
        groups = clusters(count)
        assert sum(tokens for _, tokens in groups) == len(ids)
        assert "".join(text for text, _ in groups) == embedded_engine.detokenize(ids)
        assert view.rows.itemAtPosition(row, 3).widget().text() == chips_html(count)

    bars = [item for item in view.chart.getPlotItem().items
            if isinstance(item, pg.BarGraphItem)]
    per_word = next(b for b in bars if b.name() == "per word")
    assert list(per_word.opts["height"]) == [c.tokens_per_word for c in result.counts]
    english, hindi = result.medians["English"], result.medians["Hindi"]
    assert f"English {english:g} tokens, Hindi {hindi:g} tokens" in view.median.text()


def test_a_character_split_over_tokens_is_one_chip_with_its_count(tiny_engine):
    from playground.demos.tokens import token_counts

    # The tiny vocabulary spells Devanagari byte by byte: three tokens per character.
    (count,) = token_counts(tiny_engine, {"Hindi": "आज"})
    assert clusters(count) == [(" ", 1), ("आ", 3), ("ज", 3)]
    assert chips_html(count).count("<sub><b>3</b></sub>") == 2
