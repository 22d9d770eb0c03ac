"""`robovlms-mobile data show`: one episode as a contact sheet, an animated GIF and a top-down trajectory.

Frames are shown in true colour (V4 files store BGR; they are converted like the dataset does).
Each frame carries its step, event type and action; the arrow points where the robot is told
to go in the image (up = +linear_x forward, left = +linear_y left).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from robovlms_mobile.data.episode import check_episode
from robovlms_mobile.data.fields import read_actions, read_event_types
from robovlms_mobile.data.frames import read_frames_rgb
from robovlms_mobile.data.kinematics import integrate
from robovlms_mobile.outputs import check_folder, claim, written
from robovlms_mobile.task import MAX_SPEED, STEP_S

EPS = 1e-6


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def annotate(frame_rgb: np.ndarray, step: int, action: np.ndarray, event: str | None, *, width: int,
             max_speed: float) -> Image.Image:
    """A frame scaled to `width` with its step, event, action values and a direction arrow drawn on it."""
    img = Image.fromarray(frame_rgb)
    img = img.resize((width, max(1, round(img.height * width / img.width))), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    w, h = img.size
    font = _font(max(10, w // 20))
    vx, vy, wz = (float(v) for v in action[:3])
    top = f"t={step:02d}" + (f"  {event}" if event else "")
    bottom = f"x {vx:+.2f}  y {vy:+.2f}  wz {wz:+.2f}"
    band = font.size + 6
    draw.rectangle((0, 0, w, band), fill=(0, 0, 0))
    draw.rectangle((0, h - band, w, h), fill=(0, 0, 0))
    draw.text((4, 3), top, fill=(255, 255, 255), font=font)
    draw.text((4, h - band + 3), bottom, fill=(255, 255, 255), font=font)
    cx, cy, length = w / 2, h / 2, 0.32 * min(w, h)
    if abs(vx) < EPS and abs(vy) < EPS:
        r = length / 5
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(0, 0, 0), width=5)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(255, 60, 60), width=3)
    else:
        ex, ey = cx - vy / max_speed * length, cy - vx / max_speed * length  # image: up = forward, left = left
        for colour, lw in (((0, 0, 0), 7), ((255, 220, 0), 4)):
            draw.line((cx, cy, ex, ey), fill=colour, width=lw)
        ang = np.arctan2(ey - cy, ex - cx)
        head = [(ex, ey)] + [(ex - length / 4 * np.cos(ang + d), ey - length / 4 * np.sin(ang + d)) for d in (0.45, -0.45)]
        draw.polygon(head, fill=(255, 220, 0), outline=(0, 0, 0))
    if abs(wz) > EPS:
        draw.text((w - 4, 3), "turn L" if wz > 0 else "turn R", fill=(255, 220, 0), font=font, anchor="ra")
    return img


def contact_sheet(tiles: list[Image.Image], columns: int, header: str) -> Image.Image:
    """Tiles in a grid under a one-line header."""
    tw, th = tiles[0].size
    cols = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // cols)
    font = _font(max(12, tw // 18))
    head = font.size + 12
    sheet = Image.new("RGB", (cols * tw + (cols + 1) * 4, head + rows * th + (rows + 1) * 4), (40, 40, 40))
    ImageDraw.Draw(sheet).text((6, 6), header, fill=(255, 255, 255), font=font)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet.paste(tile, (4 + c * (tw + 4), head + 4 + r * (th + 4)))
    return sheet


def plot_trajectory(poses: np.ndarray, events: list[str] | None, path: Path, title: str) -> Path:
    """Top-down plot: forward up, left to the left; one marker per frame, start and end marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 6))
    px, py = -poses[:, 1], poses[:, 0]  # plot x = -y (left is left), plot y = x (forward is up)
    ax.plot(px, py, "-", color="#4C72B0", lw=2, zorder=1)
    colours = {"episode_start": "#2ca02c", "start_action": "#4C72B0", "stop_action": "#d62728"}
    for t in range(len(poses) - 1):
        ax.scatter(px[t], py[t], s=22, zorder=2, color=colours.get(events[t], "#777777") if events else "#4C72B0")
        ax.annotate("", xy=(px[t] - 0.12 * np.sin(poses[t, 2]), py[t] + 0.12 * np.cos(poses[t, 2])), xytext=(px[t], py[t]),
                    arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 0.8})
    ax.scatter([px[0]], [py[0]], s=90, marker="o", facecolors="none", edgecolors="#2ca02c", label="start", zorder=3)
    ax.scatter([px[-1]], [py[-1]], s=90, marker="X", color="#d62728", label="end", zorder=3)
    ax.set_xlabel("left  <-  lateral (m)  ->  right")
    ax.set_ylabel("forward (m)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def show_episode(path: str | Path, out_dir: str | Path, *, width: int = 320, columns: int = 6, dt: float = STEP_S,
                 max_speed: float = MAX_SPEED) -> dict[str, Any]:
    """Write <stem>_sheet.png, <stem>.gif and <stem>_trajectory.png; returns their paths and the final pose."""
    path, out_dir = Path(path), Path(out_dir)
    check = check_episode(path, min_length=1, max_speed=float("inf"))
    if check.episode is None:
        raise ValueError(f"{path}: cannot show: " + "; ".join(p.message for p in check.errors))
    ep = check.episode
    out_dir = check_folder(out_dir, [path])
    sheet, gif, trajectory = (claim(out_dir / f"{path.stem}{suffix}", [path])
                              for suffix in ("_sheet.png", ".gif", "_trajectory.png"))
    with h5py.File(path, "r") as f:
        actions, events = read_actions(f), read_event_types(f)
        tiles = [annotate(read_frames_rgb(f, ep, t, t + 1)[0], t, actions[t], events[t] if events else None,
                          width=width, max_speed=max_speed) for t in range(ep.num_frames)]  # one frame at a time
    header = f"{path.name}  [{ep.generation.upper()}, {ep.num_frames} frames]  {ep.instruction}"
    contact_sheet(tiles, columns, header).save(sheet)
    tiles[0].save(gif, save_all=True, append_images=tiles[1:], duration=int(dt * 1000), loop=0)
    poses = integrate(actions, dt)
    plot_trajectory(poses, events, trajectory, f"{path.name}\n{ep.instruction}")
    written(sheet, gif, trajectory)
    return {"sheet": sheet, "gif": gif, "trajectory": trajectory, "final_pose": poses[-1].tolist(),
            "num_frames": ep.num_frames}
