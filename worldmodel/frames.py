"""Drawing one video frame: panels (real | imagined | difference), overlays and charts.

How a panel is drawn depends on the observation (see worldmodel/video.py for the episode
logic): decoded images, the env's own renderer fed the predicted state (STATE_SETTERS), or
line charts of real vs predicted observation values. Legend: T frames, D observation size.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from envs.pixels import resize_image


PANEL_H = 240        # every panel is scaled to this height (even: H.264 wants even sizes)
HEADER_H = 64        # text strip above the panels
GAP = 4              # dark gap between panels
CHART_DIMS = 6       # observation dims drawn by the line-chart fallback
SPREAD_SAMPLES = 16  # imagined action sequences for planner_spread



# -- state setters: put a predicted observation back into an env so it can render it ---------
def _cartpole(env: gym.Env, obs: np.ndarray) -> None:
    env.state = np.asarray(obs[:4], np.float64)  # obs is the state: x, xdot, theta, thetadot


def _pendulum(env: gym.Env, obs: np.ndarray) -> None:
    env.state = np.array([math.atan2(obs[1], obs[0]), obs[2]])  # obs = cos, sin, thetadot
    env.last_u = None  # no torque arrow: the imagined frame shows the state only


def _acrobot(env: gym.Env, obs: np.ndarray) -> None:
    # obs = cos1, sin1, cos2, sin2, dtheta1, dtheta2; the state holds the angles themselves
    env.state = np.array([math.atan2(obs[1], obs[0]), math.atan2(obs[3], obs[2]), obs[4], obs[5]])


def _mountain_car(env: gym.Env, obs: np.ndarray) -> None:
    env.state = np.array([obs[0], obs[1]])  # position, velocity


# Keyed by the unwrapped env's class name; add your own env with register_state_setter.
STATE_SETTERS: dict[str, Callable[[gym.Env, np.ndarray], None]] = {
    "CartPoleEnv": _cartpole, "PendulumEnv": _pendulum, "AcrobotEnv": _acrobot,
    "MountainCarEnv": _mountain_car, "Continuous_MountainCarEnv": _mountain_car,
}


def register_state_setter(class_name: str, setter: Callable[[gym.Env, np.ndarray], None]) -> None:
    """`setter(env.unwrapped, obs (D,))` makes the env's render() draw that observation."""
    STATE_SETTERS[class_name] = setter


# -- the real side: one env, stepped by hand, with the run's shield ------------------------------

def _font(size: int = 14):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _fit(img: np.ndarray, height: int = PANEL_H) -> np.ndarray:
    """(h, w, 3) -> (height, w', 3) uint8 with the aspect ratio kept and w' even."""
    img = np.asarray(img)[..., :3]
    h, w = img.shape[:2]
    width = max(2, int(round(w * height / h / 2)) * 2)
    if h < height and height % h == 0 and width == w * height // h:  # small obs: sharp pixels
        k = height // h
        return np.repeat(np.repeat(img.astype(np.uint8), k, 0), k, 1)
    return resize_image(img, (height, width))


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).astype(np.uint8)


def _figure(width: int, height: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    FigureCanvasAgg(fig)  # Agg: draws to memory, no display, no pyplot global state
    return fig


def _pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


class _Charts:
    """Line-chart fallback: real | predicted | |difference| of the first observation dims."""

    def __init__(self, ep: dict[str, Any], key: str, width: int) -> None:
        T, c = len(ep["feats"]), ep["context"]
        self.real = np.array([o[key][:CHART_DIMS] for o in ep["real"].obs])   # (T_real, D')
        self.pred = ep["pred"][key][:, :CHART_DIMS]                           # (T, D')
        n = min(len(self.real), T)
        err = np.abs(self.pred[:n] - self.real[:n])
        self.fig = _figure(width, PANEL_H)
        axes = self.fig.subplots(1, 3)
        both = np.concatenate([self.real, self.pred])
        lo, hi = float(np.nanmin(both)), float(np.nanmax(both))
        pad = 0.05 * (hi - lo) + 1e-3
        self.lines = []
        for ax, title, data in zip(axes, ("real", "imagined", "|difference|"), (self.real, self.pred, err)):
            ax.set_title(title, fontsize=9)
            ax.set_xlim(0, max(T - 1, 1))
            ax.set_ylim(*((lo - pad, hi + pad) if title != "|difference|" else (0, float(err.max(initial=0)) + 1e-3)))
            ax.axvline(c - 0.5, color="gray", lw=0.8, ls=":")  # imagination starts here
            ax.tick_params(labelsize=7)
            self.lines.append([ax.plot([], [], lw=1.2, color=f"C{i}", label=f"{key}[{i}]")[0]
                               for i in range(data.shape[1])])
        for i in range(self.real.shape[1]):  # the whole real curve, faint, to judge the prediction by
            axes[1].plot(self.real[:, i], color=f"C{i}", lw=0.8, ls="--", alpha=0.4)
        axes[0].legend(fontsize=6, loc="upper left")
        self.data = (self.real, self.pred, err)
        self.fig.tight_layout(pad=0.4)

    def frame(self, t: int) -> np.ndarray:
        for lines, data in zip(self.lines, self.data):
            upto = data[: t + 1]
            for i, line in enumerate(lines):
                line.set_data(np.arange(len(upto)), upto[:, i])
        return _pixels(self.fig)


class _Spread:
    """Small chart: the band of a predicted quantity over N sampled imagined futures."""

    def __init__(self, ep: dict[str, Any], width: int = 320) -> None:
        c, spread = ep["context"], ep["spread"]                         # spread (N, n+1)
        x = np.arange(c - 1, c - 1 + spread.shape[1])
        self.fig = _figure(width, PANEL_H)
        ax = self.fig.subplots()
        ax.fill_between(x, spread.min(0), spread.max(0), alpha=0.3, label=f"{SPREAD_SAMPLES} policy samples")
        ax.plot(x, np.median(spread, 0), lw=1.2, label="median")
        real = np.asarray(ep["spread_real"], np.float64)
        ax.plot(np.arange(len(real)), real, color="k", lw=1.0, label="real")
        ax.set_title(f"spread of predicted {ep['spread_name']}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="best")
        self.cursor = ax.axvline(0, color="red", lw=0.8)
        self.fig.tight_layout(pad=0.4)

    def frame(self, t: int) -> np.ndarray:
        self.cursor.set_xdata([t, t])
        return _pixels(self.fig)


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    from PIL import Image, ImageDraw
    img = Image.fromarray(panel)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, 8 + 8 * len(title), 18), fill=(30, 30, 30))
    draw.text((4, 2), title, fill=(255, 255, 255), font=_font(13))
    return np.asarray(img)


