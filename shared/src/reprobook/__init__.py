"""Shared package of the reproducibility book.

Notebooks use :class:`Paper` to record measurements against their claims,
:func:`seed_everything` for reproducible randomness, and :func:`use_theme` / :func:`figure`
for the book's figure style. The runner and the book build live in :mod:`reprobook.runner`,
:mod:`reprobook.pipeline` and :mod:`reprobook.book`.
"""

from .claims import ClaimResult, ClaimsError, Paper
from .plotting import figure, use_theme
from .seeding import seed_everything

__all__ = ["ClaimResult", "ClaimsError", "Paper", "figure", "seed_everything", "use_theme"]
__version__ = "0.1.0"
