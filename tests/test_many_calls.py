"""`BatchRenderer`: one generator drawing three calls at once, on the shipped graphs and weights, with real frames
of ../shared/data clips (three people): each call's batched pictures equal its own `ReceiverModel`'s, a near
deadline launches a batch before it is full (injected clock), closing a call frees its source tensors, and bad
jobs are refused without stopping the scheduler."""

from __future__ import annotations

import gc
import time
import weakref

import numpy as np
import pytest
from codec_data_helpers import read_frames, read_wav, require_shared_data

from avfr.receiver import FrameJob
from avfr.receiver.batch_backends import OrtBatchBackend, TorchBatchBackend
from avfr.receiver.many_calls import BatchRenderer

CLIPS = ("grid_lwbsza", "retalking_2", "lrs2_audio_00024")  # dev split, three identities, with speech
DRIVING = (8, 16)  # frames drawn per call


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def calls():
    """Per clip: the source input of frame 0, the driving (kp, jac, mel) of DRIVING frames, and what the clip's
    own ReceiverModel draws from them."""
    data = require_shared_data()
    from avfr.codec.data import PriorExtractor, clip_log_mel, mel_window
    from avfr.codec.runtime import ReceiverModel, SenderModel, load_call_model, source_input

    manifest = load_call_model().manifest
    sender = SenderModel(manifest.sender, threads=1, expected_sha256=manifest.sha256["sender"])
    out = []
    with PriorExtractor() as extractor:
        for clip in CLIPS:
            frames = read_frames(data / "clips" / f"{clip}.mp4", max_frames=max(DRIVING) + 1)
            mel = clip_log_mel(read_wav(data / "clips" / f"{clip}.wav"))
            source5, _ = source_input(frames[0], extractor)
            model = ReceiverModel.from_manifest(manifest, threads=1)
            model.set_source(source5)
            drive, expected = [], []
            for i in DRIVING:
                kp, jac = sender.keypoints(source_input(frames[i], extractor)[0])
                drive.append((kp, jac, np.array(mel_window(mel, i))))
                expected.append(model.frame(*drive[-1]))
            out.append({"source5": source5, "tensors": model.source_tensors, "drive": drive, "expected": expected})
    return out


@pytest.fixture(scope="module")
def ort_backend():
    backend = OrtBatchBackend(workers=2)
    yield backend
    backend.close()


def _render_all(renderer: BatchRenderer, calls: list[dict]) -> tuple[list[list[np.ndarray]], list]:
    """Submit every call's frames interleaved, far deadlines; pictures per call and the completion order."""
    done: list[tuple[int, int]] = []
    futures = []
    deadline = time.perf_counter() + 30.0
    for j in range(len(DRIVING)):
        for c, call in enumerate(calls):
            fut = renderer.submit(c, *call["drive"][j], deadline_s=deadline)
            fut.add_done_callback(lambda _f, c=c, j=j: done.append((c, j)))
            futures.append((c, fut))
    pictures: list[list[np.ndarray]] = [[] for _ in calls]
    for c, fut in futures:
        pictures[c].append(fut.result(timeout=60))
    return pictures, done


def test_ort_batches_match_each_calls_own_model(calls, ort_backend):
    with BatchRenderer(ort_backend, max_batch=3, max_wait_s=None) as renderer:
        for c, call in enumerate(calls):  # call 1 by its already-computed source tensors
            if c == 1:
                renderer.register(c, tensors=call["tensors"])
            else:
                renderer.register(c, call["source5"])
        pictures, done = _render_all(renderer, calls)
        assert renderer.stats.batches == len(DRIVING) and renderer.stats.frames == 3 * len(DRIVING)
        assert renderer.stats.late == 0
    for c, call in enumerate(calls):
        assert [j for cc, j in done if cc == c] == list(range(len(DRIVING)))  # each call in order
        for got, want in zip(pictures[c], call["expected"], strict=True):
            assert got.shape == (256, 256, 3) and got.dtype == np.uint8
            assert psnr(got, want) >= 40.0
    assert psnr(pictures[0][0], pictures[1][0]) < 25.0  # different people: the sources were not mixed up


