"""``dr mover backup | restore``: the data path, run inside mover Jobs and by the benchmark.

Prints one JSON object with ``-o json`` (what the orchestrator reads from the
Job's log); exit 3 when some files could not be read or restored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from dr.cli.context import app
from dr.cli.output import emit, output_option
from dr.cli.params import NonEmpty, Tag, pairs_to_dict
from dr.cli.progress import byte_progress
from dr.cli.repo_access import open_repository
from dr.errors import DrError, ExitCode, PartialFailure
from dr.printable import printable
from dr.repo.locks import Lock
from dr.repo.snapshots import find_snapshot


@click.group("mover")
def mover_group() -> None:
    """Data mover: copy a directory into or out of the repository."""


def _use_repo(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        app().repo_url = value


# `dr mover backup --repo URL PATH` as well as `dr --repo URL mover backup PATH` (the
# form the issue and the README give for the mover's commands).
repo_option = click.option(
    "--repo", metavar="URL", type=NonEmpty(), expose_value=False, callback=_use_repo,
    help="Repository URL (the same as dr's global --repo).",
)  # fmt: skip


def _dir_size(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


@mover_group.command("backup")
@repo_option
@click.argument("path", type=click.Path(exists=True, file_okay=False), metavar="PATH")
@click.option(
    "--parent",
    type=NonEmpty(),
    metavar="ID",
    help="Snapshot to compare with (unchanged files are not read again).",
)
@click.option("--tag", "tags", multiple=True, type=Tag(), help="Tag the snapshot; repeatable.")
@output_option()
def backup(path: str, parent: str | None, tags: tuple[tuple[str, str], ...], output: str) -> int:
    """Back up directory PATH; prints the new volume snapshot's id."""
    from dr.repo.archiver import backup_directory, snapshot_summary  # not loaded by restores

    ctx = app()
    repo = open_repository(ctx)
    parent_snap = None
    if parent:
        parent_snap = find_snapshot(repo, parent, kind="volume", what="volume snapshot")
    total = _dir_size(path) if not ctx.quiet and output == "table" else None
    with byte_progress(f"backup {path}", total, quiet=ctx.quiet or output != "table") as advance:
        result = backup_directory(
            repo, path, parent=parent_snap, tags=pairs_to_dict(tags, "--tag"), progress=advance
        )
    summary = snapshot_summary(result)
    if output == "table":
        click.echo(
            f"snapshot {result.snapshot.id[:8]} saved: {summary['files']} files, {summary['bytes']:,} bytes, "
            f"{summary['newBytes']:,} new bytes stored, {summary['durationSeconds']:.1f}s"
        )
        click.echo(result.snapshot.id)
    else:
        emit(summary, output)
    if result.errors:
        raise PartialFailure(f"{len(result.errors)} entries could not be backed up", details=result.errors)
    return ExitCode.OK


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


@mover_group.command("restore")
@repo_option
@click.argument("snapshot_id", metavar="ID")
@click.argument("target", type=NonEmpty(click.Path(file_okay=False)), metavar="TARGET")
@click.option(
    "--path", "paths", multiple=True, metavar="P", help="Only this path (file or directory); repeatable."
)
@output_option()
def restore(snapshot_id: str, target: str, paths: tuple[str, ...], output: str) -> int:
    """Restore volume snapshot ID into directory TARGET."""
    from dr.repo.restorer import restore_snapshot  # not loaded by backups

    ctx = app()
    repo = open_repository(ctx)
    snap = find_snapshot(repo, snapshot_id, kind="volume", what="volume snapshot")
    total = snap.stats.bytes if snap.stats and not paths else None
    with (
        Lock(repo, "shared", "restore", prefetch_index=True),
        byte_progress(f"restore {snap.short_id}", total, quiet=ctx.quiet or output != "table") as advance,
    ):
        stats = restore_snapshot(repo, snap, target, paths=list(paths) or None, progress=advance)
    data = {"id": snap.id, "target": os.path.abspath(target), "files": stats.files, "dirs": stats.dirs,
            "symlinks": stats.symlinks, "specialFiles": stats.special, "bytes": stats.bytes,
            "errors": stats.errors}  # fmt: skip
    if output == "table":
        # Everything restored is counted: "files" are regular files (as a backup counts
        # them), so symlinks and fifos/devices have figures of their own.
        counts = [_count(stats.files, "file"), _count(stats.dirs, "dir"), _count(stats.symlinks, "symlink")]
        if stats.special:  # rare in a volume: named only when there are some
            counts.append(_count(stats.special, "special file"))
        click.echo(f"restored {', '.join(counts)}, {stats.bytes:,} bytes into {data['target']}")
    else:
        emit(data, output)
    if stats.errors:
        raise PartialFailure(f"{len(stats.errors)} entries could not be restored", details=stats.errors)
    return ExitCode.OK


