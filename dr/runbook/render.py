"""The human runbook: Markdown for the person who gets paged, generated from a runbook YAML.

Owns the wording. The page answers, in the order a responder needs it: who
owns this, what may be lost and how long it may take (RPO/RTO), which backup
and which drill to trust, the exact ``dr restore`` lines (in place and into a
new namespace, derived from the runbook's scope: ``-n`` per namespace and its
filters, and the app's backup — its ID, else ``latest --policy`` of its backup
policy, else a ``BACKUP_ID`` to fill in), the incident procedure, a
checklist derived from the drill's own verification steps (so people check
what the drills check: all at once with the exact ``dr runbook verify`` line,
which runs them as a drill does, or with ``kubectl`` lines by hand), and how
to tell it worked. Plain Markdown without wide tables or HTML, so it prints and
reads in a terminal, a wiki or on paper.

The latest backup and drill come in as parameters (the CLI gets them from the
repository); without them the page says so and names the command that finds out.
"""

from __future__ import annotations

import itertools
import json
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dr.drill.model import DrillReport, human_duration
from dr.markdown import md_code, md_text
from dr.runbook.model import (
    DataStep,
    ExecStep,
    HttpStep,
    JobStep,
    ReadyStep,
    ResourcesStep,
    Runbook,
    VerificationStep,
    workload_ref,
)

UNKNOWN_BACKUP = "unknown — run `dr backups list`"
UNKNOWN_DRILL = "unknown — run `dr report drills`"
NEW_NAMESPACE_SUFFIX = "restored"
BACKUP_PLACEHOLDER = "BACKUP_ID"
RUNBOOK_PLACEHOLDER = "RUNBOOK.yaml"


@dataclass(frozen=True)
class BackupSummary:
    """What the runbook shows of a backup: its id, when it was taken, what it holds and how big it is."""

    id: str
    time: datetime
    namespaces: list[str] = field(default_factory=list)
    size: int | None = None  # bytes


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M %Z").strip() if t.tzinfo else t.strftime("%Y-%m-%d %H:%M")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def wrap_command(line: str, width: int = 80) -> list[str]:
    """A long shell command as continuation lines (``\\``), options kept with their values: printable."""
    if len(line) <= width:
        return [line]
    tokens = shlex.split(line)
    groups: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if (
            (tok.startswith("--") or (len(tok) == 2 and tok.startswith("-")))
            and "=" not in tok
            and i + 1 < len(tokens)
            and not tokens[i + 1].startswith("-")
        ):
            groups.append(shlex.join(tokens[i : i + 2]))
            i += 2
        else:
            groups.append(shlex.quote(tok))
            i += 1
    lines, cur = [], ""
    for g in groups:
        if cur and len(cur) + 1 + len(g) > width - 2:
            lines.append(cur + " \\")
            cur = "    " + g
        else:
            cur = f"{cur} {g}" if cur else g
    lines.append(cur)
    return lines


def _block(lines: list[str], lang: str = "sh") -> list[str]:
    return [f"```{lang}", *(w for ln in lines for w in wrap_command(ln)), "```"]


# --------------------------------------------------------------------------- restore commands


def restore_filters(rb: Runbook) -> list[str]:
    """``-n`` per scope namespace, ``--selector``, ``--include-resources`` and ``--exclude-resources``:
    what limits a restore to this app's part of a backup.

    A backup often holds more than one app (a nightly policy over several
    namespaces): without ``-n`` the page of one app would restore, or with
    ``--existing recreate`` roll back, the others too. ``dr restore -n`` takes
    globs, so the scope's are passed as they are.
    """
    scope = rb.spec.scope
    args: list[str] = []
    for ns in scope.namespaces:
        args += ["-n", ns]
    if scope.selector:
        args += ["--selector", scope.selector]
    if scope.include_resources:
        args += ["--include-resources", ",".join(scope.include_resources)]
    if scope.exclude_resources:
        args += ["--exclude-resources", ",".join(scope.exclude_resources)]
    return args


