"""Settings: one frozen dataclass per component, built from its section of ``params.yaml``.

Why frozen dataclasses and not a mutable settings class (as Auto-Keras 0.4's ``Constant``): a run's
settings are fixed at its start, travel to workers as plain data, and are logged to MLflow as they are.
``--set key=value`` overrides are validated against the fields, so a typo is an error, not a no-op.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from automl.errors import ConfigError

STRATEGIES = ("bayesian", "random", "initial")  # kept in step with automl.search.strategies.STRATEGY_CLASSES (tested)


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of the whole dataset held out; the rest trains. Stratified by label, seeded."""

    val_fraction: float = 0.1
    test_fraction: float = 0.2


@dataclass(frozen=True)
class PreprocessConfig:
    """Images are resized to ``image_size`` squared (0: from the data, ``automl.training.protocol.
    auto_image_size``); normalization statistics come from training data."""

    image_size: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """How one candidate trains. 0 for ``max_epochs``, ``patience`` or ``batch_size`` means "from the
    data" (``automl.training.protocol``): about ``candidate_steps`` optimizer steps per candidate, in
    batches sized from the training set. ``flip`` is off by default: a mirrored digit is another symbol.
    ``score_epochs`` n > 0: a candidate is ranked (and the searcher told) by the mean validation accuracy
    of its last n epochs instead of its best epoch's: on a few hundred validation images the curve moves
    1-2 points between epochs, and the maximum of a noisy curve favours the noisiest candidate.
    ``label_smoothing`` spreads that share of each training target over the other classes: on a few
    thousand images a network fits its training labels with growing confidence long before it stops
    improving on new ones, and softer targets slow that; 0.1 measured 0.59 points lower on the dSprites
    eighths (README), so it is off by default."""

    max_epochs: int = 0
    patience: int = 0
    batch_size: int = 0
    candidate_steps: int = 400
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"  # cosine (to the end of the candidate's epochs or the deadline) | constant
    weight_decay: float = 1e-4
    augment: bool = True
    crop_padding: int = 2
    flip: bool = False
    threads: int = 0  # 0: one per CPU core
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda | cuda:N
    amp: bool = True  # training steps in bf16 on CPUs with bf16 instructions and on GPUs (fp16 on older GPUs)
    score_epochs: int = 0  # 0: the best epoch's validation accuracy ranks a candidate
    label_smoothing: float = 0.0  # share of each training target spread over the other classes


@dataclass(frozen=True)
class SearchConfig:
    """The architecture search: strategy, budget in seconds, candidates per round, the acquisition
    (UCB ``beta``; simulated annealing from ``t_init`` down to ``t_min`` by ``anneal_decay``, with
    ``neighbours`` morphs per expansion; ``max_chain`` n > 0: a proposal is at most n morphs from the trained
    network it inherits from, 0 no limit), the edit-distance weight of skip connections, and the limits a
    user sets without forking: depth (conv layers), width, operations (comma-separated; empty = every
    architecture morph, and with ``tune_training`` the morphs of a candidate's learning rate, weight decay
    and dropout too: off by default, level on five seeds of the dSprites eighths, README), memory per
    candidate in MB (0 = a share of free GPU memory, or of RAM on CPU). A run of
    ``max_consecutive_failures`` failed candidates (0 = no limit) ends the search: something is wrong
    with every candidate, and the rest of the budget would be spent failing. ``seed_width``: the conv
    channels and dense units of the seed network the search starts from (Auto-Keras's 64; Optuna's TPE
    over the seed network's settings picked twice that on each seed of the rotation eighths, README).
    ``extra_seed_widths`` (comma-separated, e.g. "128"): more seed networks of those widths, trained
    from scratch right after the first, so the search grows from whichever width suits the data
    instead of one fixed in advance (the Bayesian and random strategies; "initial" trains one).
    ``root_share`` > 0: the seed network trains until that share of the search's time (annealed to it),
    so that every child inherits a converged network instead of one trained as briefly as itself.
    ``warm_start`` (a folder of an earlier search, or in the pipeline an MLflow run id, a ``models:/``
    URI or ``champion``): begin from that search's ``warm_start_top`` best networks instead of the
    seed's; when their input size or channels differ from this data's, ``warm_start_mismatch`` says
    whether to refuse or to start from the seed network (``automl.session.warm``)."""

    strategy: str = "bayesian"
    time_limit: float = 300.0
    max_candidates: int = 0  # 0: no cap, the time budget ends the search
    parallel: int = 1
    max_consecutive_failures: int = 5
    beta: float = 2.576
    kernel_lambda: float = 1.0
    t_init: float = 1.0
    t_min: float = 0.01
    anneal_decay: float = 0.85
    neighbours: int = 8
    max_chain: int = 0  # 0: no limit on the morphs between a proposal and its trained parent
    max_depth: int = 12
    max_width: int = 512
    seed_width: int = 64
    extra_seed_widths: str = ""  # "": the search starts from one seed network
    operations: str = ""
    tune_training: bool = False
    max_memory_mb: float = 0.0
    root_share: float = 0.0  # 0: the seed network trains like any candidate
    warm_start: str = ""  # "": start from the seed network
    warm_start_top: int = 3
    warm_start_mismatch: str = "refuse"  # or "seed"

    def seed_widths(self) -> tuple[int, ...]:
        """The seed networks' widths: ``seed_width``, then ``extra_seed_widths`` in order (a width named
        twice is trained once); ValueError when one is not a whole number."""
        widths = [self.seed_width] + [int(w) for w in self.extra_seed_widths.split(",") if w.strip()]
        return tuple(dict.fromkeys(widths))

    def allowed_operations(self) -> tuple[str, ...]:
        """The operations named in ``operations`` (empty: the searcher's default set; the session checks
        the names)."""
        return tuple(op.strip() for op in self.operations.split(",") if op.strip())


