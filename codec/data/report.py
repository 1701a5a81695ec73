"""Plain-text report of a prepared data folder: per-clip counts, every problem found, and totals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from avfr.codec.data.cache import CacheEntry


def format_report(entries: Sequence[CacheEntry], missing: Mapping[str, str] | None = None) -> str:
    """Render the data report.

    Args:
        entries: cache entries (see ``avfr.codec.data.preparation.prepare``), failed clips included.
        missing: clip_id -> why the clip has no entry at all (e.g. its video is missing).

    Returns:
        Text: a header, one line per clip followed by its problems, and a total line.
    """
    missing = dict(missing or {})
    width = max([len("clip")] + [len(e.clip_id) for e in entries] + [len(c) for c in missing])

    def row(clip: str, split: str, *cells: str) -> str:
        numbers = "  ".join(f"{c:>{w}}" for c, w in zip(cells[:4], (6, 6, 6, 8), strict=True))
        return f"{clip:<{width}}  {split:<5}  {numbers}  {cells[4]}"

    lines = [row("clip", "split", "frames", "faces", "2faces", "speech_s", "audio")]
    frames = faces = multi = problems = clips_with_problems = failed = 0
    speech_s = 0.0
    for entry in entries:
        meta = entry.meta
        if entry.failed:
            failed += 1
            lines.append(row(entry.clip_id, entry.split, "-", "-", "-", "-", "-"))
        else:
            n, f, m = entry.num_frames, int(meta.get("faces_found", 0)), int(meta.get("multi_face_frames", 0))
            s = float(meta.get("speech_s", 0.0))
            frames, faces, multi, speech_s = frames + n, faces + f, multi + m, speech_s + s
            audio = "yes" if entry.has_audio else "no"
            lines.append(row(entry.clip_id, entry.split, str(n), str(f), str(m), f"{s:.1f}", audio))
        for problem in entry.problems:
            lines.append(f"{'':<{width}}  ! {problem}")
        problems += len(entry.problems)
        clips_with_problems += bool(entry.problems)
    for clip_id, why in missing.items():
        lines.append(row(clip_id, "", "-", "-", "-", "-", "-"))
        lines.append(f"{'':<{width}}  ! not prepared: {why}")
        problems += 1
        clips_with_problems += 1
    face_pct = 100.0 * faces / frames if frames else 0.0
    lines.append(
        f"total: {len(entries) + len(missing)} clips ({failed + len(missing)} unusable), {frames} frames "
        f"({frames / 25:.1f} s), faces found in {faces} ({face_pct:.1f} %), 2 faces in {multi}, "
        f"{speech_s:.1f} s speech, {problems} problems in {clips_with_problems} clips"
    )
    return "\n".join(lines)
