"""Image grids: model outputs -> [0, 1] NHWC -> one tiled image (numpy), PNG files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kgen.files import atomic_write


def to_display(images, data_range: str) -> np.ndarray | None:
    """Model-space images -> float32 NHWC in [0, 1]; None if the data are not images."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 2:  # flat vectors: show them if they are square grayscale images
        side = int(round(math.sqrt(x.shape[1])))
        if side * side != x.shape[1]:
            return None
        x = x.reshape(-1, side, side, 1)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        return None
    if data_range == "symmetric":
        x = (x + 1.0) / 2.0
    elif data_range == "real":
        low, high = x.min(), x.max()
        x = (x - low) / (high - low + 1e-12)
    return np.clip(x, 0.0, 1.0)


def grid(images: np.ndarray, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile NHWC images into one HWC image, ``columns`` per row (default: square-ish)."""
    n, h, w, c = images.shape
    columns = columns or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / columns))
    out = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c), np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = image
    return out


def pairs(inputs: np.ndarray, outputs: np.ndarray, columns: int = 8) -> np.ndarray:
    """Rows alternate: ``columns`` inputs, then their reconstructions."""
    rows = []
    for start in range(0, len(inputs), columns):
        rows.append(inputs[start : start + columns])
        rows.append(outputs[start : start + columns])
    return grid(np.concatenate(rows), columns=columns)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an HWC [0,1] image as PNG (grayscale when it has one channel)."""
    from PIL import Image

    path = Path(path)
    array = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    # Under a temporary name, then renamed: a killed process leaves the old PNG or the new one.
    atomic_write(path, lambda tmp: Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(tmp,
                                                                                                        format="PNG"))
    return path


def scatter(points: np.ndarray, labels: np.ndarray | None = None, title: str = "", size: int = 5,
            background: np.ndarray | None = None) -> np.ndarray:
    """A 2-D scatter plot coloured by label, rendered off-screen to an HWC [0,1] RGB image.

    ``background``: points whose density (a grey 2-D histogram) is drawn underneath, e.g. prior draws."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A Figure on its own Agg canvas: pyplot's global backend (e.g. a notebook's inline one) is untouched.
    figure = Figure(figsize=(size, size), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    if background is not None:
        both = np.concatenate([points, background])
        low, high = np.percentile(both, 0.5, axis=0), np.percentile(both, 99.5, axis=0)
        axes.hist2d(background[:, 0], background[:, 1], bins=80, range=list(zip(low, high)), cmap="Greys", cmin=1)
    plotted = axes.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4, alpha=0.8)
    if labels is not None:
        figure.colorbar(plotted, ax=axes, fraction=0.046, pad=0.04)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(np.float32) / 255.0
