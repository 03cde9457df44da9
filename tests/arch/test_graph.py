import pytest
import torch

from automl.arch.builder import build_module
from automl.arch.graph import Graph, Layer, initial_graph


def test_initial_network_is_the_seeds():
    g = initial_graph((1, 28, 28), 10)
    kinds = [layer.type for layer in g.layers]
    assert kinds == ["relu", "batchnorm", "conv", "maxpool"] * 3 + [
        "global_avg_pool", "dropout", "dense", "relu", "dense", "softmax"]
    assert g.layer(3).params == {"filters": 64, "kernel_size": 3, "stride": 1}
    assert g.shapes()[g.output_id] == (10,)


def test_json_round_trip_keeps_everything():
    g = initial_graph((3, 32, 32), 5)
    g.history.append({"op": "wider", "layer": 3})
    back = Graph.from_json(g.to_json())
    assert back.to_dict() == g.to_dict()
    assert back.describe() == "conv64-pool-conv64-pool-conv64-pool-gap-dense64-dense5"


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [4, 8, 13, 28, 32])
def test_builder_output_shape_and_parameter_count(channels, size):
    g = initial_graph((channels, size, size), 7)
    module = build_module(g).eval()
    out = module(torch.randn(3, channels, size, size))
    assert out.shape == (3, 7)
    assert sum(p.numel() for p in module.parameters()) == g.param_count()


def test_merge_layers_add_and_concat_build_and_run():
    g = initial_graph((1, 16, 16), 4)
    layers = list(g.layers)
    # after the second conv (id 7, 64x8x8): add the first block's pooled output (id 4, 64x8x8),
    # then concatenate the second BatchNorm's output (id 6, 64x8x8); the second pool reads the result
    layers[7:7] = [Layer(100, "add", (7, 4)), Layer(101, "concat", (100, 6))]
    layers[9] = Layer(layers[9].id, layers[9].type, (101,), layers[9].params)
    g2 = Graph(g.input_shape, 4, layers)
    assert g2.shapes()[101] == (128, 8, 8)
    assert build_module(g2)(torch.randn(2, 1, 16, 16)).shape == (2, 4)


def test_invalid_graphs_are_refused_with_a_reason():
    g = initial_graph((1, 8, 8), 2)
    with pytest.raises(ValueError, match="inputs"):
        Graph(g.input_shape, 2, [Layer(1, "relu", (5,))])
    with pytest.raises(ValueError, match="unknown type"):
        Graph(g.input_shape, 2, [Layer(1, "lstm", (0,))])
    with pytest.raises(ValueError, match="dense.*vector"):
        Graph(g.input_shape, 2, [Layer(1, "dense", (0,), {"units": 2})])


def test_an_ensemble_averages_its_members_probabilities_and_stands_in_for_logits():
    from automl.arch.builder import EnsembleModule

    torch.manual_seed(0)
    members = [build_module(initial_graph((1, 8, 8), 3, width=w)).eval() for w in (4, 8)]
    x = torch.randn(5, 1, 8, 8)
    out = EnsembleModule(members).eval()(x)
    average = (torch.softmax(members[0](x), 1) + torch.softmax(members[1](x), 1)) / 2
    assert torch.allclose(torch.softmax(out, 1), average, atol=1e-6) and torch.allclose(out.exp(), average, atol=1e-6)
    assert torch.allclose(torch.softmax(EnsembleModule(members[:1])(x), 1), torch.softmax(members[0](x), 1), atol=1e-6)


def test_shifted_views_average_the_probabilities_of_zero_padded_shifts_and_mirror_images():
    from automl.arch.builder import ShiftedViews

    class Recorder(torch.nn.Module):
        """Keeps every copy it is shown; equal logits for two classes."""

        def __init__(self) -> None:
            super().__init__()
            self.inputs: list[torch.Tensor] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.inputs.append(x.clone())
            return torch.zeros(len(x), 2)

    net = Recorder()
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 1, 1] = 1.0
    out = ShiftedViews(net, 1, flip=True)(x)
    moved = sorted(tuple(int(i) for i in (v[0, 0] == 1).nonzero()[0]) for v in net.inputs)
    assert len(net.inputs) == 18 and all(v.shape == x.shape for v in net.inputs)
    shifts = [(1 + dy, 1 + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    assert moved == sorted(shifts + [(row, 4 - col) for row, col in shifts])  # and each mirrored left-right
    assert torch.allclose(out.exp(), torch.full((1, 2), 0.5))

    torch.manual_seed(0)
    model = build_module(initial_graph((1, 8, 8), 3, width=4)).eval()
    x = torch.randn(4, 1, 8, 8)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    copies = [padded[:, :, 1 + dy : 9 + dy, 1 + dx : 9 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    average = torch.stack([torch.softmax(model(c), 1) for c in copies]).mean(0)
    assert torch.allclose(ShiftedViews(model, 1)(x).exp(), average, atol=1e-6)
    assert torch.allclose(ShiftedViews(model, 0)(x).exp(), torch.softmax(model(x), 1), atol=1e-6)
