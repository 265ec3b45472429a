"""Restore drills: verification steps, their seams (exec, data probe) and the drill report format."""
