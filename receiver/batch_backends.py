"""The generators a `BatchRenderer` draws batches on: the shipped ONNX graphs on onnxruntime (CPU), or the
shipped torch weights on a torch device (CUDA: bf16, compiled; CPU: float32, eager, the same code).

A backend holds the per-call source tensors it made (`encode` / `adopt`: the identity encoder's 8 outputs,
kept on its device) and draws a batch of frames from a list of them plus stacked driving inputs (`render`).

Why the ORT backend runs the shipped batch-1 ``receiver_frame`` graph item by item on worker threads instead of
a batch-dynamic export: exporting one from the shipped ``.pt`` at load time works (0.6 s, bit-identical rows),
but on CPU a batch draws no faster per frame (measured on this 2-core box, shared with other jobs, ms/frame:
batch-dynamic graph 1 thread B=1 39, B=4 43, B=8 40; 2 intra-op threads B=8 61; shipped graph per item,
1 worker 39-41, 2 workers 40-42). Convolutions at 256x256 already fill a core at batch 1, so item by item
loses nothing, keeps the graph the manifest's hash pins, needs no torch at load time and copies no per-call
tensors into a batch (each item is fed its call's cached arrays as they are).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from avfr.codec.runtime.sessions import HOLD_INPUT, SOURCE_OUTPUTS, OnnxManifest

__all__ = ["OrtBatchBackend", "TorchBatchBackend", "default_backend"]

FRAME_SIZE = 256


def _check_tensors(tensors: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> None:
    missing = [name for name in SOURCE_OUTPUTS if name not in tensors]
    if missing:
        raise ValueError(f"source tensors lack {', '.join(missing)}")
    for name in SOURCE_OUTPUTS:
        shape = tuple(tensors[name].shape)
        if shape != shapes[name]:
            raise ValueError(f"source tensor {name} has shape {shape}, expected {shapes[name]}")


def _source5(source: np.ndarray) -> np.ndarray:
    x = np.asarray(source, dtype=np.float32)
    if x.shape not in ((5, FRAME_SIZE, FRAME_SIZE), (1, 5, FRAME_SIZE, FRAME_SIZE)):
        raise ValueError(f"expected a (5, 256, 256) source input, got {x.shape}")
    return np.ascontiguousarray(x.reshape(1, 5, FRAME_SIZE, FRAME_SIZE))


class OrtBatchBackend:
    """The shipped ONNX receiver graphs (hashes checked), a batch drawn item by item on ``workers`` threads.

    Args:
        manifest: the graphs (default: the shipped model).
        workers: items drawn at once, each on its own thread (1: on the calling thread).
        threads: onnxruntime intra-op threads per run.
        providers: onnxruntime providers (default: CUDA when onnxruntime-gpu can use it, else CPU).

    Source tensors are numpy arrays (the 8 ``receiver_source`` outputs, batch 1).
    """

    name = "ort"

    def __init__(self, manifest: OnnxManifest | None = None, workers: int = 1, threads: int = 1,
                 providers: list[str] | None = None) -> None:
        from avfr.codec.runtime import load_manifest, make_session, shipped_manifest

        man = manifest or load_manifest(shipped_manifest())
        self.source_session = make_session(man.receiver_source, threads, providers, man.sha256["receiver_source"])
        self.frame_session = make_session(man.receiver_frame, threads, providers, man.sha256["receiver_frame"])
        self.frame_inputs = [i.name for i in self.frame_session.get_inputs()]
        self.uses_hold = HOLD_INPUT in self.frame_inputs
        self.num_kp = man.num_kp
        self.source_shapes = {o.name: tuple(o.shape) for o in self.source_session.get_outputs()}
        self.workers = max(1, int(workers))
        self.max_batch = self.workers  # on CPU a bigger batch only makes its first items wait for its last
        self.max_wait_s = 0.0  # ... and waiting to fill one gains nothing: launch whatever waits, when free
        self._pool = ThreadPoolExecutor(self.workers, "avfr-ort") if self.workers > 1 else None

    def encode(self, source: np.ndarray) -> dict[str, np.ndarray]:
        """The identity encoder on a (5, 256, 256) source input -> the call's source tensors."""
        outs = self.source_session.run(None, {"source": _source5(source)})
        return dict(zip(SOURCE_OUTPUTS, outs, strict=True))

    def adopt(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Source tensors computed elsewhere (e.g. `ReceiverModel.source_tensors`), checked and copied."""
        _check_tensors(tensors, self.source_shapes)
        return {name: np.array(tensors[name], dtype=np.float32, copy=True) for name in SOURCE_OUTPUTS}

    def keypoints(self, source: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return source["kp_source"][0], source["jac_source"][0]

    def warmup_sizes(self, max_batch: int) -> list[int]:
        return sorted({1, min(self.workers, max_batch)})

    def render(self, sources: list[dict[str, np.ndarray]], kp: np.ndarray, jac: np.ndarray, mel: np.ndarray,
               held: np.ndarray) -> np.ndarray:
        """Draw B frames: sources (B call source tensors), kp (B, K, 2), jac (B, K, 2, 2), mel (B, 1, 80, 19),
        held (B, 1) float32 -> uint8 (B, 256, 256, 3) RGB."""
        def one(i: int) -> np.ndarray:
            feed = dict(sources[i])
            feed.update(kp_driving=kp[i:i + 1], jac_driving=jac[i:i + 1], mel=mel[i:i + 1])
            feed[HOLD_INPUT] = held[i:i + 1]
            (out,) = self.frame_session.run(None, {name: feed[name] for name in self.frame_inputs})
            return out[0]

        n = len(sources)
        outs = list(self._pool.map(one, range(n))) if self._pool is not None and n > 1 else [one(i) for i in range(n)]
        return np.clip(np.stack(outs).transpose(0, 2, 3, 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class TorchBatchBackend:
    """The shipped torch weights on a torch device, one forward pass per batch.

    Args:
        device: "cuda" or "cpu".
        bf16: bfloat16 autocast (CUDA).
        compile: ``torch.compile`` the per-frame graph (static shapes, so batches are padded, below).
        pad: pad each batch to a power-of-two bucket (at least ``min_bucket``) by repeating its last item, so
            a compiled graph sees a few shapes, compiled once each at warm-up (None: when compiled).
        weights: a ``.pt`` written by `avfr.codec.nets.model.save_weights` and its sha256 prefix (default: the
            shipped ``models/avfr-small-<sha8>.pt``).
        max_batch: the batch size the renderer defaults to.

    Source tensors stay on the device (float32); a batch gathers them with one ``torch.cat`` per tensor.
    """

    name = "torch"

    def __init__(self, device: str = "cpu", *, bf16: bool = False, compile: bool = False,
                 pad: bool | None = None, weights: tuple[str | Path, str] | None = None,
                 max_batch: int | None = None, min_bucket: int = 8) -> None:
        import torch

        from avfr.codec.nets.model import load_weights
        from avfr.codec.runtime import shipped_torch_weights

        self.torch = torch
        self.device = torch.device(device)
        path, sha = weights or shipped_torch_weights()
        self.model = load_weights(path, sha).to(self.device).eval()
        self.bf16 = bf16
        self.compiled = compile
        self.render_fn = torch.compile(self.model.render, dynamic=False) if compile else self.model.render
        self.pad = compile if pad is None else pad
        self.min_bucket = min_bucket
        self.uses_hold = bool(self.model.config.generator.hold_input)
        self.num_kp = self.model.config.num_kp
        self.max_batch = max_batch or (256 if self.device.type == "cuda" else 4)
        self.max_wait_s: float | None = None  # batches fill up to the deadlines: bigger ones are cheaper per frame
        self.source_shapes = {name: tuple(t.shape) for name, t in self.encode(np.zeros((5, 256, 256))).items()}
        self.workers = 1

    @classmethod
    def for_cuda(cls, **kwargs: Any) -> TorchBatchBackend:
        """bf16 and compiled on the first CUDA device (what `default_backend` picks when CUDA is present), with
        the generator shipped for GPUs when there is one (`avfr.codec.runtime.generator_for`: same keypoint
        detector, so the same calls), else the shipped one."""
        if kwargs.get("weights") is None:
            from avfr.codec.runtime import generator_for, load_manifest, shipped_torch_weights

            kwargs["weights"] = shipped_torch_weights(load_manifest(generator_for("cuda")).name)
        return cls("cuda", bf16=True, compile=True, **kwargs)

    def encode(self, source: np.ndarray) -> dict[str, Any]:
        """The identity encoder on a (5, 256, 256) source input -> the call's source tensors (on the device)."""
        x = self.torch.from_numpy(_source5(source)).to(self.device)
        with self.torch.inference_mode():
            outs = self.model.encode_source(x)
        return {name: t.float().contiguous() for name, t in zip(SOURCE_OUTPUTS, outs, strict=True)}

    def adopt(self, tensors: Mapping[str, Any]) -> dict[str, Any]:
        """Source tensors computed elsewhere (numpy, e.g. from the ONNX identity encoder), checked, on the device."""
        _check_tensors(tensors, self.source_shapes)
        return {name: self.torch.as_tensor(np.asarray(tensors[name], np.float32)).to(self.device).clone()
                for name in SOURCE_OUTPUTS}

    def keypoints(self, source: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return source["kp_source"][0].cpu().numpy(), source["jac_source"][0].cpu().numpy()

    def bucket(self, size: int) -> int:
        """The padded batch size (size itself without padding)."""
        if not self.pad:
            return size
        n = self.min_bucket
        while n < size:
            n *= 2
        return n

    def warmup_sizes(self, max_batch: int) -> list[int]:
        """Every bucket up to max_batch's when padded (a compiled graph compiles once each), else 1 and max_batch."""
        if not self.pad:
            return sorted({1, max_batch})
        sizes = [self.bucket(1)]
        while sizes[-1] < self.bucket(max_batch):
            sizes.append(sizes[-1] * 2)
        return sizes

    def render(self, sources: list[dict[str, Any]], kp: np.ndarray, jac: np.ndarray, mel: np.ndarray,
               held: np.ndarray) -> np.ndarray:
        """Same contract as `OrtBatchBackend.render`."""
        torch = self.torch
        n = len(sources)
        rows = list(range(n)) + [n - 1] * (self.bucket(n) - n)  # padding repeats the last item
        with torch.inference_mode():
            cache = [torch.cat([sources[i][name] for i in rows]) for name in SOURCE_OUTPUTS]
            drive = [torch.from_numpy(np.ascontiguousarray(a[rows])).to(self.device, non_blocking=True)
                     for a in (kp, jac, mel, held)]
            hold = drive.pop()
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                image = self.render_fn(*cache, *drive, hold if self.uses_hold else None)[0]
            rgb = (image[:n].float() * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            return rgb.cpu().numpy()

    def close(self) -> None:
        """Nothing to release (the weights go with the object)."""


def default_backend(device: str = "auto", workers: int | None = None) -> OrtBatchBackend | TorchBatchBackend:
    """torch on CUDA (bf16, compiled) when ``device`` is "cuda", or "auto" and CUDA is present; otherwise the
    shipped ONNX graphs on onnxruntime, ``workers`` items at once (default: one per core)."""
    if device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be auto, cuda or cpu, got {device!r}")
    if device != "cpu":
        import torch

        if device == "cuda" or torch.cuda.is_available():
            return TorchBatchBackend.for_cuda()
    return OrtBatchBackend(workers=workers or os.cpu_count() or 1)
