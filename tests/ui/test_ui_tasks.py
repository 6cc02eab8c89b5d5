"""The one task type: its signals and their order, cancelling one task and no other, one-line
errors, the thread that owns llama.cpp, and how the window's tasks keep to their own panels."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication

from playground.engine import LocalEngine
from playground.errors import PlaygroundError
from playground.sampling import SamplingParams
from playground.ui import engine_thread
from playground.ui.engine_thread import Job
from playground.ui.main_window import MainWindow
from playground.ui.tasks import Executor, Task

TIMEOUT = 30_000


@pytest.fixture
def executor():
    """An executor of one thread, like the engine's."""
    executor = Executor("test")
    yield executor
    assert executor.shut_down(TIMEOUT / 1000)


def record(task: Task) -> list[tuple]:
    """Every signal of `task` as it arrives, with the thread it arrives on."""
    seen: list[tuple] = []
    task.started.connect(lambda: seen.append(("started",)))
    task.yielded.connect(lambda items: seen.append(("yielded", list(items))))
    task.progressed.connect(lambda done, total: seen.append(("progressed", done, total)))
    task.finished.connect(lambda result: seen.append(("finished", result)))
    task.errored.connect(lambda message: seen.append(("errored", message)))
    task.cancelled.connect(lambda: seen.append(("cancelled",)))
    gui = QApplication.instance().thread()
    for signal in (task.started, task.yielded, task.finished, task.cancelled):
        signal.connect(lambda *_: seen.append(("on gui thread", QThread.currentThread() is gui)))
    return seen


def names(seen: list[tuple]) -> list[str]:
    return [event[0] for event in seen if event[0] != "on gui thread"]


def wait_ended(qtbot, task: Task) -> None:
    qtbot.waitUntil(lambda: task.ended, timeout=TIMEOUT)


def test_a_generator_task_yields_reports_and_ends_once(qtbot, executor: Executor):
    ran_on = []

    def work(progress, cancelled):
        ran_on.append(threading.get_ident())
        for i in range(500):
            progress(i + 1, 500)
            yield i
        return "all of them"

    task = Task(work, "count", executor)
    seen = record(task)
    task.start()
    wait_ended(qtbot, task)
    order = names(seen)
    assert order[0] == "started" and order[-1] == "finished"
    assert order.count("finished") == 1 and "errored" not in order and "cancelled" not in order
    assert seen[-2] == ("finished", "all of them")
    batches = [event[1] for event in seen if event[0] == "yielded"]
    assert [i for batch in batches for i in batch] == list(range(500))  # all, in order
    assert len(batches) < 100  # batched, not one signal each
    progress = [event[1:] for event in seen if event[0] == "progressed"]
    assert progress[-1] == (500, 500) and len(progress) < 100  # throttled, but the last is kept
    assert all(event[1] for event in seen if event[0] == "on gui thread")
    assert ran_on and ran_on[0] != threading.get_ident()


def test_a_plain_function_task_finishes_with_its_result(qtbot):
    seen = {}

    def work(progress, cancelled):
        seen["worker"] = QThread.currentThread()
        for i in range(1, 4):
            progress(i, 3)
        return "done"

    task = Task(work)  # the background executor
    steps = []
    task.progressed.connect(lambda done, total: steps.append((done, total)))
    task.finished.connect(lambda result: seen.setdefault("slot", QThread.currentThread()))
    with qtbot.waitSignal(task.finished, timeout=TIMEOUT) as blocker:
        task.start()
    assert blocker.args == ["done"]
    gui = QApplication.instance().thread()
    assert seen["worker"] is not gui and seen["slot"] is gui
    assert steps[-1] == (3, 3)
    assert task.ended
    with pytest.raises(RuntimeError):
        task.start()  # a task runs once


def test_cancelling_a_queued_task_leaves_the_running_one_alone(qtbot, executor: Executor):
    release, ran = threading.Event(), []

    def busy(progress, cancelled):
        while not release.wait(0.005):
            if cancelled():
                raise PlaygroundError("busy work cancelled")
        return "busy work done"

    def queued(progress, cancelled):
        ran.append("queued work")

    running = Task(busy, "busy", executor).start()
    waiting = Task(queued, "queued", executor)
    seen_running, seen_waiting = record(running), record(waiting)
    waiting.start()
    waiting.cancel()
    release.set()
    wait_ended(qtbot, waiting)
    assert running.ended  # it was first in the queue
    assert names(seen_running)[-1] == "finished" and ("finished", "busy work done") in seen_running
    assert names(seen_waiting) == ["cancelled"]  # never started
    assert ran == []


def test_cancel_is_cooperative(qtbot, executor: Executor):
    started = threading.Event()

    def stops_with_an_error(progress, cancelled):
        started.set()
        while not cancelled():
            started.wait(0.005)
        raise PlaygroundError("stopped")

    def stops_with_what_it_has(progress, cancelled):
        started.set()
        while not cancelled():
            started.wait(0.005)
        return "partial"

    task = Task(stops_with_an_error, "", executor).start()
    assert started.wait(TIMEOUT / 1000)
    with qtbot.waitSignal(task.cancelled, timeout=TIMEOUT):
        task.cancel()
    started.clear()
    task = Task(stops_with_what_it_has, "", executor).start()
    assert started.wait(TIMEOUT / 1000)
    with qtbot.waitSignal(task.finished, timeout=TIMEOUT) as blocker:
        task.cancel()  # a generation ends its samples as cancelled and returns them
    assert blocker.args == ["partial"]


