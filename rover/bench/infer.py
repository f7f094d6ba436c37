"""`rover bench infer`: the steering node's latency per frame, against the bare model forward.

- node: a real steering node process; this process publishes a simulator stereo pair on
  camera/stereo and waits for the node's estimate for that frame, one frame at a time. The
  node's own time per frame (frame received -> estimate sent, timed in the node and carried in
  the estimate's ``latency_ms``) is the target figure, ``p50_ms``/``p99_ms``; the end-to-end
  time (frame published -> estimate received here: the bus both ways, ``e2e_*``) beside it;
- floor, measured in the same run: the network's forward alone on the same frames, prepared
  (cropped and pooled) beforehand, in this process, with the node's thread count and precision
  (no bus, no numpy, no preparing);
- predict: the node's per-frame Python path (numpy in, clamped floats out), in this process.

Without ``--model`` it times the bundled model, or an untrained one of ``--arch``: latency
does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rover import bus, topics
from rover import messages as m
from rover.bench.common import expert_frames, latency_summary, print_table
from rover.topics import BusConfig

_WARMUP = 20
STARTUP_TIMEOUT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's options."""
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--arch", default="pilotnet", help="untrained model when none exists")
    parser.add_argument("--frames", type=int, default=300, help="frames per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, node and floor")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="of the node and the floor (auto: the node's default on this machine)",
    )
    parser.add_argument("--scenario", default="forest", help="where the frames come from")


def _model_path(args: argparse.Namespace, tmp: Path) -> Path:
    from perception.steering.bundled import bundled_model_path

    if args.model:
        return Path(args.model)
    bundled = bundled_model_path()
    if bundled is not None:
        return bundled
    from perception.infer import save_checkpoint
    from perception.steering.model import SteeringModelConfig, build_model

    path = tmp / "untrained.pt"
    save_checkpoint(path, build_model(SteeringModelConfig(arch=args.arch)), 0.5, {})
    return path


def measure_floor(
    model_path: Path, pairs, threads: int, precision: str = "auto"
) -> tuple[list[float], list[float]]:
    """Milliseconds of the bare network forward on a prepared pair (normalisation, layers,
    decoding: no cropping and pooling, no numpy) and of the predictor's whole call, per frame."""
    import cv2
    import torch

    from perception.infer import SteeringPredictor
    from perception.steering.model import prepare

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    predictor = SteeringPredictor(model_path, device="cpu", precision=precision)
    model = predictor.model
    tensors = [
        prepare(torch.from_numpy(lt)[None], torch.from_numpy(rt)[None], model.cfg)
        for lt, rt in pairs
    ]
    forward_ms, predict_ms = [], []
    with torch.inference_mode():
        for i, x in enumerate(tensors[:_WARMUP] + tensors):
            start = time.perf_counter_ns()
            model.forward_prepared(x)
            if i >= _WARMUP:
                forward_ms.append((time.perf_counter_ns() - start) / 1e6)
    for i, (left, right) in enumerate(pairs[:_WARMUP] + pairs):
        start = time.perf_counter_ns()
        predictor.predict(left, right)
        if i >= _WARMUP:
            predict_ms.append((time.perf_counter_ns() - start) / 1e6)
    return forward_ms, predict_ms


def measure_node(
    model_path: Path, pairs, threads: int, precision: str = "auto"
) -> tuple[list[float], list[float], int]:
    """Per frame: milliseconds from publishing it to receiving the node's answer, and the
    node's own time (received -> answer sent); and how many frames got no answer."""
    bus_cfg = BusConfig(namespace=f"benchinfer{uuid.uuid4().hex[:8]}")
    frames = bus.Publisher(topics.CAMERA_STEREO, bus_cfg)
    answers = bus.Subscriber(topics.PERCEPTION_STEERING, bus_cfg, newest=False, hwm=1000)
    with tempfile.TemporaryFile() as log:
        node = subprocess.Popen(
            [sys.executable, "-m", "rover.nodes.steering", "--namespace", bus_cfg.namespace]
            + ["--model", str(model_path), "--set", f"steering.threads={threads}"]
            + ["--set", f"steering.precision={precision}"],
            stderr=log,
            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
        )
        try:
            _wait_ready(node, frames, answers, pairs[0], log)
            latencies, in_node, lost = _time_frames(frames, answers, pairs)
        finally:
            node.terminate()
            node.wait(10)
            frames.close()
            answers.close()
            bus_cfg.remove_ipc_root()
    return latencies, in_node, lost


