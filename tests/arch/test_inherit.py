"""Weight inheritance: a preserving morph's child computes its parent's logits; a shrunk child keeps
every slice that fits. Parents are random graphs with randomized ("trained") weights and BN stats."""

from __future__ import annotations

import random

import pytest
import torch

from automl.arch.builder import build_module
from automl.arch.channels import Channels, channel_flow
from automl.arch.graph import Graph, initial_graph
from automl.arch.inherit import RULES, inherit_weights, key
from automl.arch.morph import MORPHS, OPERATIONS, PRESERVING, MorphLimits, apply_morph, possible_morphs, random_morph

LIMITS = MorphLimits(max_depth=8, max_width=64)
State = dict[str, torch.Tensor]


def trained(state: State, gen: torch.Generator) -> State:
    """Pretend training happened: move every weight, and give BatchNorms non-trivial statistics."""
    out = {}
    for k, v in state.items():
        if k.endswith("running_var"):
            v = 0.5 + 1.5 * torch.rand(v.shape, generator=gen, dtype=v.dtype)
        elif k.endswith("running_mean"):
            v = 0.5 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        elif v.is_floating_point():
            v = v + 0.2 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        out[k] = v
    return out


def random_parent(channels: int, size: int, seed: int) -> tuple[Graph, State]:
    """The seed network after ``seed % 4`` random preserving morphs, weights inherited at each step."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    g = initial_graph((channels, size, size), 5, width=16)
    state = trained(build_module(g).double().state_dict(), gen)
    for _ in range(seed % 4):
        g = random_morph(g, rng, LIMITS, ops=PRESERVING)
        state = trained(inherit_weights(g, state), gen)
    return g, state


def logits(graph: Graph, state: State, x: torch.Tensor) -> torch.Tensor:
    module = build_module(graph).to(x.dtype)
    module.load_state_dict(state)  # strict: the inherited state must be complete and fit exactly
    with torch.no_grad():
        return module.eval()(x)


def images(graph: Graph, state: State) -> torch.Tensor:
    x = torch.randn((4,) + graph.input_shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return x.to(next(iter(state.values())).dtype)


def max_gap(parent: Graph, parent_state: State, child: Graph, child_state: State,
            want: torch.Tensor | None = None) -> tuple[float, float]:
    """(max |child logits - parent logits|, max |parent logits|) on random images."""
    x = images(parent, parent_state)
    want = logits(parent, parent_state, x) if want is None else want
    return (logits(child, child_state, x) - want).abs().max().item(), want.abs().max().item()


def assert_same_function(parent: Graph, parent_state: State, child: Graph, child_state: State,
                         want: torch.Tensor | None = None) -> None:
    gap, scale = max_gap(parent, parent_state, child, child_state, want)
    assert scale > 1e-2, "degenerate parent: logits too small for the comparison to mean anything"
    assert gap <= 1e-4 * max(1.0, scale), f"{child.history[-1]}: logits differ by {gap} (scale {scale})"


@pytest.mark.parametrize("op", PRESERVING)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [8, 13, 28])
def test_preserving_op_keeps_the_function(op, channels, size):
    applied = 0
    for seed in range(4):
        g, state = random_parent(channels, size, seed)
        specs = [s for s in possible_morphs(g, LIMITS) if s["op"] == op]
        rng = random.Random(seed)
        want = logits(g, state, images(g, state))
        for spec in rng.sample(specs, min(2, len(specs))):
            child = apply_morph(g, spec, rng)
            assert_same_function(g, state, child, inherit_weights(child, state), want)
            applied += 1
    assert applied >= 4, f"{op} was applicable only {applied} times"


def test_float32_states_stay_float32_and_close():
    g, state = random_parent(3, 13, 3)
    state32 = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    for op in PRESERVING:
        child = random_morph(g, random.Random(0), LIMITS, ops=[op])
        new = inherit_weights(child, state32)
        assert all(v.dtype == torch.float32 for v in new.values() if v.is_floating_point())
        assert_same_function(g, state32, child, new)


def test_identity_batchnorm_is_exact_in_float32():
    g = initial_graph((2, 9, 9), 3, width=8)
    child = apply_morph(g, {"op": "deeper_conv", "after": 5})
    bn = child.history[-1]["new_ids"][1]
    module = build_module(child).eval()
    module.load_state_dict(inherit_weights(child, module.state_dict()))
    x = torch.randn(4, 8, 5, 5) * 10
    with torch.no_grad():
        assert torch.equal(module.ops[f"L{bn}"](x), x)


def test_the_comparison_catches_a_wrong_transfer():
    """Without Net2Net's division, or with random new weights, the child computes something else."""
    g, state = random_parent(1, 13, 0)
    child = apply_morph(g, {"op": "wider_conv", "layer": 7}, random.Random(0))
    good = inherit_weights(child, state)
    flow = channel_flow(child, 7, Channels(tuple(range(16)) + tuple(child.history[-1]["sources"]), 16))
    bad = dict(good)
    for layer_id in flow.consumers:
        bad[key(layer_id, "weight")] = bad[key(layer_id, "weight")].clone() * 2  # undo a halving and more
    gap, scale = max_gap(g, state, child, bad)
    assert gap > 1e-3 * scale
    skip = apply_morph(g, {"op": "skip_add", "from": 1, "to": 3})
    random_init = {k: v.double() for k, v in build_module(skip).state_dict().items()}
    random_init.update({k: v for k, v in state.items() if k in random_init})
    gap, scale = max_gap(g, state, skip, random_init)
    assert gap > 1e-3 * scale


