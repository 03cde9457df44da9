"""Morphisms on graphs as data: validity, purity, reproducibility and limits (no torch needed)."""

from __future__ import annotations

import json
import random

import pytest

from automl.arch.channels import consumers, conv_count, logits_id
from automl.arch.graph import Graph, initial_graph
from automl.arch.morph import OPERATIONS, MorphLimits, apply_morph, possible_morphs, random_morph

LIMITS = MorphLimits(max_depth=8, max_width=64)


def grown(seed: int = 0, steps: int = 4, shape: tuple[int, int, int] = (1, 16, 16)) -> Graph:
    """A seed network after a few preserving morphs, so that every operation has targets."""
    g = initial_graph(shape, 5, width=16)
    rng = random.Random(seed)
    for op in ("deeper_conv", "skip_add", "skip_concat", "deeper_dense")[:steps]:
        g = random_morph(g, rng, LIMITS, ops=[op]) or g
    return g


GRAPHS = [initial_graph((3, 13, 13), 4, width=16), grown(0), grown(1, shape=(3, 28, 28))]


def widths(g: Graph) -> list[int]:
    return [l.params["filters" if l.type == "conv" else "units"] for l in g.layers if l.type in ("conv", "dense")]


def check_child(parent: Graph, child: Graph, op: str) -> None:
    """What every child must satisfy, whatever the operation."""
    child.validate()
    assert child.layers[-1].type == "softmax" and child.shapes()[child.output_id] == (parent.n_classes,)
    assert child.history[:-1] == parent.history and child.history[-1]["op"] == op
    json.dumps(child.history[-1])  # the completed spec is plain JSON
    assert Graph.from_json(child.to_json()).to_dict() == child.to_dict()
    spec = child.history[-1]
    old_ids, new = {l.id for l in parent.layers}, {l.id for l in child.layers}
    assert old_ids - new == set(spec.get("removed", ()))  # only a removal drops ids
    assert new - old_ids == set(spec.get("new_ids", ()))  # new layers are exactly the announced ones
    assert all(i not in old_ids for i in spec.get("new_ids", ()))


@pytest.mark.parametrize("op", OPERATIONS)
@pytest.mark.parametrize("graph_index", range(len(GRAPHS)))
def test_every_op_gives_valid_unmutated_reproducible_children(op, graph_index):
    g = GRAPHS[graph_index]
    before = g.to_dict()
    specs = [s for s in possible_morphs(g, LIMITS) if s["op"] == op]
    if graph_index > 0 or op != "shrink_remove":  # the bare seed may have nothing safe to remove
        assert specs, f"no {op} on {g.describe()}"
    for k, spec in enumerate(specs[:6]):
        child = apply_morph(g, spec, random.Random(k))
        assert g.to_dict() == before, "apply_morph mutated its input"
        check_child(g, child, op)
        again = apply_morph(g, child.history[-1], random.Random(99))
        assert again.to_dict() == child.to_dict()


def test_deeper_conv_inserts_identity_shaped_block_after_the_relu():
    g = initial_graph((3, 16, 16), 4, width=16)
    readers = consumers(g)[5]
    child = apply_morph(g, {"op": "deeper_conv", "after": 5, "kernel_size": 5})
    conv, bn, relu = child.history[-1]["new_ids"]
    assert [child.layer(i).type for i in (conv, bn, relu)] == ["conv", "batchnorm", "relu"]
    assert child.layer(conv).inputs == (5,) and child.layer(conv).params["filters"] == g.shapes()[5][0]
    assert child.layer(conv).params["kernel_size"] == 5
    assert all(child.layer(r).inputs == (relu,) for r in readers)
    assert conv_count(child) == conv_count(g) + 1


def test_deeper_then_remove_gives_the_parent_back():
    g = initial_graph((1, 12, 12), 3, width=16)
    deeper = apply_morph(g, {"op": "deeper_conv", "after": 9})
    conv = deeper.history[-1]["new_ids"][0]
    assert {"op": "shrink_remove", "layer": conv} in possible_morphs(deeper)
    back = apply_morph(deeper, {"op": "shrink_remove", "layer": conv})
    assert back.history[-1]["removed"] == deeper.history[-1]["new_ids"]
    assert [l.to_dict() for l in back.layers] == [l.to_dict() for l in g.layers]


def test_wider_replicates_existing_units_and_respects_the_width_cap():
    g = initial_graph((1, 12, 12), 3, width=16)
    spec = next(s for s in possible_morphs(g, MorphLimits(max_width=24)) if s["op"] == "wider_conv" and s["layer"] == 7)
    assert spec["width"] == 24
    child = apply_morph(g, spec, random.Random(3))
    done = child.history[-1]
    assert child.layer(7).params["filters"] == 24 and done["old_width"] == 16
    assert len(done["sources"]) == 8 and all(0 <= s < 16 for s in done["sources"])
    assert not any(s["op"] == "wider_dense" and s["layer"] == logits_id(g) for s in possible_morphs(g))


def test_skip_add_and_concat_wire_the_merge_in_place_of_the_later_layer():
    g = initial_graph((1, 16, 16), 3, width=16)
    readers = consumers(g)[3]  # conv 3 (16x16) is fed by relu 1 through itself
    add = apply_morph(g, {"op": "skip_add", "from": 1, "to": 3})
    conv, merge = add.history[-1]["new_ids"]
    assert add.layer(conv).params == {"filters": 16, "kernel_size": 1, "stride": 1} and add.layer(conv).inputs == (1,)
    assert add.layer(merge).inputs == (3, conv) and all(add.layer(r).inputs == (merge,) for r in readers)
    cat = apply_morph(g, {"op": "skip_concat", "from": 1, "to": 3})
    (merge,) = cat.history[-1]["new_ids"]
    assert cat.layer(merge).inputs == (3, 1) and cat.shapes()[merge][0] == 16 + 1