def _policy_args(rb: Runbook) -> list[str]:
    """``--policy P`` for the runbook's backup policy: the ``dr`` lines read its repository."""
    return ["--policy", rb.spec.backup_policy] if rb.spec.backup_policy else []


def backup_choice(rb: Runbook, backup: str | None) -> list[str]:
    """Which backup the restore lines restore: ``backup`` (an ID) if known, else the newest of the
    app's backup policy (``latest --policy P``), else a ``BACKUP_ID`` to take from ``dr backups list``
    (``latest`` alone is the newest backup of the whole repository, maybe another app's).

    An ID keeps ``--policy P`` too: the policy may write to a repository that is not the
    default one, and ``dr restore ID`` alone looks for the ID in the default one."""
    policy = _policy_args(rb)
    if backup and backup != "latest":
        return [backup, *policy]
    if policy:
        return ["latest", *policy]
    return [BACKUP_PLACEHOLDER]


def list_command(rb: Runbook, namespace: str) -> str:
    """The page's ``dr backups list`` line: the app's namespace, in its backup policy's repository."""
    return shlex.join(["dr", "backups", "list", "--namespace", namespace, *_policy_args(rb)])


def new_namespace_mapping(rb: Runbook) -> dict[str, str]:
    """Source namespace -> ``NAME-restored`` for every named namespace of the scope."""
    out: dict[str, str] = {}
    suffix = f"-{NEW_NAMESPACE_SUFFIX}"
    for i, ns in enumerate(rb.concrete_namespaces()):
        name = ns[: 63 - len(suffix)] + suffix
        # Cut alike (the same first 54 characters): the restore would merge them into one. The
        # position tells them apart, or a number past the scope's when another namespace has that
        # name already (its own first characters ending in '-<position>').
        marks = itertools.chain([i], itertools.count(len(rb.spec.scope.namespaces)))
        while name in out.values():
            tail = f"-{next(marks)}{suffix}"
            name = ns[: 63 - len(tail)].rstrip("-") + tail
        out[ns] = name
    return out


def restore_commands(rb: Runbook, backup: str | None = None) -> dict[str, list[str]]:
    """The exact command lines: ``preview``, ``in_place``, ``replace`` and ``new_namespace``."""
    base = ["dr", "restore", *backup_choice(rb, backup), *restore_filters(rb)]
    mapping: list[str] = []
    for old, new in new_namespace_mapping(rb).items():
        mapping += ["--namespace-mapping", f"{old}={new}"]
    return {
        "preview": [shlex.join([*base, "--dry-run"])],
        "in_place": [shlex.join(base)],
        "replace": [shlex.join([*base, "--existing", "recreate"])],
        "new_namespace": [shlex.join([*base, *mapping, "--dry-run"]), shlex.join([*base, *mapping])],
    }


def verify_commands(rb: Runbook, runbook: str | None = None) -> dict[str, str]:
    """The ``dr runbook verify`` lines of the runbook file ``runbook`` (as the page names it; a
    placeholder if not known): ``in_place`` checks the runbook's namespaces, ``new_namespace``
    those the new-namespace restore lines restore into (``--namespace`` for the one namespace,
    else ``--namespace-mapping`` for each, as the restore line maps them)."""
    base = ["dr", "runbook", "verify", runbook or RUNBOOK_PLACEHOLDER]
    mapping = new_namespace_mapping(rb)
    if len(mapping) == 1:
        args = ["--namespace", *mapping.values()]
    else:
        args = [arg for old, new in mapping.items() for arg in ("--namespace-mapping", f"{old}={new}")]
    return {"in_place": shlex.join(base), "new_namespace": shlex.join([*base, *args])}


# --------------------------------------------------------------------------- checklist


