"""The HTML report: ``build.write_report`` (analysis, matplotlib figures as inline SVG,
jinja2 template). Imported lazily by the CLI: it loads matplotlib."""
from __future__ import annotations

__all__ = ["analyze", "render_html", "write_report"]


def __getattr__(name: str):  # lazy: `import deploybench.report` stays cheap
    if name in __all__:
        from . import build

        return getattr(build, name)
    raise AttributeError(name)
