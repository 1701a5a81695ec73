"""`avfr-codec average` / `avfr.codec.train.average_weights`: the mean of snapshots of one fine-tune, the keypoint
detector kept bit for bit, and every mismatch refused with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avfr.cli import main
from avfr.codec.nets import CONFIGS, AvfrModel, load_weights, save_weights
from avfr.codec.train import average_weights
from avfr.codec.train.averaging import DETECTOR_PREFIX
from avfr.codec.train.checkpoint import CHECKPOINT_FORMAT


def _pair(tmp_path: Path, detector_too: bool = False) -> tuple[Path, Path, AvfrModel, AvfrModel]:
    """Two small models that differ by a known shift of every generator parameter (and of the detector's)."""
    torch.manual_seed(0)
    a = AvfrModel(CONFIGS["small"]).eval()
    b = AvfrModel(CONFIGS["small"]).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        for name, p in b.named_parameters():
            if detector_too or not name.startswith(DETECTOR_PREFIX):
                p.add_(0.125)  # exact in float16 for the weights' magnitudes
    pa, pb = tmp_path / "a.pt", tmp_path / "b.pt"
    save_weights(a, pa)
    save_weights(b, pb)
    return pa, pb, load_weights(pa), load_weights(pb)


def test_mean_of_two_keeps_the_detector(tmp_path: Path) -> None:
    pa, pb, a, b = _pair(tmp_path)
    out = tmp_path / "mean.pt"
    result = average_weights([pa, pb], out)
    assert not result.detector_changed and result.config_name == "small" and len(result.members) == 2
    mean = load_weights(out, expected_sha256=result.sha256)
    sa, sb, sm = a.state_dict(), b.state_dict(), mean.state_dict()
    for key, value in sm.items():
        if not value.is_floating_point():
            continue
        if key.startswith(DETECTOR_PREFIX):
            assert torch.equal(value, sa[key]), key  # the sender graph's weights, bit for bit
        else:
            want = ((sa[key].double() + sb[key].double()) / 2).half().float()
            assert torch.allclose(value, want, atol=1e-3, rtol=1e-3), key
    moved = [k for k in sm if not k.startswith(DETECTOR_PREFIX) and sm[k].is_floating_point()
             and not torch.equal(sm[k], sa[k])]
    assert moved  # the generator really is between the two


def test_a_checkpoint_member_and_self_average(tmp_path: Path) -> None:
    pa, _, a, _ = _pair(tmp_path)
    ckpt = tmp_path / "ckpt-last.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model_config": a.config.to_dict(), "model": a.state_dict()}, ckpt)
    out = tmp_path / "same.pt"
    average_weights([pa, ckpt], out)
    same = load_weights(out).state_dict()
    for key, value in a.state_dict().items():
        assert torch.equal(same[key], value), key


def test_detectors_that_differ_are_refused(tmp_path: Path) -> None:
    pa, pb, _, _ = _pair(tmp_path, detector_too=True)
    out = tmp_path / "mean.pt"
    with pytest.raises(ValueError, match="detectors differ"):
        average_weights([pa, pb], out)
    assert not out.exists()
    assert average_weights([pa, pb], out, allow_detector_change=True).detector_changed
    assert out.is_file()


def test_mismatches_and_bad_files_are_refused(tmp_path: Path) -> None:
    pa, _, _, _ = _pair(tmp_path)
    wide = tmp_path / "wide.pt"
    save_weights(AvfrModel(CONFIGS["wide"]), wide)
    out = tmp_path / "mean.pt"
    with pytest.raises(ValueError, match="config differs"):
        average_weights([pa, wide], out)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="not a readable"):
        average_weights([pa, garbage], out)
    other = tmp_path / "other.pt"
    torch.save({"format": "something/1", "state_dict": {}}, other)
    with pytest.raises(ValueError, match="neither"):
        average_weights([pa, other], out)
    renamed = tmp_path / "renamed.pt"
    data = torch.load(pa, weights_only=True)
    data["state_dict"] = {f"x.{k}": v for k, v in data["state_dict"].items()}
    torch.save(data, renamed)
    with pytest.raises(ValueError, match="parameter names"):
        average_weights([pa, renamed], out)
    with pytest.raises(ValueError, match="2.."):
        average_weights([pa], out)
    with pytest.raises(FileNotFoundError):
        average_weights([pa, tmp_path / "missing.pt"], out)
    assert not out.exists()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pa, pb, _, _ = _pair(tmp_path)
    out = tmp_path / "mean.pt"
    assert main(["average", str(pa), str(pb), "--out", str(out)]) == 0
    assert "the mean of 2 models" in capsys.readouterr().out
    assert json.loads(torch.load(out, weights_only=True)["config"])["name"] == "small"
    assert main(["average", str(pa), "--out", str(tmp_path / "x.pt")]) == 2
    assert main(["average", str(pa), str(pb), "--out", str(pa)]) == 2  # would overwrite a member
    assert "is one of the models" in capsys.readouterr().err