@pytest.fixture()
def one_torch_thread():
    """torch on one thread: two threads on two cores shared with other work run many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_torch_cpu_batches_match_ort(calls, one_torch_thread):
    """The CUDA path's code on CPU float32: torch identity encoder and batches padded to buckets (3 -> 4)."""
    backend = TorchBatchBackend("cpu", pad=True, min_bucket=2, max_batch=3)
    assert backend.bucket(3) == 4 and backend.warmup_sizes(3) == [2, 4]
    with BatchRenderer(backend, max_batch=3) as renderer:
        for c, call in enumerate(calls):
            renderer.register(c, call["source5"], source_id=7 + c)
        pictures, _ = _render_all(renderer, calls)
        kp, jac, mel = calls[2]["drive"][0]
        job = FrameJob(5, 5 * 3600, kp, jac, mel, np.zeros(640, np.float32), False, 0.0)
        frame = renderer.submit_frame(2, job).result(timeout=60)
    for c in range(3):
        for got, want in zip(pictures[c], calls[c]["expected"], strict=True):
            assert psnr(got, want) >= 35.0
    assert frame.index == 5 and frame.source_id == 9 and not frame.repeated
    assert psnr(frame.rgb, calls[2]["expected"][0]) >= 35.0


def test_near_deadline_launches_without_a_full_batch(calls, ort_backend):
    clock = FakeClock(100.0)
    renderer = BatchRenderer(ort_backend, max_batch=4, max_wait_s=None, clock=clock, start=False, warmup=False,
                             skip_late=True)
    renderer.times.record(1, 0.05)
    for c, call in enumerate(calls):
        renderer.register(c, tensors=call["tensors"])
    kp, jac, mel = calls[0]["drive"][0]
    first = renderer.submit(0, kp, jac, mel, deadline_s=101.0)
    assert renderer.step() == pytest.approx(101.0 - 0.05 - 0.005)  # waits for more jobs
    second = renderer.submit(1, kp, jac, mel, deadline_s=101.5)
    assert renderer.step() == pytest.approx(101.0 - 0.10 - 0.005)  # 2 frames take longer: start earlier
    assert not first.done() and renderer.pending == 2
    clock.t = 100.9
    assert renderer.step() is None  # not full, but the first deadline cannot wait: launched
    assert first.result(0).shape == (256, 256, 3) and second.done()
    assert renderer.stats.batches == 1 and renderer.stats.frames == 2

    clock.t = 200.0
    urgent = renderer.submit(2, kp, jac, mel, deadline_s=200.02)
    renderer.step()
    assert urgent.done() and renderer.stats.batches == 2  # alone, at once

    clock.t = 300.0
    far = [renderer.submit(c % 2, kp, jac, mel, deadline_s=400.0) for c in range(4)]
    renderer.step()
    assert all(f.done() for f in far) and renderer.stats.batches == 3  # full: no waiting for deadlines

    late = renderer.submit(2, kp, jac, mel, deadline_s=300.01)
    job = FrameJob(9, 9 * 3600, kp, jac, mel, np.zeros(640, np.float32), True, 0.0)
    late_frame = renderer.submit_frame(2, job, deadline_s=300.01)
    clock.t = 300.02
    renderer.step()
    assert late.result(0) is None and renderer.stats.skipped == 2  # too late: not drawn
    assert late_frame.result(0).repeated and np.array_equal(late_frame.result(0).rgb, urgent.result(0))
    renderer.close()