def _time_frames(frames, answers, pairs) -> tuple[list[float], list[float], int]:
    latencies, in_node, lost = [], [], 0
    for i, (left, right) in enumerate(pairs[:_WARMUP] + pairs):
        sent = frames.publish(m.StereoImage(left=left, right=right))
        start = time.perf_counter_ns()
        while True:
            est = answers.receive(timeout_ms=1000)
            if est is None:
                lost += 1
                break
            if est.frame_seq == sent.seq:
                if i >= _WARMUP:
                    latencies.append((time.perf_counter_ns() - start) / 1e6)
                    in_node.append(est.latency_ms)
                break
    return latencies, in_node, lost


def _wait_ready(node, frames, answers, pair, log) -> None:
    """Slow joiner: re-send a frame until the node answers one (model loaded, subscribed)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if node.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"steering node exited: {tail[0] if tail else node.returncode}")
        frames.publish(m.StereoImage(left=pair[0], right=pair[1]))
        if answers.receive(timeout_ms=100) is not None:
            answers.drain()
            return
    raise TimeoutError("the steering node never answered a frame")


def run(args: argparse.Namespace) -> dict:
    """Run the bench, print a table, return the flat result dict."""
    import torch

    from perception.infer import load_checkpoint, pick_precision, precision_name
    from perception.steering.model import count_macs, count_parameters

    with tempfile.TemporaryDirectory() as tmp:
        model_path = _model_path(args, Path(tmp))
        ckpt = load_checkpoint(model_path)
        pairs = expert_frames(args.scenario, args.frames)
        precision = precision_name(pick_precision(args.precision, torch.device("cpu")))
        forward_ms, predict_ms = measure_floor(model_path, pairs, args.threads, precision)
        e2e_ms, node_ms, lost = measure_node(model_path, pairs, args.threads, precision)
    net = ckpt.build()
    h, w = pairs[0][0].shape[:2]
    floor, predict, node, e2e = (
        latency_summary(v) for v in (forward_ms, predict_ms, node_ms, e2e_ms)
    )
    print(
        f"steering inference, {ckpt.config.arch} ({count_parameters(net):,} parameters, "
        f"{count_macs(net) / 1e6:.1f} M MACs), {w}x{h} stereo, {args.frames} frames, "
        f"{args.threads} thread(s), {precision}"
    )
    rows = [
        ["floor: bare network forward", floor],
        ["predict (numpy in, floats out)", predict],
        ["node: frame received -> estimate sent", node],
        ["end to end: published -> estimate back", e2e],
    ]
    print_table(
        ["what", "p50 ms", "p99 ms", "max ms"],
        [[n, f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}", f"{s['max_ms']:.3f}"] for n, s in rows],
    )
    return {
        "model": str(model_path) if args.model else ckpt.config.arch,
        "arch": ckpt.config.arch,
        "params": count_parameters(net),
        "macs": count_macs(net),
        "frames": args.frames,
        "threads": args.threads,
        "precision": precision,
        "p50_ms": round(node["p50_ms"], 4),
        "p99_ms": round(node["p99_ms"], 4),
        "e2e_p50_ms": round(e2e["p50_ms"], 4),
        "e2e_p99_ms": round(e2e["p99_ms"], 4),
        "predict_p50_ms": round(predict["p50_ms"], 4),
        "predict_p99_ms": round(predict["p99_ms"], 4),
        "floor_p50_ms": round(floor["p50_ms"], 4),
        "floor_p99_ms": round(floor["p99_ms"], 4),
        "drops": lost,
    }


def main() -> None:
    """``python -m rover.bench.infer``: the bench alone, JSON on the last line."""
    parser = argparse.ArgumentParser(prog="rover bench infer", description=__doc__)
    add_arguments(parser)
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
