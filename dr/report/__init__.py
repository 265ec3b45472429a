"""Reports built from drill results: the monthly drill report (JSON, Markdown, HTML)."""