@dataclass(frozen=True)
class FinalFitConfig:
    """``retrain`` re-initializes the best architecture; otherwise its searched weights keep training.
    ``epochs`` 0: twice a candidate's epochs (``automl.training.protocol.final_epochs``).
    ``time_limit`` (seconds, 0 = none) bounds it: the learning rate anneals to whichever end comes first,
    so a total budget can hold the search and the final fit both. ``ensemble`` > 1 averages the
    final-fitted best with the next best candidates (searched weights): they are trained already.
    ``fitted_members`` n > 1: the first n of those networks are all final-fitted, one after the other,
    each in 1/n of ``time_limit``, so none is averaged in less trained than the time allows.
    ``lr_scale`` sets the peak learning rate of a final fit that continues searched weights (a multiple
    of ``train.learning_rate``): those weights have settled at the end of an annealed schedule, and a
    full-rate restart can undo some of it. Measured at 0.3 it helped a converged network on one dataset
    and hurt it on another (README), so the default keeps the full rate.
    ``test_shifts`` n > 0: the final model averages its class probabilities over (2n+1)^2 copies of each
    image shifted by up to n pixels (and their mirror images when ``train.flip``): the shifts its random
    crops trained it on, so each copy is an image it knows how to read, and their errors partly cancel
    (README "Test-time shifts"). Never more than ``train.crop_padding``; none without ``train.augment``.
    ``average`` a > 0: the final weights are the mean of the weights at the ends of the epochs in the last
    a of the final fit's schedule, batch-norm statistics measured again (``automl.training.averaging``).
    ``snapshots`` n > 1: the best's final fit runs as n annealed cycles of 1/n of its epochs and time, each
    from the end of the one before, and the final model averages the n ends (a snapshot ensemble): the
    first end is a final fit of 1/n the length, which scored better on the rotation labels, the later
    ones are what the longer fit adds on MNIST and Indian Pines. Measured at 2, paired: +0.68 points on
    the rotation eighths, -0.42 on Indian Pines (README "Snapshots of the final fit"), so off by default.
    ``in_search_budget``: the final fit runs inside ``search.time_limit`` (``time_limit`` stays 0): the
    search ends early by what the best candidate's final fit is expected to take, measured from its own
    epochs, and the final fit gets the time the search left (``automl.session.budget``), so one budget
    holds the whole run and a final fit that needs less than a fixed share leaves the rest to the search."""

    retrain: bool = False
    epochs: int = 0
    time_limit: float = 0.0
    ensemble: int = 1
    fitted_members: int = 1
    lr_scale: float = 1.0
    test_shifts: int = 1
    average: float = 0.0
    snapshots: int = 1
    in_search_budget: bool = False


