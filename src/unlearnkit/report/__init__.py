"""Reports over eval outputs: markdown/HTML tables and the forget-quality vs model-utility plot."""

from unlearnkit.report.tofu import (
    Run,
    load_run,
    load_runs,
    markdown_table,
    plot_png,
    render_html,
    write_report,
)

__all__ = ["Run", "load_run", "load_runs", "markdown_table", "plot_png", "render_html", "write_report"]
