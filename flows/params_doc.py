"""What every param means: the one source of ``automl params`` and of the comments in ``params.yaml``
(``automl params --yaml`` writes that file; a test keeps the repository's copy identical to it)."""

from __future__ import annotations

from typing import Any

import yaml

from tasks.settings import PipelineParams

SECTIONS = {
    "runner": "where `automl run` trains candidates (Prefect task runners); see README \"Scaling out\"",
}

HELP = {
    "seed": "seeds the split, the searcher and every candidate's training",
    "data.source": "embedded dataset that ingest writes to data/<source>/ ('' = none: your own data)",
    "data.csv": "labels CSV: first column file name relative to data.images; second: label",
    "data.images": "folder of the images the CSV names",
    "data.filename_column": "CSV column of file names ('' = first column)",
    "data.label_column": "CSV column of labels ('' = second column)",
    "data.duplicates": "a file or image listed twice: error | drop (keep the first; never across splits)",
    "split.val_fraction": "of all images, stratified by label: ranks candidates during the search",
    "split.test_fraction": "of all images, stratified by label: only the final model sees it",
    "preprocess.image_size": "resized to this size squared; 0 = from the data (their own size, reduced when large)",
    "train.max_epochs": "per candidate (a child continues from its parent's weights); 0 = candidate_steps' worth",
    "train.patience": "epochs without validation improvement before a candidate stops; 0 = max_epochs (no early stop)",
    "train.batch_size": ("images per training step; 0 = about n_train / 40 (a power of two in 16..128), smaller "
                         "where the seed network would take over a quarter of search.max_memory_mb"),
    "train.candidate_steps": "optimizer steps a candidate trains for when max_epochs is 0 (6 to 100 epochs)",
    "train.learning_rate": "Adam's learning rate at the start of each candidate",
    "train.lr_schedule": "cosine: anneal to the end of each candidate's epochs (or the deadline) | constant",
    "train.weight_decay": "L2 penalty of Adam (its weight_decay)",
    "train.augment": "random crop with padding (+ horizontal flip if flip)",
    "train.crop_padding": "pixels of padding the random crop may shift by",
    "train.flip": "random horizontal flips: wrong for digits and text; right for most photos",
    "train.threads": "torch threads; 0 = one per core",
    "train.device": "auto (CUDA when available) | cpu | cuda | cuda:N; parallel candidates spread over GPUs",
    "train.amp": ("mixed precision for training steps: bf16 on CPUs with bf16 instructions and on GPUs "
                  "(else fp16 with loss scaling); scoring stays float32"),
    "train.score_epochs": "rank candidates by the mean val accuracy of their last n epochs (0 = the best epoch's)",
    "train.label_smoothing": "share of each training target spread over the other classes (0 = hard labels)",
    "search.strategy": "bayesian | random (random morphs: the honest baseline) | initial (seed network only)",
    "search.time_limit": "seconds for the whole search",
    "search.max_candidates": "most candidates the search trains (0 = no cap: the time limit ends it)",
    "search.parallel": "candidates proposed per round and trained at once (Prefect tasks)",
    "search.max_consecutive_failures": "end the search after this many failed candidates in a row (0 = never)",
    "search.beta": "UCB = GP mean + beta * GP std",
    "search.kernel_lambda": "weight of the skip-connection distance in the edit distance",
    "search.t_init": "simulated annealing of the acquisition: start temperature",
    "search.t_min": "simulated annealing: stop temperature",
    "search.anneal_decay": "simulated annealing: temperature factor per expansion",
    "search.neighbours": "random morphs tried per expanded architecture",
    "search.max_chain": "most morphs between a proposal and the trained network it inherits from (0 = no limit)",
    "search.max_depth": "most conv layers a candidate may have",
    "search.max_width": "most filters / units of any layer",
    "search.seed_width": "filters / units of the seed network the search starts from",
    "search.extra_seed_widths": "more seed networks trained from scratch after the first, by width (e.g. 128)",
    "search.operations": ("allowed morphs, comma-separated ('' = the architecture's, and the training "
                          "settings' with search.tune_training): deeper_conv,deeper_dense,wider_conv,wider_dense,"
                          "skip_add,skip_concat,shrink_remove,shrink_narrow,learning_rate,weight_decay,dropout"),
    "search.tune_training": ("also morph each candidate's learning rate and weight decay (x2 or /2) and dropout "
                             "(+-0.125), inherited along a lineage"),
    "search.max_memory_mb": "training memory per candidate; 0 = 80% of free GPU memory, or 25% of RAM on CPU",
    "search.root_share": ("share of the search time the seed network trains for; children grow from it "
                          "(0 = like any)"),
    "search.warm_start": ("start from an earlier search's best networks: its folder, an MLflow run id, a "
                          "models:/ URI or champion ('' = from the seed network)"),
    "search.warm_start_top": "how many of the earlier search's best networks the search starts from",
    "search.warm_start_mismatch": ("their input size or channels differ from this data's: refuse | seed (start "
                                   "from the seed network)"),
    "final_fit.retrain": "true: re-initialize the best architecture; false: continue its weights",
    "final_fit.epochs": "epochs of the final fit on train+val (no validation left); 0 = twice a candidate's",
    "final_fit.time_limit": "seconds the final fit may take (it anneals to that end); 0 = no limit",
    "final_fit.ensemble": "networks averaged: the final-fitted best + the next best candidates as searched (1 = alone)",
    "final_fit.fitted_members": ("of those networks, best first, how many the final fit trains, each in an equal "
                                 "share of its time; the rest keep their searched weights"),
    "final_fit.lr_scale": "peak learning rate of a final fit from searched weights, times train.learning_rate",
    "final_fit.test_shifts": "final model averages each image shifted by up to this many pixels ((2n+1)^2 copies; "
                             "<= train.crop_padding; + mirrored if train.flip); 0 = off",
    "final_fit.average": ("final weights = mean of the weights at the ends of the epochs in this last share of "
                          "the final fit (batch-norm statistics measured again); 0 = the last weights"),
    "final_fit.snapshots": ("the best's final fit as this many annealed cycles, each from the last one's end; the "
                            "final model averages their ends (1 = one cycle)"),
    "final_fit.in_search_budget": ("true: the final fit runs inside search.time_limit: the search ends early by the "
                                   "best's expected final fit, which gets the time left (time_limit stays 0)"),
    "tracking.uri": "'' = $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory",
    "tracking.experiment": "MLflow experiment of the runs",
    "tracking.registered_model": "Model Registry name ('' = do not register); alias champion or challenger",
    "runner.kind": "thread (this process) | process (local process pool) | dask (LocalCluster, or address)",
    "runner.address": "tcp://host:8786 of a running Dask scheduler ('' = start a LocalCluster here)",
    "runner.workers": "local processes, one candidate each (0 = search.parallel)",
    "paths.work": "intermediate stage outputs",
    "paths.export": "TorchScript, ONNX and labels for hand-off",
    "paths.reports": "<run id>/report.html and its PNGs, also logged to the run in MLflow",
}

HEADER = ("# Every knob of a pipeline run. `automl run --set section.key=value` overrides any of them;\n"
          "# `dvc repro` re-runs the stages whose params changed. `automl params` explains each one.\n")


def table(params: PipelineParams) -> list[tuple[str, Any, Any, str]]:
    """(key, default, value in ``params``, meaning) for every param, in ``params.yaml`` order."""
    defaults = PipelineParams().flat()
    return [(key, defaults[key], value, HELP[key]) for key, value in params.flat().items()]


def params_yaml(params: PipelineParams) -> str:
    """``params`` as a ``params.yaml`` with each key's meaning as its comment."""
    lines, section = [HEADER.rstrip("\n")], ""
    for key, value in params.flat().items():
        head, _, leaf = key.rpartition(".")
        if head != section:
            section = head
            lines.append(f"{head}:" + (f"                    # {SECTIONS[head]}" if head in SECTIONS else ""))
        indent = "  " if head else ""
        text = f"{indent}{leaf}: {_scalar(value)}"
        lines.append(f"{text:<27}# {HELP[key]}" if len(text) < 27 else f"{text}  # {HELP[key]}")
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()
