"""A trained network as a folder: its graph and weights, the ensemble members and test-time views a
final model adds, and what the final fit made of each member. One format for a candidate and a final
model, so that ``load_network`` reads either, with the weights loaded strictly."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from automl.arch.builder import EnsembleModule, ShiftedViews, build_module
from automl.arch.graph import Graph
from automl.config import Params
from automl.fileio import write_json, write_text
from automl.search.store import load_weights, save_weights

NOTES = "notes.txt"  # in a final fit's folder

Network = tuple[Graph, dict[str, torch.Tensor]]
MEMBERS = "members"  # the folder of a final model's ensemble members, one numbered folder each
VIEWS = "views.json"  # in a final fit's folder: the test-time views its model averages over
FITTED_MEMBER = "final-fitted after the best (final_fit.fitted_members)"  # the notes of such a member
SNAPSHOT_MEMBER = "the best at the end of a cycle of its final fit (final_fit.snapshots)"  # ... and of a snapshot


@dataclass(frozen=True)
class Views:
    """How the final model reads an image (``final_fit.test_shifts``): as copies shifted by up to
    ``shift`` pixels, and mirrored with ``flip``; the default, as it is."""

    shift: int = 0
    flip: bool = False

    @classmethod
    def of(cls, params: Params) -> Views:
        """Only views the training crops and flips showed the network: never a shift larger than its
        ``train.crop_padding``, no mirror image unless it trained on them."""
        train = params.train
        if not params.final_fit.test_shifts or not train.augment:
            return cls()
        return cls(min(params.final_fit.test_shifts, train.crop_padding), train.flip)

    @classmethod
    def saved_in(cls, folder: str | Path) -> Views:
        """The views a final fit saved in ``folder``; none in a candidate's folder."""
        path = Path(folder) / VIEWS
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()

    @property
    def count(self) -> int:
        return (2 * self.shift + 1) ** 2 * (2 if self.flip else 1)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return ShiftedViews(module, self.shift, self.flip).eval() if self.count > 1 else module


def save_network(graph: Graph, state: dict[str, torch.Tensor], folder: str | Path,
                 members: Sequence[Network] = (), notes: Sequence[str] = (), views: Views = Views(),
                 member_notes: Sequence[str] = ()) -> None:
    """Weights first, then the graph that names them (``load_network`` reads both); ensemble
    members in ``folder/members/<i>/`` (member i with ``member_notes[i - 1]``, if any, as its ``notes.txt``:
    what the final fit made of it), the test-time ``views`` in ``views.json`` and what the final fit
    decided in ``notes.txt``, replacing any an earlier final fit left there (no timestamps: the same fit
    writes the same bytes, for DVC)."""
    folder = Path(folder)
    shutil.rmtree(folder / MEMBERS, ignore_errors=True)
    (folder / NOTES).unlink(missing_ok=True)
    (folder / VIEWS).unlink(missing_ok=True)
    if notes:
        write_text(folder / NOTES, "".join(f"{line}\n" for line in notes))
    if views.count > 1:
        write_json(folder / VIEWS, dataclasses.asdict(views))
    for i, (member_graph, member_state) in enumerate(members, 1):
        save_network(member_graph, member_state, folder / MEMBERS / str(i), notes=member_notes[i - 1 : i])
    save_weights(state, folder / "weights.pt")
    write_text(folder / "graph.json", graph.to_json())


def load_network(folder: str | Path, views: bool = True) -> tuple[Graph, torch.nn.Module]:
    """A saved network (a candidate's folder or a final fit's, with its ensemble members and test-time
    views if any; ``views`` False leaves the views out) in eval mode; weights load strictly."""
    folder = Path(folder)
    member_dirs = sorted((folder / MEMBERS).glob("*"), key=lambda p: int(p.name)) if (folder / MEMBERS).is_dir() else []
    networks = [(Graph.from_json((d / "graph.json").read_text()), load_weights(d / "weights.pt"))
                for d in [folder, *member_dirs]]
    saved = Views.saved_in(folder) if views else Views()
    return networks[0][0], saved.wrap(network_module(networks))


def network_module(networks: Sequence[Network]) -> torch.nn.Module:
    """One network's module, or the ensemble of several, in eval mode (weights load strictly)."""
    modules = []
    for graph, state in networks:
        module = build_module(graph)
        module.load_state_dict(state)
        modules.append(module)
    return (modules[0] if len(modules) == 1 else EnsembleModule(modules)).eval()