def test_close_call_frees_its_source(calls, ort_backend):
    renderer = BatchRenderer(ort_backend, max_batch=4, clock=FakeClock(), start=False, warmup=False)
    renderer.register("a", tensors=calls[0]["tensors"])
    renderer.register("b", tensors=calls[1]["tensors"])
    source = weakref.ref(renderer._calls["a"].source)
    skip256 = weakref.ref(renderer._calls["a"].source.tensors["skip256"])
    kp, jac, mel = calls[0]["drive"][0]
    waiting = renderer.submit("a", kp, jac, mel, deadline_s=1e9)
    other = renderer.submit("b", kp, jac, mel, deadline_s=1e9)
    assert renderer.close_call("a") == 1 and waiting.cancelled()
    gc.collect()
    assert source() is None and skip256() is None
    assert renderer.calls == ["b"] and renderer.pending == 1 and not other.done()
    with pytest.raises(ValueError, match="no call 'a'"):
        renderer.submit("a", kp, jac, mel)
    assert renderer.close_call("a") == 0
    renderer.close()
    assert other.cancelled()


def test_bad_jobs_are_refused_and_the_scheduler_goes_on(calls, ort_backend):
    with BatchRenderer(ort_backend, max_batch=2, warmup=False) as renderer:
        renderer.register("a", tensors=calls[0]["tensors"])
        kp, jac, mel = calls[0]["drive"][0]
        with pytest.raises(ValueError, match="no call 'nobody'"):
            renderer.submit("nobody", kp, jac, mel)
        with pytest.raises(ValueError, match=r"kp has shape \(11, 2\)"):
            renderer.submit("a", np.zeros((11, 2)), jac, mel)
        with pytest.raises(ValueError, match="jac has shape"):
            renderer.submit("a", kp, jac[:, 0], mel)
        with pytest.raises(ValueError, match="mel has shape"):
            renderer.submit("a", kp, jac, mel[:, :10])
        with pytest.raises(ValueError, match="non-finite"):
            renderer.submit("a", np.full_like(kp, np.nan), jac, mel)
        with pytest.raises(ValueError, match="job refused"):
            renderer.submit("a", "not an array", jac, mel)
        with pytest.raises(ValueError, match="already registered"):
            renderer.register("a", tensors=calls[1]["tensors"])
        bad = dict(calls[1]["tensors"], skip256=np.zeros((1, 8, 128, 128), np.float32))
        with pytest.raises(ValueError, match="skip256 has shape"):
            renderer.register("b", tensors=bad)
        assert renderer.stats.refused == 6 and renderer.calls == ["a"]
        picture = renderer.submit("a", kp, jac, mel).result(timeout=60)  # the scheduler still runs
        assert psnr(picture, calls[0]["expected"][0]) >= 40.0


def test_a_calls_frames_keep_their_order(calls, ort_backend):
    clock = FakeClock(0.0)
    renderer = BatchRenderer(ort_backend, max_batch=4, max_wait_s=None, clock=clock, start=False, warmup=False)
    renderer.times.record(1, 0.05)
    renderer.register(0, tensors=calls[0]["tensors"])
    renderer.register(1, tensors=calls[1]["tensors"])
    kp, jac, mel = calls[0]["drive"][0]
    order: list[str] = []
    futures = {"a": renderer.submit(0, kp, jac, mel, deadline_s=10.0),
               "b": renderer.submit(0, kp, jac, mel, deadline_s=5.0),  # a later frame due earlier: not before a
               "c": renderer.submit(1, kp, jac, mel, deadline_s=7.0)}
    for name, fut in futures.items():
        fut.add_done_callback(lambda _f, name=name: order.append(name))
    assert renderer.step() == pytest.approx(7.0 - 0.15 - 0.005)  # c is the most urgent
    clock.t = 6.9
    renderer.step()
    assert order == ["c", "a", "b"]
    clock.t = 20.0
    asap = renderer.submit(0, kp, jac, mel)  # no deadline, and nothing of the call waits: drawn at once
    renderer.step()
    assert asap.done() and renderer.stats.batches == 2
    renderer.close()
