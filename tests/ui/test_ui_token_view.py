"""The token heat map, its popup and its legend, against real runs of the tiny and embedded
models."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QColor, QImage, QRegion, QTextCursor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from playground.records import TokenRecord
from playground.sampling import SamplingParams
from playground.ui.colors import probability_color
from playground.ui.probability_legend import ProbabilityLegend
from playground.ui.token_popup import TokenPopup, format_probability, visible_text
from playground.ui.token_view import TokenView

SPLIT_TEXT = "I 🙂 emoji 👩‍💻!"
"""SmolLM2 splits 👩 over three tokens and 💻 over three more."""


@pytest.fixture
def tiny_tokens(tiny_engine) -> list[TokenRecord]:
    run = tiny_engine.run("prompt", SamplingParams(seed=1, max_tokens=20), n=1)
    return run.samples[0].tokens


@pytest.fixture
def lines_tokens(tiny_engine) -> list[TokenRecord]:
    """Newlines, a blank line and a whitespace-only token (' ')."""
    return tiny_engine.teacher_force(
        tiny_engine.tokenize("x"),
        tiny_engine.tokenize("one\ntwo  three\n\nfour", add_special=False),
        top_logprobs=5,
    )


@pytest.fixture(scope="module")
def split_tokens(embedded_engine) -> list[TokenRecord]:
    return embedded_engine.teacher_force(
        embedded_engine.tokenize("Repeat:"),
        embedded_engine.tokenize(SPLIT_TEXT, add_special=False),
        top_logprobs=5,
    )


@pytest.fixture
def view(qtbot) -> TokenView:
    widget = TokenView()
    qtbot.addWidget(widget)
    widget.resize(640, 480)  # room for the whole popup: a shorter window drops alternatives
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def _text(tokens: list[TokenRecord]) -> str:
    return "".join(t.text for t in tokens)


def _point_on(view: TokenView, position: int, *, left_edge: bool = False) -> QPoint:
    """A viewport point over the character at document `position`: its middle, or just inside
    its left edge (for a character drawn as part of a wider cluster, such as 👩‍💻)."""
    cursor = QTextCursor(view.document())
    cursor.setPosition(position)
    left = view.cursorRect(cursor)
    cursor.setPosition(position + 1)
    right = view.cursorRect(cursor)
    same_line = right.top() == left.top() and right.x() > left.x()
    x = (left.x() + right.x()) // 2 if same_line and not left_edge else left.x() + 2
    return QPoint(x, left.center().y())


def _hover(view: TokenView, point: QPoint) -> None:
    # From a corner first: the pointer may already rest at `point` from an earlier test, and
    # moving it nowhere sends no event.
    QTest.mouseMove(view.viewport(), QPoint(1, view.viewport().height() - 2))
    QTest.mouseMove(view.viewport(), point)


def _labels(widget: QWidget) -> list[str]:
    return [label.text() for label in widget.findChildren(QLabel) if label.isVisibleTo(widget)]


def _hoverable(tokens: list[TokenRecord]) -> int:
    """A token with alternatives that starts after another one on its line."""
    return next(i for i, t in enumerate(tokens) if i > 0 and t.text.strip() and t.top)


# -- text and colours --------------------------------------------------------------------


def test_set_tokens_shows_the_joined_text(view: TokenView, tiny_tokens):
    view.set_tokens(tiny_tokens)
    assert view.toPlainText() == _text(tiny_tokens)
    assert len(view.tokens) == len(tiny_tokens)


def test_appending_in_chunks_gives_the_same_document_as_setting(view: TokenView, tiny_tokens):
    for i in range(0, len(tiny_tokens), 3):
        view.append_tokens(tiny_tokens[i : i + 3])
        assert view.toPlainText() == _text(tiny_tokens[: i + 3])
    view.append_tokens([])
    ranges = [view.token_range(i) for i in range(len(tiny_tokens))]
    view.set_tokens(tiny_tokens)
    assert [view.token_range(i) for i in range(len(tiny_tokens))] == ranges
    view.clear_tokens()
    assert view.toPlainText() == "" and not view.tokens


def _background_at(view: TokenView, position: int):
    cursor = QTextCursor(view.document())
    cursor.setPosition(position)
    cursor.movePosition(QTextCursor.MoveOperation.NextCharacter, QTextCursor.MoveMode.KeepAnchor)
    return cursor.charFormat().background().color()


def test_each_token_background_is_its_probability_colour(
    view: TokenView, tiny_tokens, lines_tokens
):
    for tokens in (tiny_tokens, lines_tokens):
        view.set_tokens(tokens)
        for i, token in enumerate(tokens):
            start, end = view.token_range(i)
            assert end > start
            assert _background_at(view, start).rgb() == probability_color(token.prob).rgb()


def test_newlines_break_lines_and_whitespace_tokens_take_room(view: TokenView, lines_tokens):
    view.set_tokens(lines_tokens)
    assert view.toPlainText() == _text(lines_tokens) == " one\ntwo  three\n\nfour"
    assert view.document().blockCount() == 4
    space = next(i for i, t in enumerate(lines_tokens) if t.text == " ")
    start, end = view.token_range(space)
    assert end - start == 1
    assert view.token_at(_point_on(view, start)) == space


def test_blank_space_right_of_a_line_is_no_token_but_its_newline_marker_is(
    view: TokenView, lines_tokens
):
    view.set_tokens(lines_tokens)
    newline = next(i for i, t in enumerate(lines_tokens) if t.text == "\n")
    start, _ = view.token_range(newline)
    end_of_line = _point_on(view, start - 1)
    marker = QPoint(end_of_line.x() + view.fontMetrics().horizontalAdvance("e↵") // 2,
                    end_of_line.y())
    assert view.token_at(marker) == newline
    assert view.token_at(QPoint(view.viewport().width() - 5, end_of_line.y())) == -1
    assert view.token_at(QPoint(5, view.viewport().height() - 5)) == -1  # below the text


def test_painting_a_band_of_the_view_draws_what_painting_all_of_it_does(
    view: TokenView, tiny_tokens, lines_tokens
):
    """A streamed token repaints only the lines it changed; the token boundaries and newline
    markers painted there must be the same as in a full repaint."""
    view.resize(260, 200)  # the tiny model's text wraps over several lines
    view.set_tokens(lines_tokens + tiny_tokens)
    viewport = view.viewport()

    def render(region: QRect) -> QImage:
        image = QImage(viewport.size(), QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.magenta)
        viewport.render(image, region.topLeft(), QRegion(region))  # drawn where it is
        return image

    def pixels(image: QImage, band: QRect) -> np.ndarray:
        part = image.copy(band)
        return np.frombuffer(part.constBits(), np.uint8).reshape(part.height(), -1).astype(int)

    whole = render(viewport.rect())
    assert whole.pixelColor(5, 5) != QColor(Qt.GlobalColor.magenta)  # it did paint
    for height in (5, 13):
        for top in range(0, viewport.height(), 3):  # bands that start and end inside lines
            band = QRect(0, top, viewport.width(), height) & viewport.rect()
            # Glyphs blend a shade apart when clipped; a missing mark is tens of shades off.
            difference = np.abs(pixels(render(band), band) - pixels(whole, band)).max()
            assert difference <= 4, f"band of {height} at y={top}"


def test_hindi_and_emoji_display_as_the_joined_text(view: TokenView, embedded_engine):
    text = "नमस्ते 🙂"
    records = embedded_engine.teacher_force(
        embedded_engine.tokenize("Repeat:"), embedded_engine.tokenize(text, add_special=False)
    )
    view.set_tokens(records)
    assert view.toPlainText() == _text(records) == text
    view.set_tokens(records[:3])
    view.append_tokens(records[3:])
    assert view.toPlainText() == text


def test_tokens_without_text_take_no_room_and_the_character_goes_to_the_last(
    view: TokenView, split_tokens
):
    view.set_tokens(split_tokens)
    assert view.toPlainText() == SPLIT_TEXT
    empty = [i for i, t in enumerate(split_tokens) if t.text == ""]
    assert empty, "SmolLM2 no longer splits these characters"
    for i in empty:
        start, end = view.token_range(i)
        assert start == end
        completing = view.token_at_position(start)
        assert completing > i and split_tokens[completing].text
        assert all(split_tokens[j].text == "" for j in range(i, completing))
    woman = next(i for i, t in enumerate(split_tokens) if t.text == "👩")
    start, end = view.token_range(woman)
    assert end - start == 2  # one character, two UTF-16 positions
    assert view.token_at(_point_on(view, start, left_edge=True)) == woman


# -- hover and popup ---------------------------------------------------------------------


def test_hovering_a_token_emits_its_index_and_shows_its_details(
    view: TokenView, tiny_tokens, qtbot
):
    view.set_tokens(tiny_tokens)
    i = _hoverable(tiny_tokens)
    token = tiny_tokens[i]
    point = _point_on(view, view.token_range(i)[0])
    with qtbot.waitSignal(view.token_hovered) as hovered:
        _hover(view, point)
    assert hovered.args == [i]
    popup = view.popup
    assert popup.isVisible()
    texts = _labels(popup)
    assert visible_text(token.text) in texts
    assert format_probability(token.prob) in texts
    assert f"{token.logprob:.3f}" in texts
    assert f"{token.entropy:.2f} nats" in texts
    assert ("most likely" if token.rank == 1 else f"#{token.rank}") in texts
    for alt in token.top:
        assert visible_text(alt.text) in [row.text_label.text() for row in popup.rows]


def test_leaving_the_tokens_emits_minus_one_and_hides_the_popup(
    view: TokenView, tiny_tokens, qtbot
):
    view.set_tokens(tiny_tokens)
    i = _hoverable(tiny_tokens)
    with qtbot.waitSignal(view.token_hovered):
        _hover(view, _point_on(view, view.token_range(i)[0]))
    assert view.popup.isVisible()
    blank = QPoint(view.viewport().width() - 5, view.viewport().height() - 5)
    with qtbot.waitSignal(view.token_hovered) as left:
        QTest.mouseMove(view.viewport(), blank)
    assert left.args == [-1]
    qtbot.waitUntil(lambda: not view.popup.isVisible())


def test_popup_of_a_partial_character_shows_its_bytes(view: TokenView, split_tokens):
    view.set_tokens(split_tokens)
    for i, token in enumerate(split_tokens):
        view.show_popup_for(i)
        texts = " ".join(_labels(view.popup))
        split = "part of a character split across tokens" in texts
        try:
            token.bytes.decode("utf-8")
        except UnicodeDecodeError:
            assert split and token.bytes.hex(" ") in texts, token
        else:
            assert not split, token


def test_a_chosen_token_outside_the_top_k_gets_a_row_with_its_rank(
    view: TokenView, split_tokens
):
    view.set_tokens(split_tokens)
    i = next(i for i, t in enumerate(split_tokens) if t.rank > len(t.top))
    view.show_popup_for(i)
    rows = view.popup.rows
    assert len(rows) == len(split_tokens[i].top) + 1
    assert rows[-1].token_id == split_tokens[i].id
    assert rows[-1].percent_label.text().startswith(f"#{split_tokens[i].rank} ")


def test_clicking_an_alternative_emits_its_position_and_id(view: TokenView, tiny_tokens, qtbot):
    view.set_tokens(tiny_tokens)
    i = _hoverable(tiny_tokens)
    view.show_popup_for(i)
    row = view.popup.rows[1]
    assert row.cursor().shape() == Qt.CursorShape.PointingHandCursor
    with qtbot.waitSignal(view.alternative_clicked) as clicked:
        qtbot.mouseClick(row, Qt.MouseButton.LeftButton)
    assert clicked.args == [tiny_tokens[i].position, tiny_tokens[i].top[1].id]


def test_the_popup_floats_inside_the_window_as_its_child(qtbot, split_tokens):
    window = QWidget()
    qtbot.addWidget(window)
    layout = QVBoxLayout(window)
    view = TokenView()
    layout.addWidget(view)
    window.resize(500, 420)
    window.show()
    qtbot.waitExposed(window)
    view.set_tokens(split_tokens)
    for i in (0, len(split_tokens) - 1):
        view.show_popup_for(i)
        popup = view.popup
        assert isinstance(popup, TokenPopup)
        assert popup.parentWidget() is window and popup.isVisible()
        assert window.rect().contains(popup.geometry())
    view.hide_popup()
    assert not view.popup.isVisible()


def test_highlight_selects_the_token(view: TokenView, split_tokens):
    view.set_tokens(split_tokens)
    view.highlight(3)
    (selection,) = view.extraSelections()
    start, end = view.token_range(3)
    assert (selection.cursor.selectionStart(), selection.cursor.selectionEnd()) == (start, end)
    empty = next(i for i, t in enumerate(split_tokens) if t.text == "")
    view.highlight(empty)  # shows as the character it belongs to
    (selection,) = view.extraSelections()
    assert selection.cursor.selectionEnd() > selection.cursor.selectionStart()
    view.highlight(-1)
    assert view.extraSelections() == []


def test_highlight_scrolls_into_view_only_when_asked(qtbot, tiny_tokens):
    view = TokenView()
    qtbot.addWidget(view)
    view.resize(200, 130)
    view.show()
    qtbot.waitExposed(view)
    many = [replace(t, position=i) for i, t in enumerate(tiny_tokens * 10)]
    view.set_tokens(many)
    bar = view.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == 0
    view.highlight(len(many) - 1)
    assert bar.value() == 0
    view.highlight(len(many) - 1, ensure_visible=True)
    assert bar.value() > 0


# -- streaming ---------------------------------------------------------------------------


def test_streaming_2000_tokens_stays_fast_and_follows_the_end(view: TokenView, tiny_tokens, qtbot):
    many = [replace(t, position=i) for i, t in enumerate((tiny_tokens * 100)[:2000])]
    started = time.perf_counter()
    for i in range(0, len(many), 10):
        view.append_tokens(many[i : i + 10])
    elapsed = time.perf_counter() - started
    assert view.toPlainText() == _text(many)
    assert elapsed < 5, f"2000 tokens took {elapsed:.1f} s"  # about 0.3 s here
    bar = view.verticalScrollBar()
    assert bar.value() == bar.maximum() > 0
    bar.setValue(0)  # the reader scrolls up: appending must not pull them back down
    view.append_tokens(many[:10])
    assert bar.value() == 0


# -- looks -------------------------------------------------------------------------------


def test_compact_view_is_smaller_and_frameless(qtbot):
    compact = TokenView(compact=True)
    normal = TokenView()
    qtbot.addWidget(compact)
    qtbot.addWidget(normal)
    size = compact.document().defaultFont().pointSizeF()
    assert size < normal.document().defaultFont().pointSizeF()
    assert compact.frameShape() == QFrame.Shape.NoFrame
    assert compact.minimumHeight() < normal.minimumHeight()


def test_legend_gradient_runs_from_unlikely_to_certain(qtbot):
    legend = ProbabilityLegend()
    qtbot.addWidget(legend)
    legend.show()  # as it is shown, the app's stylesheet gives it its font
    legend.resize(360, legend.sizeHint().height())
    # Compact, in the tests' bundled font: 33 px high and at most 405 px wide.
    assert 24 <= legend.height() <= 40 and legend.maximumWidth() <= 480
    image = legend.grab().toImage()
    bar = legend.bar_rect()
    y = round(bar.center().y())
    for p, x in ((0.0, bar.left() + 3), (1.0, bar.right() - 3), (0.5, bar.center().x())):
        got = image.pixelColor(round(x), y)
        want = probability_color(p)
        assert abs(got.red() - want.red()) + abs(got.green() - want.green()) + abs(
            got.blue() - want.blue()
        ) < 30, (p, got.name(), want.name())
