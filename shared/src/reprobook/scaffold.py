"""Scaffold of a new paper folder: a small, working chapter to edit into a reproduction."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from .book import write_toc

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

PAPER_YAML = """\
slug: {slug}
title: "TODO: the paper's title"
authors: [TODO First Author]
year: 2024
venue: "TODO: venue"
arxiv: "0000.00000"
code: null
topic: {topic}
bibtex_key: {key}
revisions: []
claims:
  - id: C1
    statement: >-
      TODO: the claim in your own words. The scaffold measures a stand-in: heavy-ball momentum
      reaches a lower loss than plain gradient descent on an ill-conditioned quadratic.
    evidence: {{source: "TODO: figure or table", reported: null}}
    paper_value: null
    scale: proxy
    scale_note: "TODO: replace the stand-in experiment with the paper's."
    rule: {{kind: less, measure: momentum_loss, baseline: gd_loss, alpha: 0.05}}
"""

PROFILES_YAML = """\
ci: {n_seeds: 5, steps: 50}
book: {}
large: {n_seeds: 50, dim: 1000}
"""

CELLS = [
    ("markdown", "# TODO: the paper's title\n\nTODO: one paragraph on the question the paper asks, in our words."),
    (
        "code:parameters",
        "seed: int = 0  # base seed: replicate r uses seed + r; range [0, ]\n"
        "n_seeds: int = 8  # independent replicates; range [1, ]\n"
        "dim: int = 50  # dimension of the quadratic; range [2, ]\n"
        "steps: int = 100  # optimisation steps; range [1, ]",
    ),
    ("code", "import numpy as np\n\nimport reprobook as rb\n\npaper = rb.Paper.load()\nrb.use_theme()"),
    (
        "markdown",
        "## Setting\n\nA quadratic $f(x) = \\tfrac12 x^\\top A x$ with eigenvalues spread over $[0.01, 1]$; "
        "gradient descent with step $1/L$ against heavy-ball momentum with $\\beta = 0.7$.",
    ),
    (
        "code",
        "def run(rng, momentum):\n"
        "    eigenvalues = np.geomspace(0.01, 1.0, dim)\n"
        "    x = rng.standard_normal(dim)\n"
        "    velocity = np.zeros(dim)\n"
        "    for _ in range(steps):\n"
        "        velocity = momentum * velocity - eigenvalues * x\n"
        "        x = x + velocity\n"
        "    return 0.5 * float(np.sum(eigenvalues * x**2))\n"
        "\n"
        "\n"
        "gd_loss, momentum_loss = [], []\n"
        "for r in range(n_seeds):\n"
        "    gd_loss.append(run(rb.seed_everything(seed + r), momentum=0.0))\n"
        "    momentum_loss.append(run(rb.seed_everything(seed + r), momentum=0.7))",
    ),
    ("markdown", "## Claim C1\n\nTODO: the experiment behind the claim, its figure and its interpretation."),
    (
        "code",
        "fig, ax = rb.figure()\n"
        "ax.scatter(gd_loss, momentum_loss)\n"
        "ax.set(xscale='log', yscale='log', xlabel='final loss, GD', ylabel='final loss, momentum')\n"
        "paper.record('C1', seed=[seed + r for r in range(n_seeds)], momentum_loss=momentum_loss, gd_loss=gd_loss)\n"
        "paper.show('C1')",
    ),
    ("markdown", "## Summary"),
    ("code", "paper.summary()"),
]


def scaffold(root: Path, slug: str, topic: str = "uncategorised") -> Path:
    """Create ``papers/<slug>/`` from the template and add it to ``_toc.yml``.

    Raises
    ------
    ValueError
        If the slug is not lower-case words joined by hyphens, or the folder exists.
    """
    if not SLUG_PATTERN.match(slug):
        raise ValueError(f"slug {slug!r} must be lower-case letters and digits joined by hyphens, e.g. my-paper")
    folder = root / "papers" / slug
    if folder.exists():
        raise ValueError(f"{folder} already exists; choose another slug or edit that folder")
    folder.mkdir(parents=True)
    key = slug.replace("-", "_")
    (folder / "paper.yaml").write_text(PAPER_YAML.format(slug=slug, topic=topic, key=key))
    (folder / "profiles.yaml").write_text(PROFILES_YAML)
    nb = nbformat.v4.new_notebook()
    for kind, source in CELLS:
        if kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            cell = nbformat.v4.new_code_cell(source)
            if kind == "code:parameters":
                cell.metadata["tags"] = ["parameters"]
            nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / f"{slug}.ipynb")
    write_toc(root)
    return folder