def test_seed_network_gets_its_parent_tensors():
    g = initial_graph((1, 8, 8), 3, width=8)
    state = trained(build_module(g).state_dict(), torch.Generator().manual_seed(0))
    new = inherit_weights(g, state)
    assert new.keys() == state.keys() and all(torch.equal(new[k], state[k]) for k in state)


@pytest.mark.parametrize("op", ["shrink_remove", "shrink_narrow"])
@pytest.mark.parametrize("channels,size", [(1, 8), (3, 13), (1, 28)])
def test_shrunk_child_loads_and_keeps_every_slice_that_fits(op, channels, size):
    applied = 0
    for seed in range(4):
        g, state = random_parent(channels, size, seed)
        for spec in [s for s in possible_morphs(g, LIMITS) if s["op"] == op][:4]:
            child = apply_morph(g, spec)
            new = inherit_weights(child, state)
            build_module(child).double().load_state_dict(new)  # strict load: nothing missing, all fits
            check_kept_slices(child, state, new)
            applied += 1
    assert applied >= 2


def check_kept_slices(child: Graph, parent: State, new: State) -> None:
    spec = child.history[-1]
    for k, v in new.items():
        if k in parent and parent[k].shape == v.shape:
            assert torch.equal(v, parent[k]), k
    assert not any(key(i, "") in k for i in spec.get("removed", ()) for k in new)
    if spec["op"] == "shrink_narrow":
        layer, width = spec["layer"], spec["width"]
        assert torch.equal(new[key(layer, "weight")], parent[key(layer, "weight")][:width])
        assert torch.equal(new[key(layer, "bias")], parent[key(layer, "bias")][:width])
        flow = channel_flow(child, layer, Channels(tuple(range(width)), spec["old_width"]))
    elif spec["old_channels"] != child.shapes()[spec["kept_input"]][0]:  # a concat was removed
        n = child.shapes()[spec["kept_input"]][0]
        flow = channel_flow(child, spec["kept_input"], Channels(tuple(range(n)), spec["old_channels"]),
                            set(spec["consumers"]))
    else:
        return
    for layer_id, ch in flow.consumers.items():
        w = new[key(layer_id, "weight")]
        for j, i in enumerate(ch.index):
            assert torch.equal(w[:, j], parent[key(layer_id, "weight")][:, i])


def test_every_declared_morph_has_a_weight_rule_and_every_rule_a_morph():
    assert set(RULES) == set(MORPHS) and OPERATIONS == tuple(MORPHS)
    assert set(PRESERVING) == {name for name, m in MORPHS.items() if m.preserving}
    assert {"shrink_remove", "shrink_narrow"} == set(OPERATIONS) - set(PRESERVING)


def test_every_morph_applies_and_its_child_loads_strictly():
    """Each declared operation, applied where its ``candidates`` say, gives a child whose inherited
    state loads strictly (a missing or misshapen tensor would be an error)."""
    rng = random.Random(0)
    for name, morph in MORPHS.items():
        applied = 0
        for seed in range(6):
            g, state = random_parent(1, 12, seed)
            specs = list(morph.candidates(g, LIMITS, name))
            if specs:
                child = apply_morph(g, rng.choice(specs), rng)
                build_module(child).double().load_state_dict(inherit_weights(child, state))
                applied += 1
        assert applied, f"{name}: no target found in six random parents"