@dataclass(frozen=True)
class Params:
    """Every knob of a search and its final fit, as the library sees them. The pipeline's settings
    (data location, tracking, runner, paths) extend it on the pipeline's side (``tasks.settings``)."""

    seed: int = 42
    split: SplitConfig = field(default_factory=SplitConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    final_fit: FinalFitConfig = field(default_factory=FinalFitConfig)

    def __post_init__(self) -> None:
        _validate(self)

    def search_params(self) -> dict[str, Any]:
        """The flat params of the library's own sections (a pipeline's subclass adds its own)."""
        return {k: v for k, v in self.flat().items() if k.split(".")[0] in _LIBRARY_SECTIONS}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """``{"train.batch_size": 128, ...}``: the form MLflow params and ``--set`` use."""
        return _flatten(self.to_dict())

    def replace(self, **overrides: Any) -> "Params":
        """A copy with dotted keys overridden, e.g. ``replace(**{"search.time_limit": 60})``."""
        return with_overrides(self, overrides)


_LIBRARY_SECTIONS = ("seed", "split", "preprocess", "train", "search", "final_fit")
P = TypeVar("P", bound=Params)


def valid_keys(cls: type[Params] = Params) -> list[str]:
    return sorted(cls().flat())


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def from_dict(raw: dict[str, Any], source: str = "params", cls: type[P] = Params) -> P:
    """Build ``cls`` from a nested mapping; unknown sections or keys are errors naming ``source``."""
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        if key not in {f.name for f in dataclasses.fields(cls)}:
            raise ConfigError(f"{source}: unknown key {key!r}. Valid keys: {', '.join(valid_keys(cls))}")
        current = getattr(defaults, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: section {key!r} must be a mapping, got {value!r}")
            kwargs[key] = _build_section(current, value, f"{source}: {key}", valid_keys(cls))
        else:
            kwargs[key] = _coerce(value, current, f"{source}: {key}")
    return cls(**kwargs)


def _build_section(default: Any, values: dict[str, Any], where: str, keys: list[str]) -> Any:
    names = {f.name for f in dataclasses.fields(default)}
    for name in values:
        if name not in names:
            raise ConfigError(f"{where}: unknown key {name!r}. Valid keys: {', '.join(keys)}")
    coerced = {k: _coerce(v, getattr(default, k), f"{where}.{k}") for k, v in values.items()}
    return dataclasses.replace(default, **coerced)


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Parse ``--set`` strings and YAML scalars into the type of the default."""
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in {"true", "1", "yes", "on"}:
                    return True
                if value.lower() in {"false", "0", "no", "off"}:
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is str:
            return "" if value is None else str(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)  # 2.7 epochs is a typo, not 2
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a {kind.__name__}, got {value!r}") from None


def with_overrides(params: P, overrides: dict[str, Any]) -> P:
    """Apply dotted-key overrides; an unknown key is an error listing the valid ones."""
    nested = params.to_dict()
    keys = set(valid_keys(type(params)))
    for dotted, value in overrides.items():
        if dotted not in keys:
            raise ConfigError(f"unknown parameter {dotted!r}. Valid keys: {', '.join(sorted(keys))}")
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return from_dict(nested, "overrides", type(params))


def parse_set(items: list[str]) -> dict[str, str]:
    """``["a.b=1"]`` -> ``{"a.b": "1"}``, refusing items without ``=``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def load_params(path: str | Path | None = "params.yaml", overrides: dict[str, Any] | None = None,
                cls: type[P] = Params) -> P:
    """Read ``params.yaml`` (defaults when the file is absent) into ``cls`` and apply overrides."""
    raw: dict[str, Any] = {}
    if path is not None and Path(path).exists():
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    params = from_dict(raw, str(path), cls)
    return with_overrides(params, overrides or {})


def _widths_ok(search: SearchConfig) -> bool:
    try:
        return all(1 <= w <= search.max_width for w in search.seed_widths())
    except ValueError:
        return False


def _validate(p: Params) -> None:
    checks = [
        (p.seed >= 0, "seed must be >= 0"),
        (0 < p.split.val_fraction < 1, "split.val_fraction must be in (0, 1): the search ranks candidates on it"),
        (0 <= p.split.test_fraction < 1, "split.test_fraction must be in [0, 1)"),
        (p.split.val_fraction + p.split.test_fraction < 1, "split fractions must leave data to train on"),
        (p.preprocess.image_size == 0 or p.preprocess.image_size >= 4,
         "preprocess.image_size must be 0 (from the data) or at least 4"),
        (p.train.max_epochs >= 0, "train.max_epochs must be >= 0 (0 = from the data)"),
        (p.train.candidate_steps >= 1, "train.candidate_steps must be at least 1"),
        (p.train.lr_schedule in ("cosine", "constant"), "train.lr_schedule must be cosine or constant"),
        (p.train.device in ("auto", "cpu", "cuda") or p.train.device.startswith("cuda:"),
         "train.device must be auto, cpu, cuda or cuda:N"),
        (p.train.patience >= 0, "train.patience must be >= 0 (0 = from the epochs)"),
        (p.train.batch_size >= 0, "train.batch_size must be >= 0 (0 = from the data)"),
        (p.train.learning_rate > 0, "train.learning_rate must be positive"),
        (p.train.weight_decay >= 0, "train.weight_decay must be >= 0"),
        (0 <= p.train.label_smoothing < 1, "train.label_smoothing must be in [0, 1)"),
        (p.train.crop_padding >= 0, "train.crop_padding must be >= 0 (pixels)"),
        (p.train.score_epochs >= 0, "train.score_epochs must be >= 0 (0 = the best epoch's accuracy)"),
        (p.train.threads >= 0, "train.threads must be >= 0 (0 = one per CPU core)"),
        (p.search.time_limit > 0, "search.time_limit must be positive (seconds)"),
        (p.search.max_candidates >= 0, "search.max_candidates must be >= 0 (0 = no cap)"),
        (p.search.parallel >= 1, "search.parallel must be at least 1"),
        (p.search.max_consecutive_failures >= 0, "search.max_consecutive_failures must be >= 0 (0 = no limit)"),
        (p.search.strategy in STRATEGIES, f"search.strategy must be one of {', '.join(STRATEGIES)}"),
        (p.final_fit.epochs >= 0, "final_fit.epochs must be >= 0 (0 = from the candidates' epochs)"),
        (p.final_fit.time_limit >= 0, "final_fit.time_limit must be >= 0 (seconds; 0 = no limit)"),
        (not (p.final_fit.in_search_budget and p.final_fit.time_limit),
         "final_fit.in_search_budget sizes the final fit's time from the search's: leave final_fit.time_limit 0"),
        (p.final_fit.ensemble >= 1, "final_fit.ensemble must be at least 1 (1 = the best network alone)"),
        (1 <= p.final_fit.fitted_members <= p.final_fit.ensemble,
         "final_fit.fitted_members must be between 1 and final_fit.ensemble (the networks in the final model)"),
        (0 < p.final_fit.lr_scale <= 1, "final_fit.lr_scale must be in (0, 1] (1 = train.learning_rate)"),
        (0 <= p.final_fit.test_shifts <= 2, "final_fit.test_shifts must be 0, 1 or 2 (pixels; 0 = off)"),
        (0 <= p.final_fit.average < 1, "final_fit.average must be in [0, 1) (a share of the final fit; 0 = off)"),
        (1 <= p.final_fit.snapshots <= 8, "final_fit.snapshots must be between 1 and 8 (cycles of the final fit)"),
        (p.search.t_min > 0 and 0 < p.search.anneal_decay < 1, "search.t_min > 0 and 0 < search.anneal_decay < 1"),
        (p.search.neighbours >= 1, "search.neighbours must be at least 1"),
        (p.search.max_chain >= 0, "search.max_chain must be >= 0 (0 = no limit)"),
        (p.search.max_depth >= 1 and p.search.max_width >= 1, "search.max_depth and search.max_width must be >= 1"),
        (1 <= p.search.seed_width <= p.search.max_width, "search.seed_width must be between 1 and search.max_width"),
        (_widths_ok(p.search), "search.extra_seed_widths must be whole numbers between 1 and search.max_width, "
                               "separated by commas (e.g. 128 or 32,128)"),
        (p.search.beta >= 0 and p.search.kernel_lambda > 0 and p.search.t_init > 0,
         "search.beta must be >= 0, search.kernel_lambda and search.t_init > 0"),
        (p.search.max_memory_mb >= 0, "search.max_memory_mb must be >= 0 (0 = automatic)"),
        (0 <= p.search.root_share < 1, "search.root_share must be in [0, 1) (0 = the seed trains like any candidate)"),
        (p.search.warm_start_top >= 1, "search.warm_start_top must be at least 1"),
        (p.search.warm_start_mismatch in ("refuse", "seed"), "search.warm_start_mismatch must be refuse or seed"),
        (not p.search.warm_start or p.search.strategy != "initial",
         "search.warm_start needs a strategy that searches (bayesian or random), not initial"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)