@mover_group.command("ls")
@repo_option
@click.argument("snapshot_id", metavar="ID")
@click.argument("path", required=False, metavar="[PATH]")
@click.option("-r", "--recursive", is_flag=True, help="Every entry below PATH, not only its children.")
@output_option()
def ls(snapshot_id: str, path: str | None, recursive: bool, output: str) -> int:
    """List the files of volume snapshot ID under PATH (default: its root).

    Paths are the ones `dr mover restore --path` takes. Read-only: takes no lock.
    """
    import itertools

    from dr.cli.output import JsonStream
    from dr.repo.listing import list_entries

    repo = open_repository(app())
    snap = find_snapshot(repo, snapshot_id, kind="volume", what="volume snapshot")
    errors: list[str] = []  # subdirectories that cannot be read: named at the end, exit 3
    entries = list_entries(repo, snap, path, recursive=recursive, errors=errors)
    # The first entry is read before printing: a bad PATH fails with nothing printed.
    first = next(entries, None)
    if first is None:  # an empty directory
        if output == "json" or output == "yaml":
            emit([], output)
        return ExitCode.OK
    rest = itertools.chain([first], entries)
    if output == "json":
        emit(JsonStream((e.to_doc() for e in rest), 1), output)  # 1: not empty (its length is unknown)
    elif output == "yaml":
        emit([e.to_doc() for e in rest], output)
    else:
        # ls -l lines, printed as the trees are read (a listing can be long).
        for e in rest:
            d = e.to_doc()
            # Controls and bidi controls escaped: a name keeps to its line and shows as it is.
            name = printable(d["path"]) + (f" -> {printable(d['target'])}" if "target" in d else "")
            click.echo(
                f"{d['permissions']} {d['uid']:>6} {d['gid']:>6} {d['size']:>14,} {e.mtime:%Y-%m-%d %H:%M:%S} {name}"
            )
    if errors:
        raise PartialFailure(f"{len(errors)} directories could not be listed", details=errors)
    return ExitCode.OK


TERMINATION_LOG = "/dev/termination-log"


@mover_group.command("probe")
@click.argument("root", type=click.Path(exists=True, file_okay=False), metavar="ROOT")
@click.option("--path", "paths", multiple=True, required=True, metavar="P",
              help="Path under ROOT to describe (sha256 of a file, file count of a directory); repeatable.")  # fmt: skip
@output_option(default="json")
def probe(root: str, paths: tuple[str, ...], output: str) -> None:
    """Describe paths of a mounted volume (what a drill's data step checks).

    The JSON answer also goes to the container's termination-message file when
    there is one, so the orchestrator reads it from the pod's status.
    """
    from dr.drill.probe import probe_directory
    from dr.drill.probe_job import probe_answer

    answer = probe_answer(probe_directory(Path(root), list(paths)))
    emit(answer, output)
    # The kubelet creates the file in a pod; elsewhere only an explicit DR_TERMINATION_LOG is written.
    target = os.environ.get("DR_TERMINATION_LOG") or (
        TERMINATION_LOG if os.path.exists(TERMINATION_LOG) else None
    )
    if target:
        try:
            with open(target, "w") as f:
                f.write(json.dumps(answer, separators=(",", ":")))
        except OSError as e:
            raise DrError(f"cannot write the termination message {target}: {e.strerror or e}") from None


COMMANDS = [mover_group]