def _kinds_phrase(kinds: list[str]) -> str:
    plural = [k + "s" for k in kinds]
    return plural[0] if len(plural) == 1 else ", ".join(plural[:-1]) + " and " + plural[-1]


def checklist_item(step: VerificationStep, ns: str) -> tuple[str, list[str]]:
    """(what to check, in words; kubectl lines to check it by hand) for one verification step."""
    if isinstance(step, ResourcesStep):
        parts = []
        for e in step.expect:
            sel = f" labelled {md_code(e.selector)}" if e.selector else ""
            what = md_text(e.kind)  # the author's text, not markup
            if e.names:
                parts.append(f"{what} {', '.join(md_code(n) for n in e.names)}{sel}")
            if e.min_count > max(len(e.names), 0) or not e.names:
                parts.append(f"at least {e.min_count} {what}{sel}")
        kinds = ",".join(dict.fromkeys(e.kind.lower() for e in step.expect))
        return f"These objects exist in {md_code(ns)}: " + "; ".join(parts) + ".", [
            shlex.join(["kubectl", "-n", ns, "get", kinds])
        ]
    if isinstance(step, ReadyStep):
        what = _kinds_phrase(list(step.kinds))
        names = f" ({', '.join(md_code(n) for n in step.names)})" if step.names else ""
        sel = f" labelled {md_code(step.selector)}" if step.selector else ""
        text = (
            f"All {what}{names}{sel} in {md_code(ns)} are ready: every replica ready"
            + (", Jobs complete" if "Job" in step.kinds else "")
            + f" (the drill waits up to {human_duration(step.timeout)})."
        )
        timeout = f"--timeout={int(step.timeout.total_seconds())}s"
        if len(step.kinds) == 1 and step.names and not step.selector:
            # Named objects of one kind: a line that waits as the drill does and says whether
            # it is ready (exit status too); `get` left readiness to a column, if the server
            # sends one.
            one = step.kinds[0].lower()
            if one == "job":
                lines = [["kubectl", "-n", ns, "wait", "--for=condition=complete", f"job/{n}", timeout]
                         for n in step.names]  # fmt: skip
            else:
                lines = [
                    ["kubectl", "-n", ns, "rollout", "status", f"{one}/{n}", timeout] for n in step.names
                ]
            return text, [shlex.join(cmd) for cmd in lines]
        kinds = ",".join(k.lower() + "s" for k in step.kinds)
        cmd = ["kubectl", "-n", ns, "get", kinds]
        if step.selector:
            cmd += ["-l", step.selector]
        return text, [shlex.join(cmd)]
    if isinstance(step, HttpStep):
        exp = step.expect
        checks = [f"answers {exp.status}"]
        if exp.body_regex:
            checks.append(f"the body matches {md_code(exp.body_regex)}")
        checks += [f"{md_code(j.path)} is {md_code(_json(j.equals))}" for j in exp.json_]
        target = f"{step.scheme}://{step.service}:{step.port}{step.path}"
        text = f"{md_code(step.method + ' ' + target)} in {md_code(ns)} " + ", ".join(checks) + "."
        svc = f"https:{step.service}:{step.port}" if step.scheme == "https" else f"{step.service}:{step.port}"
        raw = f"/api/v1/namespaces/{ns}/services/{svc}/proxy{step.path}"
        cmds = [shlex.join(["kubectl", "get", "--raw", raw])] if step.method == "GET" else []
        return text, cmds
    if isinstance(step, ExecStep):
        shown = shlex.join(step.command)
        container = ["-c", step.container] if step.container else []
        regex = step.expect.stdout_regex
        out = f" and prints output matching {md_code(regex)}" if regex else ""
        if step.workload:
            kind, name = workload_ref(step.workload)
            if kind is None:
                text = f"{md_code(shown)} in workload {md_code(name)} exits {step.expect.exit_code}{out}."
                return text, [
                    shlex.join(
                        ["kubectl", "-n", ns, "get", "deployment,statefulset,daemonset", "-o", "name"]
                    ),
                    shlex.join(
                        ["kubectl", "-n", ns, "exec", f"KIND/{name}", *container, "--", *step.command]
                    ),
                ]
            target = f"{kind.lower()}/{name}"
            text = f"{md_code(shown)} in {md_code(target)} exits {step.expect.exit_code}{out}."
            return text, [shlex.join(["kubectl", "-n", ns, "exec", target, *container, "--", *step.command])]
        sel = str(step.selector)
        text = (
            f"{md_code(shown)} in a running pod labelled {md_code(sel)} exits {step.expect.exit_code}{out}."
        )
        return text, [
            shlex.join(["kubectl", "-n", ns, "get", "pods", "-l", sel]),
            shlex.join(["kubectl", "-n", ns, "exec", "POD", *container, "--", *step.command]),
        ]
    if isinstance(step, DataStep):
        parts = []
        for c in step.checks:
            if c.sha256:
                parts.append(f"{md_code(c.path)} has sha256 {md_code(c.sha256[:16] + '…')}")
            elif c.count is not None:
                parts.append(f"{md_code(c.path)} holds exactly {c.count} files")
            else:
                parts.append(f"{md_code(c.path)} holds at least {c.min_count} files")
        return f"Volume {md_code(step.pvc)} in {md_code(ns)}: " + "; ".join(parts) + ".", []
    if isinstance(step, JobStep):
        argv = [*step.command, *step.args]
        text = (
            f"The check job {md_code(step.image)}"
            + (f" ({md_code(shlex.join(argv))})" if argv else "")
            + " succeeds"
        )
        if step.env:
            text += " (environment: " + ", ".join(md_text(e.name) for e in step.env) + ")"
        name = f"check-{step.name}"[:52]
        # One line whose output and exit status are the answer, leaving nothing behind in the
        # app's namespace: `create job` / a detached `run` only said "created", and a second
        # try failed on the pod or Job left from the first. `--attach` with `--restart=Never`
        # returns the container's exit code; `--rm` deletes the pod.
        cmd = ["kubectl", "-n", ns, "run", name, f"--image={step.image}", "--restart=Never"]
        cmd += ["--attach", "--rm", "--quiet"]
        if step.command:
            # `--command -- WORDS` sets the container's command: command + args, as the drill's Job.
            cmd += ["--command", "--", *argv]
        else:
            # Only args: the image's own entrypoint must stay (`run … -- WORDS` sets args).
            cmd += ["--", *step.args] if step.args else []
        return text + ".", [shlex.join(cmd)]
    raise TypeError(f"unknown step {step!r}")


