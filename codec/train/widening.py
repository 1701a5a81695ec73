"""Function-preserving widening (Net2WiderNet-style, Chen et al. 2016): start a wider model where a trained one is.

A ``wide`` model (small's keypoint detector, a wider dense motion and generator, more SPADE blocks) trained
from scratch needs far more training than a lent GPU gives before it draws as well as the shipped ``small``
model. Widened from ``small``, it computes exactly what ``small`` computes on its first step and only has
to learn what its extra channels add. For every layer whose channels grew:

- the old output channels keep their weights, and read nothing from the new input channels (zero weights);
- the new output channels start from the wide model's own random initialisation (their outgoing weights
  into old channels are zero, so they change nothing until training uses them);
- inputs that concatenate several tensors (the generator's fuse and up-sampling convs, the hourglass's
  skip joins, the dense-motion heads) map each part's old channels to where that part now starts;
- a SPADE residual block that ``small`` does not have starts as the identity (its last conv is zero);
- Enc_query's new channels start at zero and its old ones are scaled by sqrt(c_wide / c_small), because the
  audio-visual attention divides by sqrt(c): the attention map is unchanged.

Every norm layer here is per channel (BatchNorm in the hourglasses, InstanceNorm in SPADE), so the old
channels are normalised exactly as before; new BatchNorm statistics start at their defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from avfr.codec.nets.hourglass import hourglass_widths

__all__ = ["WidenedWeights", "widen_model", "widen_weights"]

Segments = list[int]  # channels of each part of a concatenated channel axis, in order


@dataclass(frozen=True)
class WidenedWeights:
    """What `widen_weights` wrote: the file's sha256, the two configs and what was copied."""

    sha256: str
    source_config: str
    config: str
    copied: int  # tensors copied as they are
    widened: int  # tensors whose old channels were embedded in wider ones
    new_blocks: int  # SPADE residual blocks that start as the identity


def _input_segments(small_cfg, wide_cfg) -> dict[str, tuple[Segments, Segments]]:
    """Module name -> (segments of its input channels in small, in wide) for every layer reading a concat."""
    sg, wg = small_cfg.generator, wide_cfg.generator
    out: dict[str, tuple[Segments, Segments]] = {
        "generator.fuse": (
            [sg.enc_channels[2], sg.audio_channels, 1, sg.enc_channels[2]],
            [wg.enc_channels[2], wg.audio_channels, 1, wg.enc_channels[2]],
        ),
        "generator.up128.conv": ([sg.dec_channels[1], sg.enc_channels[1]], [wg.dec_channels[1], wg.enc_channels[1]]),
        "generator.up256.conv": ([sg.dec_channels[2], sg.enc_channels[0], 3, 1],
                                 [wg.dec_channels[2], wg.enc_channels[0], 3, 1]),
    }
    sd, wd = small_cfg.dense, wide_cfg.dense
    sw, ww = (hourglass_widths(c.block_expansion, c.num_blocks, c.max_features) for c in (sd, wd))
    n = sd.num_blocks
    for j in range(1, n):  # up block j reads [up block j-1's output, the skip of level n-1-j]: both of width w[i]
        i = n - 1 - j
        out[f"dense_motion.hourglass.up_blocks.{j}.conv"] = ([sw[i], sw[i]], [ww[i], ww[i]])
    in_ch = (sd.num_kp + 1) * (sd.in_channels + 1)
    for head in ("mask_head", "occlusion_head"):
        out[f"dense_motion.{head}"] = ([sd.block_expansion, in_ch], [wd.block_expansion, in_ch])
    return out


def _index_map(small: Segments, wide: Segments) -> Tensor:
    """For each channel of the small concat, its index in the wide one."""
    if len(small) != len(wide) or any(s > w for s, w in zip(small, wide, strict=True)):
        raise ValueError(f"channel parts {small} do not fit into {wide}")
    idx, start = [], 0
    for s, w in zip(small, wide, strict=True):
        idx.extend(range(start, start + s))
        start += w
    return torch.tensor(idx, dtype=torch.long)


def _embed(old: Tensor, new: Tensor, out_idx: Tensor, in_idx: Tensor | None) -> Tensor:
    """``new`` with ``old`` placed at (out_idx[, in_idx]); old outputs read zero from the new inputs."""
    result = new.detach().clone().float()
    old = old.float()
    if in_idx is None or old.dim() == 1:
        result[out_idx] = old
        return result
    rows = result[out_idx]  # (o_small, i_wide, ...)
    rows.zero_()
    rows[:, in_idx] = old
    result[out_idx] = rows
    return result


