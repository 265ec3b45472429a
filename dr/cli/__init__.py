"""Command-line interface: click commands, output formats, progress, exit codes."""