def _json(v: Any) -> str:
    return json.dumps(v)


# --------------------------------------------------------------------------- the page


def render_markdown(
    rb: Runbook,
    *,
    source: str | None = None,
    latest_backup: BackupSummary | None = None,
    latest_drill: DrillReport | None = None,
    generated: datetime | None = None,
    repository: str | None = None,
    config: str | None = None,
) -> str:
    """The whole human runbook as Markdown.

    ``repository`` (its URL, redacted) and ``config`` (the dr.yaml, or "built-in defaults")
    are where the page found the app's backups: the ``dr`` lines only find them with the
    same configuration, which the person paged may not have in their shell."""
    spec = rb.spec
    names = rb.concrete_namespaces()
    first_ns = names[0] if names else "NAMESPACE"
    cmds = restore_commands(rb, latest_backup.id if latest_backup else None)
    verify = verify_commands(rb, source)
    out: list[str] = [f"# Runbook: {rb.name}", "", spec.description.strip(), ""]
    made = "Generated by `dr runbook render`" + (f" from {md_code(source)}" if source else "")
    made += f" on {when(generated)}" if generated else ""
    out += [f"> {made}. Edit the runbook YAML, not this page.", ""]

    # -- at a glance
    out += ["## At a glance", "", "| | |", "|---|---|"]
    out.append(f"| Namespaces | {', '.join(md_code(n) for n in spec.scope.namespaces)} |")
    if spec.scope.selector:
        out.append(f"| Selector | {_cell(md_code(spec.scope.selector))} |")
    if spec.backup_policy:
        out.append(f"| Backup policy | {md_code(spec.backup_policy)} |")
    if repository:
        shown = config if config == "built-in defaults" else md_code(config or "")  # a path: as typed
        where = f"{md_code(repository)}" + (f" (configuration: {shown})" if config else "")
        out.append(
            f"| Repository | {_cell(where)}; run the `dr` lines below with the same configuration "
            "(`--config FILE` or `$DR_CONFIG`; `--repo URL` for another repository) |"
        )
    rpo, rto = human_duration(spec.objectives.rpo), human_duration(spec.objectives.rto)
    out.append(f"| Recovery point objective (RPO) | {rpo}: at most {rpo} of changes may be lost |")
    out.append(f"| Recovery time objective (RTO) | {rto}: from starting the restore to a working app |")
    out.append(f"| Latest good backup | {_cell(_backup_line(latest_backup))} |")
    out.append(f"| Latest passing drill | {_cell(_drill_line(latest_drill))} |")
    out.append("")

    # -- contacts
    out += ["## Contacts", ""]
    for c in spec.contacts:
        # Free text of the runbook's author, shown as written (a "<team>" placeholder is not a tag).
        ways = [md_text(w) for w in (c.email, c.phone, f"pager {c.pager}" if c.pager else None) if w]
        role = f" ({md_text(c.role)})" if c.role else ""
        out.append(f"- **{md_text(c.name)}**{role}: {', '.join(ways)}")
    out.append("")

    # -- recovery commands
    out += ["## Restore", ""]
    out += [
        "Find the backup to restore: the newest one taken before the damage. "
        + _which_backup(rb, latest_backup is not None)
        + " Every line restores only this app's namespaces and resources (`-n` and the scope's filters), "
        "also when the backup holds other apps.",
        "",
        *_block([list_command(rb, first_ns)]),
        "",
        "### In place (the namespace is damaged or gone)",
        "",
        "Preview, then restore. Objects that still exist are left alone; the third line replaces them "
        "with the backed-up version.",
        "",
        *_block([*cmds["preview"], *cmds["in_place"], *cmds["replace"]]),
        "",
        "### Into a new namespace (inspect the backup next to the running app, or recover beside it)",
        "",
    ]
    globs = [n for n in spec.scope.namespaces if n not in names]
    out += _block(cmds["new_namespace"])
    out.append("")
    if globs:
        out += [
            f"Namespaces matching {', '.join(md_code(g) for g in globs)} need their own "
            "`--namespace-mapping OLD=NEW` each: see `dr backups describe ID` for their names.",
            "",
        ]
    out += [
        "`dr restore` exits 0 when everything was restored, 3 when some items failed (each is listed; "
        "fix the cause and run the same command again, restored items are skipped), "
        "1 when nothing was restored (every item failed, e.g. an identity without rights, or the "
        "repository or cluster could not be reached), 2 for a mistake in the command line.",
        "",
    ]

    # -- procedure
    out += ["## Incident procedure", ""]
    for i, p in enumerate(spec.procedure, 1):
        out += [f"### {i}. {p.title}", "", p.text.strip(), ""]
        line = p.command_line()
        if line:
            out += [*_block([line]), ""]
        if p.expect:
            out += [f"**Expected:** {p.expect.strip()}", ""]

    # -- checklist
    out += [
        "## Verification checklist",
        "",
        "The restore drills check exactly these. After a real restore, one command checks them all "
        "where the app is, as a drill does"
        + (
            " (the data checks too, which have no line by hand)"
            if any(isinstance(s, DataStep) for s in spec.verification)
            else ""
        )
        + ", and says for each step whether it passed and why: exit 0 when every step passed, "
        "4 when one failed.",
        "",
        *_block([verify["in_place"]]),
        "",
        "After a restore into a new namespace (above), check there instead:",
        "",
        *_block([verify["new_namespace"]]),
        "",
        "Or check them by hand (in a new namespace, use its name instead):",
        "",
    ]
    for step in spec.verification:
        ns = rb.step_namespace(step) or first_ns
        text, lines = checklist_item(step, ns)
        if step.description:
            out += [f"- [ ] **{step.name}**: {step.description.strip().rstrip('.')}.", f"  {text}"]
        else:
            out.append(f"- [ ] **{step.name}**: {text}")
        if lines:
            out.append("  By hand: " + " then ".join(md_code(ln) for ln in lines))
    out.append("")

    # -- done?
    out += ["## How to tell it worked", ""]
    out += [
        "- `dr runbook verify` exited 0, or every box of the checklist is ticked.",
        "- `dr restore` exited 0 and listed no failed items.",
        f"- The time from starting the restore to the last ticked box is within the RTO ({rto})."
        + (
            f" The latest passing drill took {human_duration(latest_drill.rto_measured)}."
            if latest_drill and latest_drill.rto_measured is not None
            else ""
        ),
        f"- The restored backup was taken at most {rpo} before the incident (RPO); "
        "changes after the backup's time are lost and must be recovered from elsewhere or announced.",
        "- The contacts above agree that the app works, and the incident notes say which backup was restored.",
        "",
    ]

    # -- drills
    d = spec.drill
    out += ["## Restore drills", ""]
    sched = (
        f"{md_code(d.schedule)}" + (f" ({d.time_zone})" if d.time_zone else " (UTC)")
        if d.schedule
        else "not scheduled"
    )
    drill_line = shlex.join(["dr", "drill", "run", source or RUNBOOK_PLACEHOLDER])
    out.append(f"- Schedule: {sched}; run by hand with {md_code(drill_line)}.")
    sample = next(iter(rb.scratch_namespaces("ID").values()), f"{d.namespace_prefix}-{rb.name}-ID")
    out.append(
        f"- Scratch namespaces like {md_code(sample)}, deleted after the drill, "
        f"or by `dr drill gc` after {human_duration(d.ttl)}; a drill is stopped after {human_duration(d.timeout)}."
    )
    if d.quota:
        out.append(
            "- Quota of the scratch namespace: "
            + ", ".join(md_text(f"{k} {v}") for k, v in d.quota.items())
            + "."
        )
    out.append("")
    return "\n".join(out)


