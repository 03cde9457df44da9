import pytest
import torch
from torch import nn

from automl.arch.builder import build_module
from automl.arch.graph import initial_graph
from automl.config import TrainConfig
from automl.training.averaging import TailAverage
from automl.training.device import place
from automl.training.trainer import TensorData, accuracy, train_candidate
from tests.training.test_trainer import bars


def test_averages_only_the_tail_and_measures_batch_norm_again():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    tail, snapshots = TailAverage(0.5), []
    for progress in (0.25, 0.5, 0.75, 1.0):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        tail.observe(model, progress)
        snapshots.append(model[0].weight.detach().clone())
    x = torch.randn(64, 3)
    state = tail.state(x, 16, place("cpu"))
    assert tail.count == 3  # progress 0.5, 0.75 and 1.0: the last half
    assert torch.allclose(state["0.weight"], torch.stack(snapshots[1:]).mean(0))
    with torch.no_grad():  # the statistics the averaged layer's outputs have on x, not any snapshot's
        features = x @ state["0.weight"].T + state["0.bias"]
    assert torch.allclose(state["1.running_mean"], features.mean(0), atol=1e-5)


def test_one_epoch_end_or_none_is_no_average():
    model = nn.Linear(2, 2)
    tail = TailAverage(0.3)
    tail.observe(model, 0.5)
    assert tail.state(torch.randn(4, 2), 2, place("cpu")) is None
    tail.observe(model, 1.0)
    assert tail.state(torch.randn(4, 2), 2, place("cpu")) is None  # one epoch end: the last weights
    off = TailAverage(0.0)
    off.observe(model, 1.0)
    assert off.count == 0


def test_the_final_fit_returns_the_average_of_its_last_epochs():
    x, y = bars(200, 0)
    data = TensorData(x, y)  # no validation: a final fit
    graph, cfg = initial_graph((1, 10, 10), 2, width=8), TrainConfig(max_epochs=6, batch_size=32, threads=2)
    last = train_candidate(graph, None, data, cfg, seed=3)
    averaged = train_candidate(graph, None, data, cfg, seed=3, average=0.5)
    assert last.averaged_epochs == 0 and averaged.averaged_epochs == 4  # epochs 3-6 end in the last half
    assert [h["train_loss"] for h in averaged.history] == [h["train_loss"] for h in last.history]  # same run
    assert not torch.equal(averaged.state["ops.L3.weight"], last.state["ops.L3.weight"])
    module = build_module(graph)
    module.load_state_dict(averaged.state)  # strict: the same names as the network's own
    assert accuracy(module, *bars(100, 1)) >= 0.9


@pytest.mark.parametrize("average", [0.0, 0.5])
def test_a_candidate_with_validation_keeps_its_best_epoch(average):
    data = TensorData(*bars(200, 0), *bars(60, 1))
    result = train_candidate(initial_graph((1, 10, 10), 2, width=8), None, data,
                             TrainConfig(max_epochs=4, batch_size=32, threads=2), seed=1, average=average)
    assert result.averaged_epochs == 0
