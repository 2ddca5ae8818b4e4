"""Sphinx extension of the book: launch buttons that open a chapter's source notebook.

The book's chapter pages are copies in ``book/papers/<slug>.ipynb``, a git-ignored folder, so
the Binder and Colab links that sphinx-book-theme derives from the page path would point at a
file that is not in the repository. This extension rewrites those links to the source notebook
``papers/<slug>/<slug>.ipynb``, which runs in its own folder beside ``paper.yaml``.
"""

from __future__ import annotations

from typing import Any

CHAPTER_PREFIX = "book/papers/"


def source_notebook_path(pagename: str) -> str | None:
    """Return the repository path of a chapter page's source notebook, or None for other pages."""
    if not pagename.startswith(CHAPTER_PREFIX):
        return None
    slug = pagename[len(CHAPTER_PREFIX) :]
    return f"papers/{slug}/{slug}.ipynb"


def rewrite_launch_urls(buttons: list[Any], old: str, new: str) -> int:
    """Replace ``old`` by ``new`` in the ``url`` of every button, nested groups included; return the count."""
    count = 0
    for button in buttons:
        if not isinstance(button, dict):
            continue
        if isinstance(button.get("url"), str) and old in button["url"]:
            button["url"] = button["url"].replace(old, new)
            count += 1
        if isinstance(button.get("buttons"), list):
            count += rewrite_launch_urls(button["buttons"], old, new)
    return count


def point_launch_buttons_at_source(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Rewrite a chapter page's launch links (``html-page-context`` handler, after the theme's)."""
    source = source_notebook_path(pagename)
    if source is None or "header_buttons" not in context:
        return
    groups = [b for b in context["header_buttons"] if isinstance(b, dict) and b.get("label") == "launch-buttons"]
    rewrite_launch_urls(groups, f"{pagename}.ipynb", source)


def setup(app: Any) -> dict[str, Any]:
    """Register the handler; sphinx-book-theme adds launch buttons at priority 501, so this runs at 900."""
    app.connect("html-page-context", point_launch_buttons_at_source, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
