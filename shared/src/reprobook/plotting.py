"""The book's figure style: one seaborn theme and a few standard figure sizes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

SIZES = {"single": (4.8, 3.4), "wide": (8.4, 3.4), "square": (4.4, 4.4), "tall": (8.4, 6.4)}
PALETTE = "colorblind"


def use_theme() -> None:
    """Apply the book's seaborn theme (white grid, colour-blind palette, readable fonts)."""
    sns.set_theme(style="whitegrid", palette=PALETTE, context="notebook", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "axes.titlesize": "medium"})


def figure(size: str | tuple[float, float] = "single", ncols: int = 1, nrows: int = 1, **kwargs):
    """Create a figure in one of the book's sizes.

    Parameters
    ----------
    size : str or (float, float)
        ``"single"``, ``"wide"``, ``"square"``, ``"tall"``, or a (width, height) pair in inches.
    ncols, nrows : int
        Subplot grid, passed to :func:`matplotlib.pyplot.subplots`.
    **kwargs
        Further arguments for :func:`matplotlib.pyplot.subplots`.

    Returns
    -------
    (Figure, Axes or array of Axes)
    """
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"unknown figure size {size!r}; use one of {', '.join(SIZES)} or a (width, height) pair")
        figsize = SIZES[size]
    else:
        figsize = tuple(size)
    return plt.subplots(nrows=nrows, ncols=ncols, figsize=figsize, layout="constrained", **kwargs)
