"""Console progress: bars on a terminal, plain lines in a pipe or a log, nothing but the summary when quiet."""

import io
import time

from automl.arch.graph import initial_graph
from automl.report.progress import ConsoleProgress, budget_bar
from automl.search.records import Candidate, CandidateRecord, Status
from automl.training.trainer import EpochInfo
from flows.runlog import Tee


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def train_one(progress: ConsoleProgress) -> None:
    candidate = Candidate(7, initial_graph((1, 8, 8), 2))
    progress.on_candidate_start(candidate)
    for epoch in (1, 2):
        progress.on_epoch(candidate, EpochInfo(epoch, 2, 0.5, 0.75, 0.4, 1.0))
    progress.on_candidate_end(candidate, CandidateRecord.of(candidate, Status.COMPLETE, val_accuracy=0.75), None)


def test_a_pipe_gets_a_line_per_epoch_and_a_terminal_gets_bars(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    pipe, terminal = io.StringIO(), Terminal()
    train_one(ConsoleProgress(time.time() + 60, pipe))
    train_one(ConsoleProgress(time.time() + 60, terminal))
    assert pipe.getvalue().count("[search] candidate #7 epoch") == 2 and "\r" not in pipe.getvalue()
    shown = terminal.getvalue()
    assert "\rcandidate #7:" in shown and "/2 [" in shown and "[search] candidate #7 epoch" not in shown
    assert "[search] candidate #7 complete: val_acc 0.7500" in shown
    with budget_bar(10, spent=4, stream=terminal):
        pass
    assert "search budget:  40%" in terminal.getvalue()


def test_quiet_turns_every_bar_off():
    terminal = Terminal()
    with budget_bar(10, stream=terminal, bars=False):
        train_one(ConsoleProgress(None, terminal, bars=False))
    assert "search budget" not in terminal.getvalue() and "%|" not in terminal.getvalue()


def test_the_run_log_keeps_lines_but_not_bar_redraws():
    console, log = Terminal(), io.StringIO()
    tee = Tee(console, log)
    tee.write("[search] candidate #1 complete\n")
    tee.write("\rcandidate #2:  50%|#####     | 1/2")
    assert console.getvalue().endswith("1/2") and log.getvalue() == "[search] candidate #1 complete\n"
    assert tee.isatty()


def test_a_candidate_ranked_by_a_tail_mean_shows_that_score_beside_its_best_epoch():
    pipe, candidate = io.StringIO(), Candidate(3, initial_graph((1, 8, 8), 2))
    record = CandidateRecord.of(candidate, Status.COMPLETE, val_accuracy=0.75, score=0.7)
    ConsoleProgress(None, pipe).on_candidate_end(candidate, record, None)
    assert "[search] candidate #3 complete: val_acc 0.7500 (score 0.7000)" in pipe.getvalue()
