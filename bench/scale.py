"""A dataset larger than memory would hold as float32: the pipeline's peak memory, and the streamed
path's training speed against the in-memory one.

    python -m bench.scale [--images 50000] [--size 128] [--search-seconds 120] [--final-seconds 60]
                          [--preprocess-only]

1. Builds an image folder of ``--images`` RGB PNGs of ``--size`` px under a temporary folder: the Indian
   Pines patches (``bench.common.indian_pines``, 17x17) resized up, rolled differently in each pass, labelled by
   their class, so no two copies are the same bytes (the duplicate check would drop them).
2. Runs ``automl run`` on it (``preprocess.image_size=--size``, a short search, a final fit cut at
   ``--final-seconds``) in a child process and reads its peak resident memory (``scale_peak_rss_gb``;
   target < 4 GiB), and the same for ingest + split + preprocess alone
   (``preprocess_peak_rss_gb``, with the uint8 cache's size and one chunk's, and what it needs above an
   ingest stage's peak, in chunks: ``preprocess_over_baseline_chunks``, target <= 1.5).
   ``--preprocess-only`` skips the whole run and keeps its figures from an earlier one in latest.json.
3. Trains the seed network at 28 px on the same pixels from a uint8 cache on disk and from float32
   tensors in memory, alternating (``stream_throughput_ratio``; target >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from automl.arch.graph import initial_graph
from automl.config import TrainConfig
from automl.data.pixels import Pixels, open_cache
from automl.data.preprocess import CHUNK
from automl.search.store import CandidateStore
from automl.training.trainer import TensorData, set_threads, train_candidate
from bench.common import RESULTS, alternate, indian_pines

TARGET_RSS_GB, TARGET_RATIO = 4.0, 0.9


def build_folder(folder: Path, n_images: int, size: int) -> None:
    """``labels.csv`` and ``images/`` of ``n_images`` RGB PNGs of ``size`` px."""
    patches, labels = indian_pines()
    (folder / "images").mkdir(parents=True)
    lines = ["filename,label"]
    for i in range(n_images):
        k = i % len(patches)
        side, shift = patches.shape[1], i // len(patches)  # each pass rolls the patches differently
        image = np.roll(patches[k], (shift % side, shift // side % side), axis=(0, 1))
        name = f"{i:06d}.png"
        Image.fromarray(image).resize((size, size), Image.BILINEAR).save(folder / "images" / name, compress_level=1)
        lines.append(f"{name},{labels[k]}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")


def peak_rss_gb(args: list[str], cwd: Path) -> tuple[float, float]:
    """(peak resident memory of the child in GiB, its wall seconds); the child must succeed."""
    start = time.time()
    code = "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); " \
           "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    kb = int(next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("MAXRSS")))
    return kb / 2**20, time.time() - start


def pipeline_memory(folder: Path, size: int, search_seconds: float, final_seconds: float, whole_run: bool) -> dict:
    """Peak memory of the preprocess stage (and of an ingest stage, the process's own baseline) and,
    with ``whole_run``, of a whole ``automl run``."""
    automl = str(Path(sys.executable).parent / "automl")
    sets = [f"--set={kv}" for kv in ("data.source=", "data.csv=labels.csv", "data.images=images",
                                     f"preprocess.image_size={size}", f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
                                     f"search.time_limit={search_seconds}", f"final_fit.time_limit={final_seconds}")]
    for stage in ("ingest", "split"):
        peak_rss_gb([automl, "stage", stage, *sets], folder)
    base, _ = peak_rss_gb([automl, "stage", "ingest", *sets], folder)
    prep, prep_seconds = peak_rss_gb([automl, "stage", "preprocess", *sets], folder)
    caches = sum(p.stat().st_size for p in (folder / "artifacts" / "preprocessed").glob("*.npy"))
    out = {"preprocess_peak_rss_gb": round(prep, 3), "preprocess_seconds": round(prep_seconds, 1),
           "stage_baseline_rss_gb": round(base, 3), "uint8_cache_gb": round(caches / 2**30, 3),
           "chunk_cache_mb": round(CHUNK * 3 * size * size / 2**20, 1),
           "preprocess_over_baseline_chunks": round((prep - base) * 2**30 / (CHUNK * 3 * size * size), 2)}
    if whole_run:
        whole, seconds = peak_rss_gb([automl, "run", "--quiet", *sets], folder)
        searched = CandidateStore(folder / "artifacts" / "search").spent()
        out |= {"scale_peak_rss_gb": round(whole, 3), "scale_seconds": round(seconds, 1),
                "scale_search_seconds": round(searched, 1), "scale_search_limit": search_seconds}
    return out


def stream_throughput(folder: Path, repeats: int) -> dict:
    """Images/s of the trainer on a uint8 cache on disk against float32 tensors in memory."""
    set_threads(0)
    patches, labels = indian_pines()
    pixels = np.ascontiguousarray(np.stack([np.asarray(Image.fromarray(p).resize((28, 28), Image.BILINEAR))
                                            for p in patches]).transpose(0, 3, 1, 2))
    np.save(folder / "stream.npy", pixels)
    stats = (tuple((pixels.mean(axis=(0, 2, 3)) / 255).tolist()), tuple((pixels.std(axis=(0, 2, 3)) / 255).tolist()))
    classes = sorted(set(labels))
    y = torch.tensor([classes.index(v) for v in labels])
    mapped = Pixels((open_cache(folder / "stream.npy", in_memory_bytes=0),), *stats)
    in_memory = mapped[:]
    graph = initial_graph((3, 28, 28), len(classes))
    config = TrainConfig(max_epochs=2, batch_size=64)

    def rate(x) -> float:
        start = time.time()
        train_candidate(graph, None, TensorData(x, y, x[:200], y[:200]), config, seed=0)
        return 2 * len(y) / (time.time() - start)

    memory, stream = alternate(lambda: rate(in_memory), lambda: rate(mapped), repeats)
    return {"stream_images_per_second": round(stream, 1), "in_memory_images_per_second": round(memory, 1),
            "stream_throughput_ratio": round(stream / memory, 3)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--search-seconds", type=float, default=120)
    parser.add_argument("--final-seconds", type=float, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preprocess-only", action="store_true", help="measure the stages up to preprocess only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="automl-scale-") as tmp:
        folder = Path(tmp)
        throughput = stream_throughput(folder, args.repeats)  # before the folder: its writeback slows training
        start = time.time()
        build_folder(folder, args.images, args.size)
        out = {"images": args.images, "image_size": args.size, "build_seconds": round(time.time() - start, 1),
               **throughput,
               **pipeline_memory(folder, args.size, args.search_seconds, args.final_seconds, not args.preprocess_only)}
    print(json.dumps(out, indent=1))
    print(f"scale_peak_rss_gb {out.get('scale_peak_rss_gb', 'not run')} (target < {TARGET_RSS_GB}); "
          f"stream_throughput_ratio {out['stream_throughput_ratio']:.3f} (target >= {TARGET_RATIO}); preprocess "
          f"{out['preprocess_over_baseline_chunks']} chunks' uint8 over its process baseline (target <= 1.5)")
    latest = RESULTS / "latest.json"
    earlier = json.loads(latest.read_text()) if latest.exists() else {}
    merged = {**earlier, "scale": {**earlier.get("scale", {}), **out, "date": time.strftime("%Y-%m-%d")}}
    latest.write_text(json.dumps(merged, indent=1))
    return out


if __name__ == "__main__":
    main()
