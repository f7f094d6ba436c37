"""Pictures and the HTML page of `rover eval recordings`: timelines, contact sheet, report.

Drawn with OpenCV (already a dependency): a timeline per session (human green, model orange,
a grid line per minute, take-over spans shaded) and a contact sheet of the frames of largest
disagreement (both eyes; a gauge with both commands under them).
"""

from __future__ import annotations

import html
from pathlib import Path

import cv2
import numpy as np

from rover.recording.reader import decode_jpeg

HUMAN_BGR = (60, 170, 60)
MODEL_BGR = (0, 140, 255)
INK = (40, 40, 40)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _timeline(frames, driver: str, width: int = 960, height: int = 220) -> np.ndarray:
    img = np.full((height, width, 3), 255, np.uint8)
    pad_l, pad_r, pad_t, pad_b = 44, 12, 22, 26
    span = max(frames[-1].t_s, 1e-3)
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b

    def x(t: float) -> int:
        return int(pad_l + plot_w * t / span)

    def y(s: float) -> int:
        return int(pad_t + plot_h * (1 - (s + 1) / 2))

    for f in frames:
        if f.takeover:
            cv2.line(img, (x(f.t_s), pad_t), (x(f.t_s), pad_t + plot_h), (235, 225, 250), 1)
    for level in (-1.0, -0.3, 0.0, 0.3, 1.0):
        cv2.line(img, (pad_l, y(level)), (width - pad_r, y(level)), (225, 225, 225), 1)
        cv2.putText(img, f"{level:+.1f}", (2, y(level) + 4), FONT, 0.38, INK, 1, cv2.LINE_AA)
    step = 60.0 if span > 90 else 10.0
    for k in range(int(span // step) + 1):
        t = k * step
        cv2.line(img, (x(t), pad_t), (x(t), pad_t + plot_h), (210, 210, 210), 1)
        label = f"{int(t // 60)} min" if step == 60 else f"{t:.0f} s"
        cv2.putText(img, label, (x(t) + 2, height - 8), FONT, 0.38, INK, 1, cv2.LINE_AA)
    for attr, colour in (("human", HUMAN_BGR), ("model", MODEL_BGR)):
        pts = np.array([(x(f.t_s), y(getattr(f, attr))) for f in frames], np.int32)
        cv2.polylines(img, [pts], False, colour, 1, cv2.LINE_AA)
    cv2.putText(
        img, f"{frames[0].session}: {driver}", (pad_l, 15), FONT, 0.45, HUMAN_BGR, 1, cv2.LINE_AA
    )
    cv2.putText(
        img,
        "model",
        (pad_l + 9 * len(frames[0].session) + 120, 15),
        FONT,
        0.45,
        MODEL_BGR,
        1,
        cv2.LINE_AA,
    )
    return img


def timelines(scored, out: Path, driver: str = "human") -> list[Path]:
    """One PNG per session: human and model steering over capture time."""
    paths = []
    by_session: dict[str, list] = {}
    for f in scored:
        by_session.setdefault(f.session, []).append(f)
    for i, (_, frames) in enumerate(by_session.items()):
        path = out / f"timeline-{i}.png"
        cv2.imwrite(str(path), _timeline(frames, driver))
        paths.append(path)
    return paths


def _gauge(width: int, human: float, model: float) -> np.ndarray:
    img = np.full((44, width, 3), 250, np.uint8)
    mid, half = width // 2, width // 2 - 12
    cv2.line(img, (12, 14), (width - 12, 14), (180, 180, 180), 2)
    cv2.line(img, (mid, 6), (mid, 22), (150, 150, 150), 1)
    for value, colour, dy in ((human, HUMAN_BGR, -1), (model, MODEL_BGR, 1)):
        px = int(mid + half * float(np.clip(value, -1, 1)))
        cv2.circle(img, (px, 14 + 4 * dy), 6, colour, -1, cv2.LINE_AA)
    text = f"human {human:+.2f}   model {model:+.2f}   |diff| {abs(human - model):.2f}"
    cv2.putText(img, text, (12, 38), FONT, 0.42, INK, 1, cv2.LINE_AA)
    return img


def _arrow(img: np.ndarray, steering: float, colour) -> None:
    h, w = img.shape[:2]
    base = (w // 2, h - 6)
    angle = float(np.clip(steering, -1, 1)) * np.pi / 3
    tip = (int(base[0] + 0.35 * h * np.sin(angle)), int(base[1] - 0.35 * h * np.cos(angle)))
    cv2.arrowedLine(img, base, tip, colour, 3, cv2.LINE_AA, tipLength=0.25)


def _tile(frame, left_jpeg: bytes, right_jpeg: bytes, eye_w: int = 240) -> np.ndarray:
    eyes = []
    for jpeg in (left_jpeg, right_jpeg):
        rgb = decode_jpeg(jpeg)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        eye_h = int(round(bgr.shape[0] * eye_w / bgr.shape[1]))
        eye = cv2.resize(bgr, (eye_w, eye_h), interpolation=cv2.INTER_AREA)
        _arrow(eye, frame.human, HUMAN_BGR)
        _arrow(eye, frame.model, MODEL_BGR)
        eyes.append(eye)
    pair = np.hstack([eyes[0], np.full((eyes[0].shape[0], 4, 3), 255, np.uint8), eyes[1]])
    label = np.full((20, pair.shape[1], 3), 255, np.uint8)
    cv2.putText(
        label,
        f"{frame.session} frame {frame.index} ({frame.t_s:.1f} s)"
        + ("  take-over" if frame.takeover else ""),
        (4, 14),
        FONT,
        0.42,
        INK,
        1,
        cv2.LINE_AA,
    )
    return np.vstack([label, pair, _gauge(pair.shape[1], frame.human, frame.model)])


def contact_sheet(worst, path: Path, columns: int = 2) -> Path | None:
    """The frames of largest disagreement in a grid; None when there are none."""
    if not worst:
        return None
    tiles = [_tile(f, lj, rj) for f, lj, rj in worst]
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    sheet = np.full((rows * (h + 8) + 8, columns * (w + 8) + 8, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[8 + r * (h + 8) : 8 + r * (h + 8) + h, 8 + c * (w + 8) : 8 + c * (w + 8) + w] = tile
    cv2.imwrite(str(path), sheet)
    return path


def _figure_row(label: str, f: dict) -> str:
    mae = "-" if f["steering_mae"] is None else f"{f['steering_mae']:.3f}"
    sign = "-" if f["sign_agreement_pct"] is None else f"{f['sign_agreement_pct']:.1f} %"
    return (
        f"<tr><td>{html.escape(label)}</td><td>{f['frames']}</td><td>{mae}</td><td>{sign}</td></tr>"
    )


def write_html(report: dict, path: Path) -> Path:
    """One page: the figures, the per-minute table, the timelines and the contact sheet."""
    rows = [
        _figure_row("all frames scored", report["overall"]),
        _figure_row(f"human steered hard (|s| > {report['hard_threshold']})", report["hard"]),
        _figure_row("take-overs", report["takeover"]),
    ]
    minutes = "".join(
        f"<tr><td>{html.escape(r['session'])}</td><td>{r['minute']}</td><td>{r['frames']}</td>"
        f"<td>{r['human_mean']:+.3f}</td><td>{r['model_mean']:+.3f}</td>"
        f"<td>{r['steering_mae']:.3f}</td></tr>"
        for r in report["per_minute"]
    )
    driver = "human" if report["frames_scored"] == "human" else "recorded command"
    pictures = "".join(
        f'<img src="{html.escape(p)}" alt="timeline">' for p in report["timeline_png"]
    )
    sheet = report.get("contact_sheet_png")
    worst = f'<img src="{html.escape(sheet)}" alt="worst frames">' if sheet else "<p>none</p>"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rover eval recordings: {html.escape(report["model"])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1000px}} table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child{{text-align:left}}
img{{display:block;margin:8px 0;max-width:100%}} .h{{color:#3caa3c}} .m{{color:#ff8c00}}</style></head><body>
<h1>rover eval recordings</h1>
<p>model <code>{html.escape(report["model"])}</code> against the <span class="h">{driver}</span>
on {report["sessions"]} session(s): {report["overall"]["frames"]} frames scored
({html.escape(report["frames_scored"])} frames of {report["frames_seen"]};
{report["takeover_s"]:.1f} s of take-overs), {html.escape(report["created"])}.
Sign agreement counts the frames where the human steered at least {report["sign_deadband"]}.</p>
<table><tr><th></th><th>frames</th><th>steering MAE</th><th>sign agreement</th></tr>{"".join(rows)}</table>
<h2>timeline: <span class="h">{driver}</span> vs <span class="m">model</span></h2>{pictures}
<h2>per minute</h2>
<table><tr><th>session</th><th>minute</th><th>frames</th><th>human mean</th><th>model mean</th><th>MAE</th></tr>{minutes}</table>
<h2>where they disagree most</h2>
<p>both eyes; arrows and dots: <span class="h">{driver}</span>, <span class="m">model</span></p>
{worst}
</body></html>
"""
    path.write_text(page)
    return path