def test_shrink_narrow_halves_keeping_at_least_eight():
    g = initial_graph((1, 12, 12), 3, width=16)
    child = apply_morph(g, {"op": "shrink_narrow", "layer": 3})
    assert child.layer(3).params["filters"] == 8
    assert not any(s["op"] == "shrink_narrow" and s["layer"] == 3 for s in possible_morphs(child))


@pytest.mark.parametrize("spec", [
    {"op": "deeper_conv", "after": 3},  # not a ReLU
    {"op": "deeper_dense", "after": 5},  # a ReLU on a feature map
    {"op": "wider_dense", "layer": 17},  # the classifier
    {"op": "skip_add", "from": 9, "to": 1},  # backwards
    {"op": "grow", "layer": 3},
    {"op": "deeper_conv", "after": 5, "new_ids": [3, 100, 101]},  # id already used
    {"op": "wider_conv", "layer": 3, "width": 8},  # not wider
    {"op": "wider_conv", "layer": 3, "width": 66, "sources": [64, 0]},  # source out of range
])
def test_invalid_specs_are_refused(spec):
    with pytest.raises(ValueError):
        apply_morph(initial_graph((1, 12, 12), 3), spec)


def test_limits_on_depth_width_and_operations():
    g = grown(0)
    at_depth = MorphLimits(max_depth=conv_count(g), max_width=64)
    ops = {s["op"] for s in possible_morphs(g, at_depth)}
    assert "deeper_conv" not in ops and "skip_add" not in ops and "wider_conv" in ops
    assert "deeper_conv" in {s["op"] for s in possible_morphs(g, MorphLimits(max_depth=conv_count(g) + 1))}
    assert not any(s["op"].startswith("wider") for s in possible_morphs(g, MorphLimits(max_width=max(widths(g)))))
    for op in OPERATIONS:
        only = MorphLimits(allowed=(op,))
        assert {s["op"] for s in possible_morphs(g, only)} <= {op}
        others = MorphLimits(allowed=tuple(o for o in OPERATIONS if o != op))
        assert not [s for s in possible_morphs(g, others) if s["op"] == op]
    assert possible_morphs(g, MorphLimits(allowed=())) == []
    assert random_morph(g, random.Random(0), MorphLimits(allowed=())) is None
    assert random_morph(g, random.Random(0), LIMITS, ops=["deeper_dense"]).history[-1]["op"] == "deeper_dense"


@pytest.mark.parametrize("seed", range(12))
def test_random_sequences_stay_valid_and_within_limits(seed):
    rng = random.Random(seed)
    limits = MorphLimits(max_depth=6, max_width=48)
    g = initial_graph((rng.choice([1, 3]),) + (rng.choice([8, 13, 28]),) * 2, rng.choice([2, 10]), width=16)
    for step in range(rng.randint(5, 10)):
        before = g.to_dict()
        child = random_morph(g, rng, limits)
        assert child is not None and g.to_dict() == before
        check_child(g, child, child.history[-1]["op"])
        assert conv_count(child) <= limits.max_depth and max(widths(child)) <= limits.max_width
        assert apply_morph(g, child.history[-1]).to_dict() == child.to_dict()
        g = child
    assert len(g.history) >= 5


def test_morph_module_imports_no_torch():
    import ast
    from pathlib import Path

    import automl.arch.morph

    tree = ast.parse(Path(automl.arch.morph.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(name.split(".")[0] == "torch" for name in names)


def test_tuning_steps_stay_in_range_carry_along_a_lineage_and_survive_json():
    g = initial_graph((1, 12, 12), 3, width=16)
    for _ in range(3):  # the learning rate's lowest step is -3
        g = apply_morph(g, {"op": "learning_rate", "step": g.step("learning_rate") - 1})
    assert {"op": "learning_rate", "step": -4} not in possible_morphs(g)
    with pytest.raises(ValueError, match="not applicable"):
        apply_morph(g, {"op": "learning_rate", "step": -4})
    child = apply_morph(g, {"op": "deeper_conv", "after": 9})  # an architecture morph keeps the steps
    assert child.tuning == {"learning_rate": -3} and child.layers != g.layers
    assert Graph.from_json(child.to_json()).tuning == {"learning_rate": -3}
    assert child.describe().endswith("(lr/8)")
    assert "tuning" not in initial_graph((1, 12, 12), 3).to_dict()  # untuned graphs are written as before


def test_dropout_moves_by_steps_within_its_bounds_and_leaves_the_rest_alone():
    g = initial_graph((1, 12, 12), 3, width=16, dropout=0.5)
    (drop,) = [l.id for l in g.layers if l.type == "dropout"]
    assert [s["rate"] for s in possible_morphs(g) if s["op"] == "dropout"] == [0.375]
    child = apply_morph(g, {"op": "dropout", "layer": drop, "rate": 0.375})
    assert child.layer(drop).params["rate"] == 0.375
    assert [l for l in child.layers if l.id != drop] == [l for l in g.layers if l.id != drop]
