"""avfr.codec.data.dataset: sample shapes, same-clip pairs, mel of the driving frame, workers, determinism."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from codec_data_helpers import make_dataset, short_clip

from avfr.codec.data import TalkingHeadDataset, five_channel, load_clips, mel_window, prepare


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    frames, pcm = short_clip(12)
    gray = np.full((4, 256, 256, 3), 100, np.uint8)
    root = make_dataset(
        tmp_path_factory.mktemp("data"),
        {"a": (frames[:12], pcm), "b": (frames[:6, :, ::-1], None), "empty": (gray, None)},
    )
    cache = tmp_path_factory.mktemp("cache")
    entries = prepare(root, cache, progress=False).entries
    return root, cache, entries


def test_items(prepared) -> None:
    root, cache, entries = prepared
    dataset = TalkingHeadDataset(entries)
    assert len(dataset) == 12 + 6  # "empty" has no face: skipped
    clips = {c.clip_id: c for c in load_clips(root, cache, prepare_missing=False)}
    for idx in (0, 11, 12, 17):
        source5, driving5, mel = dataset[idx]
        assert source5.shape == driving5.shape == (5, 256, 256) and mel.shape == (1, 80, 19)
        assert source5.dtype == driving5.dtype == mel.dtype == torch.float32
        assert 0.0 <= float(source5.min()) and float(source5.max()) <= 1.0
        clip_index, source, driving, _ = dataset.sample_indices(idx)
        assert source != driving
        clip = clips[dataset.entries[clip_index].clip_id]
        assert clip.clip_id == ("a" if idx < 12 else "b")  # Fs and Fd from the same clip
        np.testing.assert_array_equal(
            driving5.numpy(), five_channel(clip.frames[driving], clip.mesh[driving], clip.mask[driving])
        )
        np.testing.assert_array_equal(
            source5.numpy(), five_channel(clip.frames[source], clip.mesh[source], clip.mask[source])
        )
        np.testing.assert_array_equal(mel[0].numpy(), mel_window(clip.mel, driving))
    assert dataset[12][2].numpy().max() == pytest.approx(np.log(1e-5))  # clip without audio: silent mel
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_determinism_and_epochs(prepared) -> None:
    _, _, entries = prepared
    dataset = TalkingHeadDataset(entries, seed=3)
    first = [dataset.sample_indices(i)[:3] for i in range(len(dataset))]
    assert first == [TalkingHeadDataset(entries, seed=3).sample_indices(i)[:3] for i in range(len(dataset))]
    dataset.set_epoch(1)
    assert first != [dataset.sample_indices(i)[:3] for i in range(len(dataset))]


def test_causal_window(prepared) -> None:
    root, cache, entries = prepared
    dataset = TalkingHeadDataset(entries, causal=True)
    clip = load_clips(root, cache, prepare_missing=False)[0]
    _, _, driving, _ = dataset.sample_indices(5)
    np.testing.assert_array_equal(dataset[5][2][0].numpy(), mel_window(clip.mel, driving, causal=True))


def test_opus_augmentation(prepared) -> None:
    _, _, entries = prepared
    clean = TalkingHeadDataset(entries)[6][2]
    augmented = TalkingHeadDataset(entries, opus_bitrates_bps=(12000,), opus_prob=1.0)[6][2]
    assert augmented.shape == (1, 80, 19)
    assert not torch.equal(clean, augmented)
    assert float(torch.corrcoef(torch.stack([clean.flatten(), augmented.flatten()]))[0, 1]) > 0.8
    with pytest.raises(ValueError):
        TalkingHeadDataset(entries, opus_prob=0.5)


def test_worker_safe(prepared) -> None:
    _, _, entries = prepared
    dataset = TalkingHeadDataset(entries)
    expected = [dataset[i] for i in range(len(dataset))]  # opens memmaps in this process
    assert len(pickle.dumps(dataset)) < 100_000  # no arrays travel to workers
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    source5 = torch.cat([b[0] for b in batches])
    mel = torch.cat([b[2] for b in batches])
    assert source5.shape == (len(dataset), 5, 256, 256)
    assert torch.equal(source5, torch.stack([e[0] for e in expected]))
    assert torch.equal(mel, torch.stack([e[2] for e in expected]))


def test_from_data_dir(prepared, tmp_path) -> None:
    root, cache, _ = prepared
    assert len(TalkingHeadDataset.from_data_dir(root, cache, split="train")) == 18
    with pytest.raises(FileNotFoundError, match="avfr-codec data prepare"):
        TalkingHeadDataset.from_data_dir(root, tmp_path / "nothing", split="train")
    with pytest.raises(ValueError, match="no usable clips"):
        TalkingHeadDataset([])