def test_errors_are_one_line(qtbot, executor: Executor, capsys: pytest.CaptureFixture[str]):
    def user_error(progress, cancelled):
        raise PlaygroundError("the file is not a history")

    def bug(progress, cancelled):
        yield 1
        raise KeyError("oops")

    with qtbot.waitSignal(Task(user_error, "", executor).start().errored) as blocker:
        pass
    assert blocker.args == ["the file is not a history"]
    assert "Traceback" not in capsys.readouterr().err
    task = Task(bug, "", executor)
    seen = record(task)
    with qtbot.waitSignal(task.start().errored) as blocker:
        pass
    assert blocker.args == ["Unexpected error: KeyError: 'oops'"]
    assert "Traceback" in capsys.readouterr().err
    assert names(seen) == ["started", "yielded", "errored"]  # what it yielded still arrives


def test_one_thread_runs_every_task_of_an_executor(qtbot):
    threads, exited_on = [], []
    executor = Executor("one", on_exit=lambda: exited_on.append(threading.get_ident()))
    tasks = [Task(lambda progress, cancelled: threads.append(threading.get_ident()), "",
                  executor).start() for _ in range(5)]
    qtbot.waitUntil(lambda: all(task.ended for task in tasks), timeout=TIMEOUT)
    assert executor.shut_down(TIMEOUT / 1000)
    assert len(threads) == 5 and len(set(threads)) == 1
    assert threads[0] != threading.get_ident()
    assert exited_on == threads[:1]  # on_exit runs last, on that thread
    with pytest.raises(RuntimeError):
        Task(lambda progress, cancelled: None, "", executor).start()


def test_shut_down_cancels_what_runs_and_waits(executor: Executor):
    started, ended = threading.Event(), []

    def long_work(progress, cancelled):
        started.set()
        while not cancelled():
            started.wait(0.005)
        ended.append("stopped")

    Task(long_work, "", executor).start()
    assert started.wait(TIMEOUT / 1000)
    assert executor.shut_down(TIMEOUT / 1000)
    assert ended == ["stopped"]


# ---------------------------------------------------------------------------------------------
# The window's tasks on the engine's thread


def test_the_engine_thread_runs_every_llama_cpp_task(qtbot, tiny_model_path,
                                                     monkeypatch: pytest.MonkeyPatch):
    threads: dict[str, set[int]] = {}
    real_load, real_start_run = engine_thread.load, LocalEngine.start_run

    def recording_load(*args, **kwargs):
        threads.setdefault("load", set()).add(threading.get_ident())
        return real_load(*args, **kwargs)

    def recording_start_run(self, *args, **kwargs):
        threads.setdefault("generate", set()).add(threading.get_ident())
        return real_start_run(self, *args, **kwargs)

    monkeypatch.setattr(engine_thread, "load", recording_load)
    monkeypatch.setattr(LocalEngine, "start_run", recording_start_run)
    window = MainWindow()
    qtbot.addWidget(window)
    window.load_model(tiny_model_path, 0)
    window.prompt_panel.set_values("hello", chat=False, system="")
    window.sampling_panel.set_params(SamplingParams(seed=1, max_tokens=4))
    qtbot.waitUntil(lambda: window.model is not None, timeout=TIMEOUT)
    window.generate()
    job = window.engine.job(Job("where", lambda engine, progress, cancelled: threads.setdefault(
        "job", set()).add(threading.get_ident()))).start()
    qtbot.waitUntil(lambda: window.generate_task.ended and job.ended, timeout=TIMEOUT)
    window.close()
    assert set(threads) == {"load", "generate", "job"}
    assert len(set().union(*threads.values())) == 1
    assert threading.get_ident() not in threads["load"]


def _block_the_engine(window: MainWindow) -> threading.Event:
    """Queue a job that holds the engine's thread until the returned event is set."""
    release = threading.Event()

    def hold(_engine, _progress, _cancelled) -> None:
        release.wait(TIMEOUT / 1000)

    window.engine.job(Job("hold", hold)).start()
    return release


def _finished_run(qtbot, window: MainWindow) -> None:
    window.prompt_panel.set_values("hello", chat=False, system="")
    window.sampling_panel.set_params(SamplingParams(seed=3, max_tokens=4))
    window.sampling_panel.n.setValue(2)
    window.generate()
    qtbot.waitUntil(lambda: window.generate_task.ended, timeout=TIMEOUT)


def test_stopping_a_scoring_leaves_a_model_load_alone(qtbot, window: MainWindow,
                                                      tiny_model_path):
    _finished_run(qtbot, window)
    first_model = window.model
    release = _block_the_engine(window)
    window.score_samples("judge", "")
    window.load_model(tiny_model_path, 0)
    window.reward_panel.score_button.click()  # "Cancel scoring"
    release.set()
    qtbot.waitUntil(lambda: window.load_task.ended, timeout=TIMEOUT)
    assert window.score_task.ended  # queued first: cancelled before it began
    assert window.model is not first_model  # the load went on
    assert not window.model_panel._loading and window.model_panel.load_button.text() == "Load"
    assert not any("reward" in s.scores for s in window.run.samples)


def test_a_failing_scoring_resets_only_its_own_panel(qtbot, window: MainWindow,
                                                     tiny_model_path, tmp_path):
    _finished_run(qtbot, window)
    release = _block_the_engine(window)
    window.score_samples(str(tmp_path / "missing.gguf"), "")
    window.load_model(tiny_model_path, 0)
    loading_when_it_failed = []
    window.score_task.errored.connect(lambda _message: loading_when_it_failed.append(
        window.model_panel.load_button.text()))
    release.set()
    qtbot.waitUntil(lambda: window.load_task.ended, timeout=TIMEOUT)
    assert loading_when_it_failed == ["Cancel loading"]  # the load, still running, kept its panel
    assert "missing.gguf" in window.banner.label.text()
    assert window.reward_panel.score_button.text() == "Score samples"