def _compose(panels: list[np.ndarray], lines: list[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """Panels side by side under a header of coloured text lines -> (H, W, 3) uint8, even sides."""
    from PIL import Image, ImageDraw
    gap = np.full((PANEL_H, GAP, 3), 40, np.uint8)
    row = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], 1)
    canvas = Image.new("RGB", (row.shape[1] + row.shape[1] % 2, HEADER_H + PANEL_H), (15, 15, 15))
    canvas.paste(Image.fromarray(row), (0, HEADER_H))
    draw, font = ImageDraw.Draw(canvas), _font(14)
    for i, (text, color) in enumerate(lines):
        draw.text((8, 4 + 19 * i), text, fill=color, font=font)
    return np.asarray(canvas)


def render_frames(ep: dict[str, Any], method: str, make_env: Callable[[], gym.Env], *, mode: str,
                  label: str = "", shielded: bool = False) -> list[np.ndarray]:
    """All video frames of one dreamed episode (see the module docstring for `method`)."""
    real, c, T = ep["real"], ep["context"], len(ep["feats"])
    key = real.agent.obs_spec.keys[0].name
    if method == "image":
        key = real.agent.obs_spec.image_keys[0].name
    shadow, charts = None, None
    if method == "state":
        shadow = make_env()
        shadow.reset(seed=0)
        setter = STATE_SETTERS[type(shadow.unwrapped).__name__]
    spread = _Spread(ep) if "spread" in ep else None
    frames = []
    try:
        for t in range(T):
            r = min(t, len(real.obs) - 1)  # the real side freezes once its episode has ended
            ended = t >= len(real.obs)
            if method == "chart":
                if charts is None:
                    charts = _Charts(ep, key, 3 * 360 + 2 * GAP)
                panels = [charts.frame(t)]
            else:
                if method == "image":
                    real_img, dream_img = real.obs[r][key], np.clip(ep["pred"][key][t], 0, 255).astype(np.uint8)
                else:
                    setter(shadow.unwrapped, np.nan_to_num(ep["pred"][key][t]))
                    real_img, dream_img = real.frames[r], np.asarray(shadow.render())
                real_p, dream_p = _fit(real_img), _fit(dream_img)
                diff_p = np.full_like(real_p, 60) if ended else _diff(real_p, dream_p)
                panels = [_titled(real_p, "real (ended)" if ended else "real"),
                          _titled(dream_p, "reconstructed" if t < c else "imagined"), _titled(diff_p, "|difference|")]
            if spread is not None:
                panels.append(spread.frame(t))
            phase = (f"OBSERVE step {t + 1}/{c} (posterior)" if t < c
                     else f"IMAGINE +{t - c + 1} ({mode}{'' if mode == 'policy' else ', real actions'})")
            lines = [(f"{label}step {t}   {phase}", (120, 220, 120) if t < c else (255, 170, 60))]
            rr = "ended" if ended else f"{real.reward[r]:+.2f}"
            lines.append((f"reward real {rr}  pred {ep['reward'][t]:+.2f}    continue p {ep['cont'][t]:.2f}",
                          (230, 230, 230)))
            if shielded:
                veto = r < len(real.vetoed) and real.vetoed[r] and not ended
                verdict = f"VETOED ({real.rule[r]})" if veto else "ok"
                lines.append((f"shield: {verdict}    imagined violation: "
                              f"{'YES' if ep['cost'][t] > 0.5 else 'no'} (p {ep['cost'][t]:.2f})",
                              (255, 90, 90) if veto or ep["cost"][t] > 0.5 else (170, 200, 255)))
            frames.append(_compose(panels, lines))
    finally:
        if shadow is not None:
            shadow.close()
    return frames


def frame_method(agent: Any, real: Any) -> str:
    """'image' | 'state' | 'chart': how this env's observations can be drawn."""
    spec = agent.obs_spec
    if spec.image_keys:
        return "image"
    if (len(spec.keys) == 1 and real.frames[0] is not None
            and type(real.env.unwrapped).__name__ in STATE_SETTERS):
        return "state"
    return "chart"