def widen_model(small, wide) -> tuple[int, int, int]:
    """Copy ``small`` (an ``AvfrModel``) into ``wide`` in place so that both compute the same function.

    Returns:
        (tensors copied, tensors widened, SPADE blocks started as the identity).

    Raises:
        ValueError: the two do not share the keypoint detector and the ablation switches, or a layer of
            ``small`` does not fit into ``wide``.
    """
    sc, wc = small.config, wide.config
    if sc.kp != wc.kp or sc.num_kp != wc.num_kp or sc.image_size != wc.image_size:
        raise ValueError("widening keeps the keypoint detector: the two configs must share it")
    if (sc.use_audio, sc.use_priors) != (wc.use_audio, wc.use_priors):
        raise ValueError("the two configs differ in use_audio / use_priors")
    if sc.audio.widths != wc.audio.widths or sc.audio.feature_channels != wc.audio.feature_channels:
        raise ValueError("widening keeps the audio encoder's trunk and Enc_aud")
    concat = _input_segments(sc, wc)
    small_sd = small.state_dict()
    wide_sd = wide.state_dict()
    dropped = sorted(set(small_sd) - set(wide_sd))
    if dropped:  # a block of small that wide lacks: its function cannot be kept
        raise ValueError(f"the wider model has no place for {dropped[:3]}")
    query_scale = math.sqrt(wc.generator.motion_channels / sc.generator.motion_channels)
    new_sd: dict[str, Tensor] = {}
    copied = widened = 0
    new_block_prefixes: set[str] = set()
    for name, new in wide_sd.items():
        old = small_sd.get(name)
        if old is None:
            parts = name.split(".")
            # generator.<enc_blocks|dec64|dec128|dec256>.<i>.<...>: a block that small does not have
            if parts[0] != "generator" or parts[1] not in ("enc_blocks", "dec64", "dec128", "dec256"):
                raise ValueError(f"{name} has no counterpart in the small model")
            prefix = ".".join(parts[:3])
            new_block_prefixes.add(prefix)
            value = new.detach().clone()
            if name in (f"{prefix}.conv1.weight", f"{prefix}.conv1.bias"):
                value.zero_()  # the residual branch adds nothing: the block is the identity
            new_sd[name] = value
            continue
        module = name.rsplit(".", 1)[0]
        regrouped = module in concat and concat[module][0] != concat[module][1]  # same total, other parts
        if old.shape == new.shape and not regrouped:
            new_sd[name] = old.detach().clone().to(new.dtype)
            copied += 1
            continue
        if old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape, strict=True)):
            raise ValueError(f"{name}: {tuple(old.shape)} does not fit into {tuple(new.shape)}")
        out_idx = torch.arange(old.shape[0])
        in_idx = None
        if old.dim() >= 2:
            if module in concat:
                in_idx = _index_map(*concat[module])
                if len(in_idx) != old.shape[1]:
                    raise ValueError(f"{name}: input parts {concat[module]} do not match {tuple(old.shape)}")
            else:
                in_idx = torch.arange(old.shape[1])
        value = _embed(old, new, out_idx, in_idx)
        if module == "attention_encoder.project":
            value[: old.shape[0]] *= query_scale  # Enc_attn divides by sqrt(c)
            value[old.shape[0]:] = 0.0  # new query channels: nothing to attend with yet
        new_sd[name] = value.to(new.dtype)
        widened += 1
    wide.load_state_dict(new_sd)
    return copied, widened, len(new_block_prefixes)


def widen_weights(source: str | Path, config: str, out: str | Path, seed: int = 0) -> WidenedWeights:
    """Write a ``config`` weights file that computes what the weights file ``source`` computes.

    Args:
        source: a `save_weights` file (e.g. the shipped ``models/avfr-small-*.pt``).
        config: the wider config's name (``CONFIGS``), sharing the source's keypoint detector.
        out: the weights file to write (float16, `save_weights`).
        seed: seed of the new channels' random initialisation.
    """
    from avfr.codec.nets.model import CONFIGS, AvfrModel, load_weights, save_weights

    if config not in CONFIGS:
        raise ValueError(f"unknown config {config!r} (one of {', '.join(CONFIGS)})")
    small = load_weights(source)
    wide_cfg = CONFIGS[config]
    wide_cfg = type(wide_cfg).from_dict({**wide_cfg.to_dict(), "use_audio": small.config.use_audio,
                                         "use_priors": small.config.use_priors})
    torch.manual_seed(seed)
    wide = AvfrModel(wide_cfg)
    copied, widened, blocks = widen_model(small, wide)
    sha = save_weights(wide.eval(), out)
    return WidenedWeights(sha, small.config.name, wide_cfg.name, copied, widened, blocks)
