"""Model benchmark: params and MACs per block, ORT latency of the exported graphs, optional CUDA / training.

Prints JSON lines (one per measurement) with the device, the versions and the exact command.

    python benchmarks/bench_model.py --config small                 # params, MACs, ORT CPU 1 and 2 threads
    python benchmarks/bench_model.py --config small --train-batch 4  # + one G+D training step timing
    python benchmarks/bench_model.py --no-ort --threads 1 --train-batch 8 --train-precision both  # CPU fp32 vs bf16
    python benchmarks/bench_model.py --config small --cuda           # + torch CUDA (fp32 / bf16) and ORT CUDA

Random weights: latency does not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import torch
from torch.utils.flop_counter import FlopCounterMode

from avfr.codec.nets import CONFIGS, AvfrModel, MultiScaleDiscriminator
from avfr.codec.runtime import SOURCE_OUTPUTS, example_inputs, export_model, make_session
from avfr.codec.train import DiscriminatorLoss, GeneratorLoss, LossWeights
from avfr.codec.train.config import cpu_bf16_native


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _base(device: str) -> dict[str, object]:
    return {
        "device": device,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "command": " ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
    }


def _emit(record: dict[str, object]) -> None:
    print(json.dumps(record), flush=True)


def _time(
    fn: Callable[[], object], iters: int, warmup: int, sync: Callable[[], None] = lambda: None
) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    a = np.asarray(times)
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "iters": iters}


def _macs(fn: Callable[[], object]) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2.0


def bench_blocks(model: AvfrModel, device: str) -> None:
    """Params and MACs (batch 1) per block."""
    source, driving, mel = example_inputs(model)
    with torch.no_grad():
        kp_d, jac_d = model.detect(driving)
        kp_s, jac_s, src64, src128, src, feat64, skip128, skip256 = model.encode_source(source)
        flow, occ = model.dense_motion(src64, kp_d, jac_d, kp_s, jac_s)
    ac = model.config.audio
    enc_aud = (
        model.audio_encoder(mel)
        if model.audio_encoder is not None
        else torch.zeros(1, ac.feature_channels, ac.out_size, ac.out_size)
    )
    query = model.attention_encoder(mel) if model.attention_encoder is not None else None
    gen = model.generator
    blocks: dict[str, tuple[torch.nn.Module | None, Callable[[], object]]] = {
        "kp_detector": (model.kp_detector, lambda: model.detect(driving)),
        "dense_motion": (model.dense_motion, lambda: model.dense_motion(src64, kp_d, jac_d, kp_s, jac_s)),
        "audio_encoder": (
            model.audio_encoder,
            lambda: model.audio_encoder(mel) if model.audio_encoder else None,
        ),
        "attention_encoder": (
            model.attention_encoder,
            lambda: model.attention_encoder(mel) if model.attention_encoder else None,
        ),
        "generator.encode": (gen, lambda: gen.encode(source)),
        "generator.decode": (
            gen,
            lambda: gen.decode(src64, src128, src, feat64, skip128, skip256, flow, occ, enc_aud, query),
        ),
        "graph.sender": (None, lambda: model.detect(driving)),
        "graph.receiver_source": (None, lambda: model.encode_source(source)),
        "graph.receiver_frame": (
            None,
            lambda: model.render(kp_s, jac_s, src64, src128, src, feat64, skip128, skip256, kp_d, jac_d, mel),
        ),
    }
    for name, (module, fn) in blocks.items():
        params = sum(p.numel() for p in module.parameters()) if module is not None else None
        if name == "generator.decode":
            params = None  # shared with encode; see generator.encode for the whole generator
        _emit(
            {
                "bench": "block",
                "config": model.config.name,
                "block": name,
                "params": params,
                "gmacs": _macs(fn) / 1e9,
                **_base(device),
            }
        )
    _emit(
        {
            "bench": "block",
            "config": model.config.name,
            "block": "total",
            "params": sum(p.numel() for p in model.parameters()),
            **_base(device),
        }
    )


def bench_ort(
    model: AvfrModel, providers: list[str], threads_list: list[int], iters: int, warmup: int, device: str
) -> None:
    """ORT latency of the sender and receiver_frame graphs (batch 1, 256x256)."""
    with tempfile.TemporaryDirectory() as tmp:
        ex = export_model(model, tmp)
        source, driving, mel = example_inputs(model)
        for threads in threads_list:
            sender = make_session(ex.sender, threads, providers)
            rsrc = make_session(ex.receiver_source, threads, providers)
            rfrm = make_session(ex.receiver_frame, threads, providers)
            frame_np = driving.numpy()
            kp, jac = sender.run(None, {"frame": frame_np})
            cache = dict(zip(SOURCE_OUTPUTS, rsrc.run(None, {"source": source.numpy()}), strict=True))
            cache.update(kp_driving=kp, jac_driving=jac, mel=mel.numpy())
            feed = {i.name: cache[i.name] for i in rfrm.get_inputs()}
            for graph, fn in (
                ("sender", lambda s=sender, f=frame_np: s.run(None, {"frame": f})),
                ("receiver_source", lambda s=rsrc: s.run(None, {"source": source.numpy()})),
                ("receiver_frame", lambda s=rfrm, f=feed: s.run(None, f)),
            ):
                n = max(3, iters // 5) if graph == "receiver_source" else iters
                stats = _time(fn, n, warmup)
                _emit(
                    {
                        "bench": "ort",
                        "config": model.config.name,
                        "graph": graph,
                        "threads": threads,
                        "providers": sender.get_providers(),
                        **stats,
                        **_base(device),
                    }
                )


def bench_torch_cuda(model: AvfrModel, iters: int, warmup: int, batches: tuple[int, ...] = (1,)) -> None:
    """torch CUDA latency of the per-frame parts (fp32 and bf16 autocast) at each batch size (frames_per_s =
    batch / median)."""
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    m = model.to(dev).eval()
    source1, driving1, mel1 = (t.to(dev) for t in example_inputs(model))
    for batch in batches:
        source, driving, mel = (t.expand(batch, *t.shape[1:]).contiguous() for t in (source1, driving1, mel1))
        with torch.no_grad():
            cache = m.encode_source(source)
            kp, jac = m.detect(driving)
        for dtype in ("fp32", "bf16"):
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                for graph, fn in (
                    ("sender", lambda d=driving: m.detect(d)),
                    ("receiver_frame", lambda c=cache, k=kp, j=jac, a=mel: m.render(*c, k, j, a)),
                ):
                    stats = _time(fn, iters, warmup, torch.cuda.synchronize)
                    _emit({"bench": "torch_cuda", "config": model.config.name, "graph": graph, "dtype": dtype,
                           "batch": batch, **stats, "frames_per_s": round(batch * 1000 / stats["median_ms"], 1),
                           **_base(name)})
    model.cpu()


TRAIN_VARIANTS = ("eager", "fused", "compile", "compile-fused", "compile-fused-cl")


def bench_train(model: AvfrModel, batch: int, steps: int, device: str, bf16: bool, variant: str = "eager") -> None:
    """Time one full G + D training step (all losses on), after 2 warm-up steps (compiled: 3).

    variant: ``eager``; ``fused`` (Adam's fused kernels); ``compile`` (torch.compile of both losses, as
    `avfr-codec train --compile`; first steps compile); ``compile-fused``; ``compile-fused-cl`` (also
    channels_last memory format for the networks and inputs).
    """
    dev = torch.device("cuda" if device != "cpu" else "cpu")
    channels_last = variant.endswith("-cl")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    m = model.to(dev, memory_format=fmt).train()
    disc = MultiScaleDiscriminator(model.config.discriminator).to(dev, memory_format=fmt)
    g_loss = GeneratorLoss(m, disc, LossWeights())
    d_loss = DiscriminatorLoss(disc)
    fused = "fused" in variant
    g_opt = torch.optim.Adam(m.parameters(), 2e-4, fused=fused or None)
    d_opt = torch.optim.Adam(disc.parameters(), 2e-4, fused=fused or None)
    if variant.startswith("compile"):
        g_loss, d_loss = torch.compile(g_loss), torch.compile(d_loss)
    source = torch.rand(batch, 5, 256, 256, device=dev).contiguous(memory_format=fmt)
    driving = torch.rand(batch, 5, 256, 256, device=dev).contiguous(memory_format=fmt)
    mel = torch.randn(batch, 1, 80, 19, device=dev) - 6
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            total, fake, _ = g_loss(source, driving, mel)
        g_opt.zero_grad(set_to_none=True)
        total.backward()
        g_opt.step()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            d_total, _ = d_loss(driving[:, :3], fake)
        d_opt.zero_grad(set_to_none=True)
        d_total.backward()
        d_opt.step()

    stats = _time(step, steps, 3 if variant.startswith("compile") else 2, sync)
    _emit(
        {
            "bench": "train_step",
            "config": model.config.name,
            "batch": batch,
            "variant": variant,
            "bf16": bf16,
            "samples_per_s": batch * 1e3 / stats["median_ms"],
            **stats,
            **_base(torch.cuda.get_device_name(0) if dev.type == "cuda" else _cpu_name()),
        }
    )
    model.cpu().eval()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="small", choices=sorted(CONFIGS))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--cuda", action="store_true", help="also time on CUDA (torch, and ORT if it has CUDA)"
    )
    parser.add_argument("--cuda-batch", type=int, nargs="+", default=[1],
                        help="batch sizes of the CUDA per-frame timings (default: 1)")
    parser.add_argument("--train-batch", type=int, nargs="+", default=[0],
                        help="time a training step at these batch sizes (0: no training step)")
    parser.add_argument("--train-variants", default="eager",
                        help=f"comma-separated, side by side in one run: {', '.join(TRAIN_VARIANTS)}")
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--train-precision", choices=("auto", "fp32", "bf16", "both"), default="auto",
                        help="training-step precision: auto (as `avfr-codec train`: bf16 autocast on CUDA and on "
                             "a CPU with native bf16), fp32, bf16, or both side by side")
    parser.add_argument("--no-ort", action="store_true", help="skip the ORT CPU timings")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = AvfrModel(CONFIGS[args.config]).eval()
    cpu = _cpu_name()
    bench_blocks(model, cpu)
    if not args.no_ort:
        bench_ort(model, ["CPUExecutionProvider"], args.threads, args.iters, args.warmup, cpu)
    cuda = args.cuda and torch.cuda.is_available()
    if args.cuda and not cuda:
        _emit({"bench": "skip", "reason": "CUDA not available", **_base(cpu)})
    if cuda:
        bench_torch_cuda(model, args.iters, args.warmup, tuple(args.cuda_batch))
        if "CUDAExecutionProvider" in ort.get_available_providers():
            bench_ort(
                model,
                ["CUDAExecutionProvider", "CPUExecutionProvider"],
                [2],
                args.iters,
                args.warmup,
                torch.cuda.get_device_name(0),
            )
    variants = [v for v in args.train_variants.split(",") if v]
    unknown = sorted(set(variants) - set(TRAIN_VARIANTS))
    if unknown:
        parser.error(f"unknown --train-variants {', '.join(unknown)} (known: {', '.join(TRAIN_VARIANTS)})")
    if not cuda:
        torch.set_num_threads(max(args.threads))
    precisions = {"auto": [cuda or cpu_bf16_native()], "fp32": [False], "bf16": [True],
                  "both": [False, True]}[args.train_precision]
    for batch in (b for b in args.train_batch if b > 0):
        for variant in variants:
            for bf16 in precisions:
                model = AvfrModel(CONFIGS[args.config]).eval()  # fresh weights: no run inherits another's state
                bench_train(model, batch, args.train_steps, "cuda" if cuda else "cpu", bf16=bf16, variant=variant)


if __name__ == "__main__":
    main()
