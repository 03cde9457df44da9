from automl.arch.graph import initial_graph
from automl.search.records import Candidate, CandidateRecord, Status, best_of, ranked


def record(id: int, val_accuracy: float, score: float | None = None, val_loss: float = 1.0) -> CandidateRecord:
    return CandidateRecord.of(Candidate(id, initial_graph((1, 8, 8), 3)), Status.COMPLETE,
                              val_accuracy=val_accuracy, score=score, val_loss=val_loss)


def test_the_score_ranks_and_is_what_the_searcher_is_told_when_training_set_one():
    peaky, steady = record(1, 0.90, score=0.84), record(2, 0.88, score=0.87)
    assert best_of([peaky, steady]) is steady
    assert peaky.outcome().val_accuracy == 0.84


def test_without_a_score_the_best_epochs_accuracy_ranks_then_the_lower_loss_then_the_earlier():
    records = [record(1, 0.8, val_loss=0.5), record(2, 0.9), record(3, 0.8, val_loss=0.4), record(4, 0.8, val_loss=0.4)]
    assert [r.id for r in ranked(records)] == [2, 3, 4, 1]
    assert records[1].outcome().val_accuracy == 0.9
