"""Draw the avfr-codec pipeline diagram (docs/pipeline.png) with matplotlib.

Run: python docs/make_pipeline_figure.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

SENDER = "#dbeafe"
WIRE = "#fef3c7"
RECEIVER = "#dcfce7"


def box(ax, x: float, y: float, w: float, h: float, text: str, color: str) -> None:
    """A rounded box centred at (x, y), size (w, h) in axes units."""
    ax.add_patch(
        FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.01,rounding_size=0.015",
                       fc=color, ec="#334155", lw=1.2)
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5, color="#0f172a")


def arrow(ax, x0: float, y0: float, x1: float, y1: float, label: str = "") -> None:
    """An arrow from (x0, y0) to (x1, y1) with an optional label above its middle."""
    ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=11, lw=1.1,
                                 color="#334155"))
    if label:
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.025, label, ha="center", va="bottom", fontsize=7.5,
                color="#475569")


def main() -> None:
    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=110)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.text(0.14, 0.95, "sender", ha="center", fontsize=11, weight="bold", color="#1e3a8a")
    ax.text(0.50, 0.95, "wire (WebRTC data channels)", ha="center", fontsize=11, weight="bold", color="#92400e")
    ax.text(0.84, 0.95, "receiver", ha="center", fontsize=11, weight="bold", color="#166534")

    box(ax, 0.07, 0.75, 0.12, 0.11, "camera frame\n256x256 RGB", SENDER)
    box(ax, 0.22, 0.75, 0.13, 0.11, "mediapipe\nface mesh + mask", SENDER)
    box(ax, 0.22, 0.52, 0.13, 0.11, "keypoint detector\n5ch -> K=10 kp+jac", SENDER)
    box(ax, 0.07, 0.27, 0.12, 0.11, "microphone\n16 kHz speech", SENDER)
    box(ax, 0.22, 0.27, 0.13, 0.11, "Opus encoder\n6-16 kbit/s", SENDER)
    arrow(ax, 0.13, 0.75, 0.155, 0.75)
    arrow(ax, 0.22, 0.695, 0.22, 0.575)
    arrow(ax, 0.13, 0.27, 0.155, 0.27)

    box(ax, 0.50, 0.75, 0.25, 0.09, "Hello + SourceImage\n(once, reliable)", WIRE)
    box(ax, 0.50, 0.52, 0.25, 0.09, "Keypoints packets\n25/s, <= 2 kbit/s", WIRE)
    box(ax, 0.50, 0.27, 0.25, 0.09, "Opus packets, 20 ms\nsame 90 kHz media clock", WIRE)
    arrow(ax, 0.285, 0.52, 0.37, 0.52)
    arrow(ax, 0.285, 0.27, 0.37, 0.27)
    arrow(ax, 0.285, 0.77, 0.37, 0.77, "source still")

    box(ax, 0.70, 0.52, 0.11, 0.11, "jitter buffer\n+ concealment", RECEIVER)
    box(ax, 0.70, 0.27, 0.11, 0.11, "Opus decode\n-> mel 200 ms", RECEIVER)
    box(ax, 0.70, 0.75, 0.11, 0.11, "source image\n+ priors", RECEIVER)
    box(ax, 0.885, 0.52, 0.19, 0.34,
        "AVFR-GAN generator\n\ndense motion (kp diff)\n+ audio encoder\n+ AV attention\n"
        "+ identity encoder\n+ SPADE UNet decoder", RECEIVER)
    box(ax, 0.88, 0.15, 0.15, 0.09, "frame 256x256 + audio", RECEIVER)
    for y in (0.75, 0.52, 0.27):
        arrow(ax, 0.625, y, 0.645, y)
    arrow(ax, 0.755, 0.75, 0.795, 0.62)
    arrow(ax, 0.755, 0.52, 0.795, 0.52)
    arrow(ax, 0.755, 0.27, 0.795, 0.42)
    arrow(ax, 0.88, 0.37, 0.88, 0.195)

    out = Path(__file__).resolve().parent / "pipeline.png"
    fig.savefig(out, bbox_inches="tight", facecolor="white")
    print(out)


if __name__ == "__main__":
    main()