def _which_backup(rb: Runbook, known: bool) -> str:
    if known:
        return (
            "The ID below is this app's latest good backup when the page was generated; "
            "take a newer one from the list if there is one."
        )
    if rb.spec.backup_policy:
        return (
            f"`latest --policy {rb.spec.backup_policy}` below is the newest backup of the app's "
            "backup policy; to restore an older one, put its ID in place of `latest`."
        )
    return f"Put its ID from the list in place of `{BACKUP_PLACEHOLDER}` below."


def _backup_line(b: BackupSummary | None) -> str:
    if b is None:
        return UNKNOWN_BACKUP
    parts = [f"{md_code(b.id)}, taken {when(b.time)}"]
    if b.namespaces:
        parts.append("namespaces " + ", ".join(b.namespaces))
    if b.size is not None:
        parts.append(human_size(b.size))
    return "; ".join(parts)


def _drill_line(d: DrillReport | None) -> str:
    if d is None:
        return UNKNOWN_DRILL
    parts = [f"{when(d.started)} (drill {md_code(d.id)})"]
    if d.rto_measured is not None:
        parts.append(f"RTO {human_duration(d.rto_measured)}")
    if d.backup_id:
        parts.append(f"restored backup {md_code(d.backup_id)}")
    return "; ".join(parts)
