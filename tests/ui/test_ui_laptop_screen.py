"""On a laptop's 1280×720 screen (the tests' offscreen one) the window fits and no text is cut."""

from __future__ import annotations

import math

import pytest
from conftest import TEST_SCREEN
from PySide6.QtCore import QPoint, QSize
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import QApplication, QLabel, QScrollArea, QWidget

from playground.records import Alternative, TokenRecord
from playground.ui.main_window import MainWindow
from playground.ui.sample_panel import SamplePanel
from playground.ui.settings import Settings
from playground.ui.token_popup import TokenPopup


@pytest.fixture
def laptop(qapp) -> QSize:
    area = qapp.primaryScreen().availableGeometry()
    if area.size() != QSize(*TEST_SCREEN):
        pytest.skip(f"QT_QPA_PLATFORM gives another screen ({area.width()}×{area.height()})")
    return area.size()


def _shown_window(qtbot) -> MainWindow:
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def test_the_first_window_fits_the_screen_frame_and_all(qtbot, laptop):
    window = _shown_window(qtbot)
    assert window.screen().availableGeometry().contains(window.frameGeometry())
    window.close()


def test_a_window_saved_on_a_larger_screen_reopens_inside_this_one(qtbot, laptop):
    big = MainWindow()
    qtbot.addWidget(big)
    big.resize(1700, 1000)
    big.move(200, 150)
    Settings().save_window_state("geometry", big.saveGeometry())
    big.shut_down()
    window = _shown_window(qtbot)
    assert window.screen().availableGeometry().contains(window.frameGeometry())
    window.close()


def test_every_tab_and_demonstration_fits_without_scrolling_sideways(qtbot, laptop):
    window = _shown_window(qtbot)
    for page in (window.generate_tab, window.demos_tab, window.history_panel,
                 window.agreement_view, window.reward_tab):
        window.tabs.setCurrentWidget(page)
        QApplication.processEvents()  # the layout settles as it would in the event loop
        # The sidebar belongs to the Generate tab; the others take the whole width.
        assert window.sidebar.isVisible() == (page is window.generate_tab)
        assert page.minimumSizeHint().width() <= page.width()
    tab = window.demos_tab
    window.tabs.setCurrentWidget(tab)
    for row in range(tab.demo_list.count()):
        tab.demo_list.setCurrentRow(row)
        QApplication.processEvents()
        scroll = tab.stack.currentWidget()
        assert isinstance(scroll, QScrollArea)
        view = scroll.widget()
        assert view.minimumSizeHint().width() <= scroll.viewport().width(), type(view).__name__
    window.close()


def _plain(label: QLabel) -> str:
    document = QTextDocument()
    document.setHtml(label.text())
    return document.toPlainText()


def _fits(label: QLabel, text: str) -> bool:
    return label.fontMetrics().horizontalAdvance(text) <= label.contentsRect().width()


def test_best_of_n_badges_show_all_of_their_text(qtbot, laptop):
    panel = SamplePanel(0)
    qtbot.addWidget(panel)
    # The widest scores a run of a few hundred tokens gives, with a reward and a voted answer.
    badges = {"answer": "'1,024'", "mean": "−0.702", "sum": "−1234.56", "norm": "−12.10",
              "reward": "−0.123"}
    panel.set_badges(badges)
    panel.show()
    qtbot.waitExposed(panel)
    labels = [label for label in panel.findChildren(QLabel)
              if _plain(label).split(" ")[0] in badges]
    assert sorted(_plain(label) for label in labels) == sorted(
        f"{name} {value}" for name, value in badges.items())
    for label in labels:
        assert _fits(label, _plain(label)), _plain(label)
        assert panel.contentsRect().contains(label.geometry()), _plain(label)


def test_the_token_popup_shows_all_of_its_heading_and_percentages(qtbot, laptop):
    window = QWidget()
    qtbot.addWidget(window)
    window.resize(*TEST_SCREEN)
    window.show()
    popup = TokenPopup(window)
    top = tuple(Alternative(i, f"alt{i}", math.log(p)) for i, p in enumerate((0.6, 0.3, 0.05)))
    # The chosen token is not among the alternatives listed: its row shows its rank too.
    record = TokenRecord(sample=0, position=3, id=99, bytes=b" far", text=" far",
                         logprob=math.log(0.00004), sampling_logprob=math.log(0.00004),
                         rank=123, entropy=1.5, top=top)
    popup.show_token(record, QPoint(200, 200))
    heading = popup._alternatives_heading
    assert "click one to branch" in heading.text()
    assert _fits(heading, heading.text())
    percents = [row.percent_label for row in popup.rows]
    assert [label.text() for label in percents][-1] == "#123  <0.01%"
    for label in percents:
        assert _fits(label, label.text()), label.text()
    assert window.rect().contains(popup.geometry())
