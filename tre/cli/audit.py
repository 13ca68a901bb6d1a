"""Auditor commands: verify a bundle offline, search, export, and check the live checkpoint.

``verify`` needs no server and no account: it uses only ``tre.audit.verify``. ``checkpoint``
keeps the last verified checkpoint under ``$TRE_HOME/audit/`` (``~/.tre/audit/``, or
``/var/lib/tre/audit/`` as root) and demands a consistency proof
from it to the server's newest one, so a server that rewrites history, or shows different
trees to different auditors, is caught the next time any of them looks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from tre import privatefile
from tre.audit.merkle import ProofError, leaf_hash, verify_consistency, verify_inclusion
from tre.audit.note import (
    Checkpoint,
    NoteError,
    VerifierKey,
    cosignatures,
    decode_note,
    open_checkpoint,
    open_checkpoint_any,
)
from tre.audit.tile_verify import TileError, verify_tiles
from tre.audit.verify import (
    MAX_CLOCK_SKEW_MS,
    Policy,
    VerifyReport,
    follow_key_history,
    signed_only_after_retirement,
    verify_bundle,
)
from tre.cli.client import ApiClient, CliError
from tre.cli.output import JsonFlag, console, err_console, print_json, table, terminal_safe, untrusted
from tre.config import get_settings
from tre.plural import count

app = typer.Typer(help="Signed audit log: verify bundles offline, search, export, check checkpoints.")


def state_dir() -> Path:
    return get_settings().home / "audit"


def _read_text(path: Path, what: str) -> str:
    """A text file the auditor names (a key, a policy, a pinned note), or one line saying why
    it cannot be one: a binary file given as --key ended as "unexpected UnicodeDecodeError"."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{what} {path} is not UTF-8 text") from None
    except OSError as e:
        raise CliError(f"cannot read {what} {path}: {e.strerror or e}") from e


def _parse_key(text: str, what: str) -> VerifierKey:
    try:
        return VerifierKey.parse(text)
    except NoteError as e:
        raise CliError(f"bad {what}: {e}") from e


def _read_policy(path: Path) -> Policy:
    """A witness policy file (C2SP tlog-witness), or the one-line error naming it."""
    try:
        return Policy.parse(_read_text(path, "policy"))
    except NoteError as e:
        raise CliError(f"bad policy {path}: {e}") from e


def _key_arg(key: str) -> VerifierKey:
    path = Path(key)
    return _parse_key(_read_text(path, "verifier key") if path.is_file() else key, "verifier key")


def _pinned_key() -> VerifierKey | None:
    pinned = state_dir() / "log.vkey"
    if not pinned.is_file():
        return None
    return _parse_key(_read_text(pinned, "pinned key"), f"pinned key in {pinned}")


def _load_key(key: str | None) -> VerifierKey | None:
    """A verifier key given inline, as a file, or the one pinned earlier."""
    return _key_arg(key) if key else _pinned_key()


def _bundle_key(data: bytes) -> VerifierKey:
    try:
        header = json.loads(data.split(b"\n", 1)[0])
        return VerifierKey.parse(str(header.get("vkey", "")))
    except RecursionError:
        raise CliError("the bundle names no usable key: its header is nested too deeply") from None
    except (ValueError, AttributeError, NoteError) as e:
        raise CliError(f"the bundle names no usable key: {e}") from e


def _bundle_history(data: bytes) -> list[str]:
    """The bundle header's key history (unverified: each transition is checked when followed)."""
    try:
        history = json.loads(data.split(b"\n", 1)[0]).get("key_history", [])
    except (ValueError, AttributeError, RecursionError):
        return []
    return [h for h in history if isinstance(h, str)] if isinstance(history, list) else []


# A witness's checkpoint answer: one note, at most 100 signature lines, within this time in
# all (httpx's timeout bounds each read, not a witness trickling a byte every few seconds).
MAX_WITNESS_ANSWER = 64 * 1024
WITNESS_DEADLINE_S = 20.0


def _fetch_witness_note(url: str, origin: str) -> str:
    """GET <witness>/checkpoint?origin=...: the note as text, bounded, never decompressed."""
    deadline = time.monotonic() + WITNESS_DEADLINE_S
    with (
        httpx.Client(timeout=min(10.0, WITNESS_DEADLINE_S)) as http,
        http.stream(
            "GET", f"{url}/checkpoint", params={"origin": origin}, headers={"Accept-Encoding": "identity"}
        ) as resp,
    ):
        if resp.status_code != 200:
            raise NoteError(f"HTTP {resp.status_code}")
        if resp.headers.get("content-encoding", "identity").lower() != "identity":
            raise NoteError("a compressed answer")
        raw = b""
        for chunk in resp.iter_raw():
            raw += chunk
            if len(raw) > MAX_WITNESS_ANSWER:
                raise NoteError("an answer larger than a checkpoint note")
            if time.monotonic() > deadline:
                raise NoteError(f"no complete answer within {WITNESS_DEADLINE_S:g} s")
    return decode_note(raw)


def witnessed_checkpoints(pol: Policy, keys: list[VerifierKey], origin: str) -> list[Checkpoint]:
    """The last checkpoint each of the policy's witnesses (with a URL) cosigned, from the witness.

    Why: whoever holds the log's signing key can roll the log back (restore an old database,
    rewind the files beside the key) and re-sign the shorter or forked tree; every checkpoint
    still verifies. Witnesses refuse to cosign it, but that only helps an auditor who asks
    them. Each note must carry a valid log signature and that witness's cosignature; fewer
    valid answers than the quorum (or than the witnesses with a URL, if fewer) is an error,
    so the server cannot hide them by sitting between the auditor and a witness.
    """
    found: list[Checkpoint] = []
    failures: list[str] = []
    for w in pol.witnesses:
        url = pol.urls.get(w.encode())
        if url is None:
            continue
        try:
            note = _fetch_witness_note(url, origin)
            cp, _ = open_checkpoint_any(note, keys, origin)
            if not cosignatures(note, [w]):
                raise NoteError("it does not carry this witness's cosignature")
        except (httpx.HTTPError, NoteError) as e:
            failures.append(f"{w.name}: {type(e).__name__ if isinstance(e, httpx.HTTPError) else e}")
            continue
        found.append(cp)
    needed = min(pol.quorum or 1, len(pol.urls))
    for f in failures:
        _say(f"warning: witness {f}", err=True)
    if len(found) < needed:
        raise CliError(
            f"only {len(found)} of the policy's witnesses gave a valid cosigned checkpoint "
            f"({needed} needed): cannot rule out a rollback"
        )
    return found


def _say(text: str, *, err: bool = False) -> None:
    """Print text that holds anything from a bundle, a server or a witness: control
    characters shown as ``\\xNN``, square brackets never read as rich markup."""
    (err_console if err else console).print(
        terminal_safe(text), highlight=False, soft_wrap=True, markup=False
    )


def _warn_unknown_action(unknown: Any) -> None:
    """Say so when no entry at all has the searched action: an empty table alone reads as
    "it never happened" when the action was misspelt (`job.submit` for `job.submitted`)."""
    if not isinstance(unknown, dict):
        return
    given = unknown.get("closest")
    closest = [str(a) for a in given[:3]] if isinstance(given, list) else []
    near = f"; did you mean {' or '.join(repr(a) for a in closest)}?" if closest else ""
    _say(f"warning: no entry in the log has action {str(unknown.get('action'))!r}{near}", err=True)


def _hashes(answer: Any, what: str) -> list[bytes]:
    """The ``proof`` of a server's proof answer as hashes, or one line saying it is malformed."""
    proof = answer.get("proof") if isinstance(answer, dict) else None
    try:
        if not isinstance(proof, list) or len(proof) > 64:
            raise ValueError
        hashes = [bytes.fromhex(h) for h in proof]
    except (TypeError, ValueError):
        raise CliError(f"the server's {what} proof is malformed") from None
    if any(len(h) != 32 for h in hashes):
        raise CliError(f"the server's {what} proof is malformed")
    return hashes


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate keys")
    return dict(pairs)


@app.command()
def verify(
    bundle: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Bundle from `tre audit export`.")
    ],
    key: Annotated[
        str | None,
        typer.Option(help="Trusted log key (vkey string or file); default: the pinned one."),
    ] = None,
    pin: Annotated[
        list[Path] | None, typer.Option(help="A checkpoint note you saw earlier (repeatable).")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="Witness policy: 'log KEY', 'witness KEY' lines and 'quorum N'."),
    ] = None,
    no_pinned: Annotated[
        bool, typer.Option("--no-pinned", help="Ignore and do not update the pins in $TRE_HOME/audit/.")
    ] = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not fetch the policy's witnesses' checkpoints.")
    ] = False,
) -> None:
    """Verify an exported bundle offline: tree, hash chain, checkpoint signatures, coverage, pins.

    With --policy, the last checkpoint each witness with a URL cosigned is fetched from the
    witness itself and must be contained in the bundle (a rollback by whoever holds the log's
    key fails as truncation or fork); --offline skips that.

    The bundle's own key is never trusted. The log key comes from $TRE_HOME/audit/log.vkey (pinned
    earlier), else --key (then pinned), else, on first use only, the bundle's key is pinned with
    a loud notice. A key other than the pinned one fails unless a key transition signed by the
    pinned key introduces it. The saved checkpoint (from `tre audit checkpoint` or an earlier
    verify) always applies too, with or without --key.
    """
    data = bundle.read_bytes()
    sdir = state_dir()
    pinned = None if no_pinned else _pinned_key()
    given = _key_arg(key) if key else None
    pol = None
    if policy is not None:
        pol = _read_policy(policy)
        given = given or pol.log_key
    root = pinned or given
    if root is None:
        root = _bundle_key(data)
        err_console.print(
            f"NOTICE: no pinned log key. Trusting this bundle's key ON FIRST USE: {root.encode()}\n"
            "NOTICE: compare it with the key the log operator published out of band "
            "(`tre audit public-key` over a channel you trust); from now on any other key FAILS.",
            style="bold yellow",
            highlight=False,
            soft_wrap=True,
        )
    notes = [_read_text(p, "checkpoint note") for p in pin or []]
    saved = sdir / "checkpoint.note"
    if not no_pinned and saved.is_file():
        notes.append(_read_text(saved, "saved checkpoint"))
    if pol is not None and pol.urls and not offline:
        keys, _ = follow_key_history(root, _bundle_history(data), VerifyReport())
        notes.extend(cp.note for cp in witnessed_checkpoints(pol, keys, root.name))
    report = verify_bundle(data, root, notes, pol)
    # No keys when the bundle could not be read at all: its own error says why, and "the key
    # you gave is not your pinned key" (naming the same key twice) would only mislead.
    if given is not None and report.keys and given not in report.keys:
        report.bad(
            None,
            f"key change: the key you gave ({given.encode()}) is not your pinned key "
            f"({root.encode()}) nor introduced by a key transition signed by it",
        )
    for w in report.warnings:
        _say(f"warning: {w}", err=True)
    if not report.ok:
        for err in report.errors:
            _say(f"  - {err}", err=True)
        raise CliError(report.summary())
    if not no_pinned:
        _remember(report, pinned)
    _say(report.summary())


def _remember(report: VerifyReport, pinned: VerifierKey | None) -> None:
    """After a successful verification: pin the newest trusted key and the newest checkpoint."""
    sdir = state_dir()
    newest = report.keys[-1]
    if newest != pinned:
        if pinned is not None:
            err_console.print(
                f"notice: the log rotated its key (signed transition followed); pinning {newest.encode()}",
                highlight=False,
                soft_wrap=True,
            )
        _save(sdir / "log.vkey", newest.encode() + "\n")
    cp = report.latest_vouching
    saved = sdir / "checkpoint.note"
    if cp is None:
        return
    if saved.is_file():
        try:
            old, _ = open_checkpoint_any(_read_text(saved, "saved checkpoint"), report.keys, newest.name)
            if old.tree_size >= cp.tree_size:
                return
        except NoteError:
            pass
    _save(saved, cp.note)


@app.command()
def search(
    user: Annotated[str | None, typer.Option("--user", "--actor", help="Who acted.")] = None,
    project: Annotated[str | None, typer.Option(help="Project id.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset id.")] = None,
    job: Annotated[str | None, typer.Option(help="Job id.")] = None,
    action: Annotated[str | None, typer.Option(help="Action, e.g. job.submitted.")] = None,
    since: Annotated[datetime | None, typer.Option(help="From this time (UTC unless zoned).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Before this time (UTC unless zoned).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most entries to show.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON entry per line.")] = False,
) -> None:
    """Search the audit log (auditor role)."""
    params: dict[str, Any] = {
        k: v
        for k, v in {
            "actor": user,
            "project_id": project,
            "dataset_id": dataset,
            "job_id": job,
            "action": action,
            "since": _zoned(since),
            "until": _zoned(until),
        }.items()
        if v is not None
    }
    client = ApiClient()
    items: list[dict[str, Any]] = []
    after = -1
    while len(items) < limit:
        page = client.get(
            "/api/v1/audit/entries", params={**params, "after": after, "limit": min(1000, limit - len(items))}
        )
        items.extend(page["items"])
        _warn_unknown_action(page.get("unknown_action"))
        for idx in page.get("damaged", []):
            _say(
                f"warning: entry {untrusted(idx)} is stored with a body that does not match its "
                "leaf hash (database edited); it is not shown",
                err=True,
            )
        if page.get("next_after") is None:
            break
        after = page["next_after"]
    if as_json:  # JSON lines, never through rich (it would wrap a long line when piped)
        for it in items:
            print(json.dumps({k: v for k, v in it.items() if k != "body"}, sort_keys=True))
        return
    table(
        f"audit entries ({len(items)})",
        ["idx", "time", "actor", "action", "project", "dataset", "job", "details"],
        (
            [
                it["idx"],
                it["timestamp"],
                it["actor"],
                it["action"],
                it["project_id"],
                it["dataset_id"],
                it["job_id"],
                json.dumps(it["details"], sort_keys=True)[:80],
            ]
            for it in items
        ),
    )


def _zoned(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="Where to write the bundle (.jsonl).")],
    tree_size: Annotated[int | None, typer.Option(help="Export this many entries (a signed size).")] = None,
    max_checkpoints: Annotated[int, typer.Option(help="Most checkpoints to include.")] = 1000,
) -> None:
    """Download a bundle (entries + checkpoints + public key) for offline `tre audit verify`."""
    params: dict[str, Any] = {"max_checkpoints": max_checkpoints}
    if tree_size is not None:
        params["tree_size"] = tree_size
    client = ApiClient()
    query = "&".join(f"{k}={v}" for k, v in params.items())
    size = client.download(
        f"/api/v1/audit/export?{query}", out, progress=True, expect=("application/x-ndjson",)
    )
    console.print(
        f"wrote {out} ({size} bytes); check it with: {_verify_hint(out)}", highlight=False, soft_wrap=True
    )


def _verify_hint(out: Path) -> str:
    """The verify line for a bundle just written. Without a pinned key, plain `tre audit verify`
    trusts the bundle's own key on first use: the hint named that line, though README's auditor
    had just saved the published key with `tre audit public-key > log.vkey` (newcomer round 21)."""
    if (state_dir() / "log.vkey").is_file():
        return f"tre audit verify {out}"
    return (
        f"tre audit verify {out} --key log.vkey (the log key: `tre audit public-key > log.vkey` once, "
        "compared with the key its operator publishes)"
    )


@app.command("public-key")
def public_key() -> None:
    """Print the log's verifier key (pin it out of band, e.g. in your audit records)."""
    info = ApiClient().get("/api/v1/audit/public-key")
    # Parsed before it is printed: what lands in log.vkey is a key, never the server's text.
    vkey = _parse_key(str(info.get("vkey", "")) if isinstance(info, dict) else "", "key from the server")
    _say(vkey.encode())


def _save(path: Path, text: str) -> None:
    """The auditor's remembered state (pinned key, last checkpoint): atomic, private to this
    process's temporary name (two runs at once never share one), and durable, folder
    included: a checkpoint that a power cut moves back is a rollback nobody would see."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    privatefile.replace(path, text.encode())


# The API re-signs its checkpoint when the newest is older than a minute; beyond this, with
# the verifier's clock-skew bound, a checkpoint is stale.
STALE_AFTER_S = 60 + MAX_CLOCK_SKEW_MS // 1000


def _age_s(cp: Checkpoint) -> int | None:
    ts = cp.timestamp_ms
    return None if ts is None else max(0, int(time.time() - ts / 1000))


def _signed_before(new: Checkpoint, old: Checkpoint) -> bool:
    """A larger tree signed (beyond the clock-skew bound) before a smaller one you saw."""
    a, b = new.timestamp_ms, old.timestamp_ms
    return a is not None and b is not None and new.tree_size > old.tree_size and a < b - MAX_CLOCK_SKEW_MS


@app.command()
def checkpoint(
    key: Annotated[
        str | None, typer.Option(help="Trusted log key; default: pinned, else trust the server once.")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="Witness policy; the newest checkpoint must extend what its witnesses cosigned."),
    ] = None,
    max_age: Annotated[
        int, typer.Option(min=1, help="Refuse a newest checkpoint signed longer ago than this (seconds).")
    ] = STALE_AFTER_S,
    seen: Annotated[
        list[Path] | None,
        typer.Option(help="A checkpoint note another auditor (or a monitor) saw; the log must extend it."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Fetch the newest checkpoint, check its signature and its consistency with the one you saw last.

    The first run pins the log key and checkpoint (trust on first use, unless --key); each
    later run fails loudly if the server cannot prove the new tree extends the pinned one.
    With --policy, it must also extend the last checkpoint each witness (with a URL in the
    policy) cosigned, fetched from the witness: a log rolled back by whoever holds its key fails.
    A checkpoint older than --max-age (the server re-signs every minute) is refused. --seen
    takes checkpoints others saw (exchanged out of band): a log showing them another history
    fails as a FORK.
    """
    client = ApiClient()
    sdir = state_dir()
    pinned = _pinned_key()
    vkey = pinned or (_key_arg(key) if key else None)
    info = client.get("/api/v1/audit/public-key")
    if not isinstance(info, dict):
        raise CliError("the server's public-key answer is malformed")
    if vkey is None:
        vkey = _parse_key(str(info.get("vkey", "")), "server key")
        err_console.print(
            f"NOTICE: no pinned log key; trusting the server's key ON FIRST USE: {vkey.encode()} "
            "(compare it with the key published out of band)",
            style="bold yellow",
            highlight=False,
            soft_wrap=True,
        )
    keys, retired = _followed_keys(vkey, info)
    if key and _key_arg(key) not in keys:
        raise CliError("key change: the key you gave is not your pinned key nor introduced by one it signed")
    pol = None
    if policy is not None:
        pol = _read_policy(policy)
        if pol.log_key not in keys:
            raise CliError(
                "key change: the policy's log key is not your pinned key nor introduced by one it signed"
            )
    latest = client.get("/api/v1/audit/checkpoint")
    try:
        note = latest.get("note") if isinstance(latest, dict) else None
        if not isinstance(note, str):
            raise NoteError("no note in the answer")
        new, signed_by = open_checkpoint_any(note, keys, vkey.name)
    except NoteError as e:
        raise CliError(f"the server's checkpoint is not valid: {e}") from e
    _refuse_retired(new, signed_by, retired, "the server's checkpoint")
    pin_path = sdir / "checkpoint.note"
    witnessed: list[Checkpoint] = []
    if pol is not None and pol.urls:
        witnessed = witnessed_checkpoints(pol, keys, vkey.name)
        for cosigned in witnessed:
            _extends(client, cosigned, new, "a witness cosigned")
    for path in seen or []:
        try:
            other, _ = open_checkpoint_any(decode_note(path.read_bytes()), keys, vkey.name)
        except (NoteError, OSError) as e:
            raise CliError(f"the checkpoint in {path} does not verify under the log's keys: {e}") from e
        _extends(client, other, new, f"{path} holds")
    old: Checkpoint | None = None
    if pin_path.is_file():
        try:
            old, _ = open_checkpoint_any(_read_text(pin_path, "saved checkpoint"), keys, vkey.name)
        except NoteError as e:
            raise CliError(f"your pinned checkpoint {pin_path} does not verify: {e}") from e
        if new.tree_size < old.tree_size:
            raise CliError(
                f"the log shrank from {old.tree_size} to {new.tree_size} entries: it was truncated"
            )
        proof = client.get(
            "/api/v1/audit/proof/consistency", params={"first": old.tree_size, "second": new.tree_size}
        )
        try:
            verify_consistency(
                old.tree_size,
                new.tree_size,
                old.root_hash,
                new.root_hash,
                _hashes(proof, "consistency"),
            )
        except ProofError as e:
            raise CliError(
                f"FORK: the server's tree of {new.tree_size} entries does not extend the tree of "
                f"{old.tree_size} entries you verified before ({e}); keep {pin_path} as evidence"
            ) from e
    if old is not None and _signed_before(new, old):
        raise CliError(
            f"the server's checkpoint of {new.tree_size} entries was signed before the one of "
            f"{old.tree_size} you pinned: a replayed or back-dated checkpoint; keep {pin_path} as evidence"
        )
    ahead_s = (new.timestamp_ms or 0) / 1000 - time.time()
    if ahead_s > MAX_CLOCK_SKEW_MS / 1000:
        # Dated ahead: signed in advance (to be replayed while the log is frozen) or by a host
        # whose clock is far off; its age would read as zero until that date.
        raise CliError(
            f"FUTURE: the server's newest checkpoint is dated {int(ahead_s)} s in the future "
            "(beyond the clock-skew bound): signed in advance, or the server's clock is wrong"
        )
    age_s = _age_s(new)
    if new.timestamp_ms is None or (age_s is not None and age_s > max_age):
        # /checkpoint re-signs every minute: an old (or undated) one means the server replays
        # it, or its log is frozen or withheld (or its clock is far off). Refused, not pinned:
        # a warning scrolls past unread in a cron job.
        when = "carries no time" if age_s is None else f"was signed {age_s} s ago"
        raise CliError(
            f"STALE: the server's newest checkpoint {when} (it re-signs every minute; limit "
            f"--max-age {max_age} s): a replayed checkpoint, or a frozen or withheld log"
        )
    _save(sdir / "log.vkey", keys[-1].encode() + "\n")
    _save(pin_path, new.note)
    if as_json:
        print_json(
            {
                "tree_size": new.tree_size,
                "root_hash": new.root_hash.hex(),
                "previous_tree_size": old.tree_size if old else None,
                "first_pin": old is None,
                "key": keys[-1].encode(),
                "age_s": age_s,
                "witnessed_sizes": [c.tree_size for c in witnessed],
            }
        )
        return
    since = f", consistent with the pinned size {old.tree_size}" if old else " (first pin)"
    # Say the witnesses were asked (newcomer round 23: with --policy the line read as without,
    # so the auditor could not tell the rollback check had run).
    if witnessed:
        largest = max(c.tree_size for c in witnessed)
        since += (
            f"; extends what the policy's witnesses cosigned ({count(len(witnessed), 'checkpoint')}, "
            f"up to {count(largest, 'entry')})"
        )
    console.print(
        f"checkpoint OK: {new.tree_size} entries, root {new.root_hash.hex()}{since}",
        highlight=False,
        soft_wrap=True,
    )


# The largest answer a tiles prefix has reason to send: an entry bundle of 256 entries of at
# most 65,535 bytes each, with their 2-byte lengths.
MAX_TILE_ANSWER = 256 * (2 + 65535)


def _mirror_fetch(prefix: str) -> Callable[[str], bytes]:
    """GET <prefix>/<path> from an untrusted mirror: bounded, never decompressed or redirected."""
    if not prefix.startswith(("http://", "https://")) or any(c.isspace() for c in prefix):
        raise CliError("--mirror must be an http(s) URL prefix")
    http = httpx.Client(timeout=30.0, follow_redirects=False)

    def fetch(path: str) -> bytes:
        url = f"{prefix.rstrip('/')}/{path}"
        try:
            with http.stream("GET", url, headers={"Accept-Encoding": "identity"}) as r:
                if r.status_code != 200:
                    raise TileError(f"the mirror answered HTTP {r.status_code} for {url}")
                if r.headers.get("content-encoding", "identity").lower() != "identity":
                    raise TileError(f"the mirror sent {path} compressed")
                raw = b""
                for chunk in r.iter_raw():
                    raw += chunk
                    if len(raw) > MAX_TILE_ANSWER:
                        raise TileError(f"the mirror's {path} is larger than any tile")
                return raw
        except httpx.HTTPError as e:
            raise TileError(f"the mirror could not be reached at {url} ({type(e).__name__})") from e

    return fetch


def _server_fetch(client: ApiClient) -> Callable[[str], bytes]:
    """The server's own tlog-tiles API (auditor login): checked exactly like a mirror."""
    return lambda path: client.request("GET", f"/api/v1/audit/tlog/{path}").content


@app.command()
def tiles(
    mirror: Annotated[
        str | None,
        typer.Option(help="Tiles URL prefix of a mirror (untrusted); default: the server's tlog API."),
    ] = None,
    key: Annotated[str | None, typer.Option(help="Trusted log key; default: the pinned one.")] = None,
    seen: Annotated[
        list[Path] | None,
        typer.Option(help="A checkpoint note another auditor saw; the served tree must extend it."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check every tile and entry bundle of the log (C2SP tlog-tiles) against its signed root.

    Fetches the checkpoint, the level-0 tiles, the entry bundles and the higher tiles from the
    server or from --mirror, and fails unless each entry hashes to its tile, the tiles rebuild
    the root that the pinned (or --key) log key signed, and the tree extends your pinned
    checkpoint and every --seen one (a mirror replaying an old checkpoint, or a fork, fails).
    Nothing is pinned: `tre audit checkpoint` does that.
    """
    vkey = _load_key(key)
    if vkey is None:
        raise CliError("no pinned log key: run `tre audit checkpoint` first, or give --key")
    keys: list[VerifierKey] = [vkey]
    retired: dict[VerifierKey, int] = {}
    if mirror is None:
        # The server publishes its signed key history: follow it from the pinned key, as
        # `checkpoint` and `verify` do (a mirror has none: pin the newest key with `checkpoint`).
        client = ApiClient()
        info = client.get("/api/v1/audit/public-key")
        if not isinstance(info, dict):
            raise CliError("the server's public-key answer is malformed")
        keys, retired = _followed_keys(vkey, info)
    fetch = _server_fetch(ApiClient()) if mirror is None else _mirror_fetch(mirror)
    earlier: list[Checkpoint] = []
    pin_path = state_dir() / "checkpoint.note"
    for path in ([pin_path] if pin_path.is_file() else []) + list(seen or []):
        try:
            earlier.append(open_checkpoint_any(decode_note(path.read_bytes()), keys, vkey.name)[0])
        except (NoteError, OSError) as e:
            raise CliError(f"the checkpoint in {path} does not verify under the log key: {e}") from e
    try:
        first = fetch("checkpoint")
    except TileError as e:
        # Nothing was read, so nothing about the log is known: not a verdict on it (a newcomer
        # typing README's mirror.example got "TILES: the mirror could not be read ... for
        # checkpoint", which read as a failed check of the log and named no address).
        raise CliError(f"{e}: check the --mirror address; the log was not checked") from e
    try:
        note = decode_note(first)
        log = verify_tiles(fetch, note, keys, vkey.name, earlier)
        _refuse_retired(
            log.checkpoint, open_checkpoint_any(note, keys, vkey.name)[1], retired, "the checkpoint"
        )
    except (TileError, NoteError) as e:
        raise CliError(f"TILES: {e}") from e
    cp = log.checkpoint
    if as_json:
        print_json(
            {
                "tree_size": cp.tree_size,
                "root_hash": cp.root_hash.hex(),
                "extends": [c.tree_size for c in earlier],
            }
        )
        return
    console.print(
        f"tiles OK: {cp.tree_size} entries, root {cp.root_hash.hex()}, "
        f"extending {count(len(earlier), 'checkpoint')} seen before",
        highlight=False,
        soft_wrap=True,
    )


def _followed_keys(
    vkey: VerifierKey, info: dict[str, Any]
) -> tuple[list[VerifierKey], dict[VerifierKey, int]]:
    """The keys the pinned ``vkey`` hands over to in the server's signed key history (from
    its public-key answer ``info``), and when each retired key's overlap ended."""
    history = VerifyReport()
    notes = info.get("key_history", [])
    keys, retired = follow_key_history(
        vkey, [str(n) for n in notes] if isinstance(notes, list) else [], history
    )
    if history.errors:  # a forged or forked key history from the server: nothing is pinned
        raise CliError(f"the server's key history is not valid: {history.errors[0]}")
    return keys, retired


def _refuse_retired(
    cp: Checkpoint, signed_by: list[VerifierKey], retired: dict[VerifierKey, int], what: str
) -> None:
    """The overlap rule of `verify` (a checkpoint signed only by retired keys after their
    overlap vouches for nothing), online too."""
    if signed_only_after_retirement(cp, signed_by, retired):
        raise CliError(
            f"RETIRED KEY: {what} of {cp.tree_size} entries is signed only by a retired key after "
            "its overlap ended (whoever holds that old key signed it, not the log)"
        )


def _extends(client: ApiClient, seen: Checkpoint, new: Checkpoint, who: str) -> None:
    """Fail unless the server proves ``new`` extends ``seen`` (a signed tree seen elsewhere)."""
    if new.tree_size < seen.tree_size:
        raise CliError(
            f"ROLLBACK: {who} a tree of {seen.tree_size} entries, the server's newest checkpoint has "
            f"{new.tree_size}: the log was rolled back or truncated (by someone who holds its key)"
        )
    if seen.tree_size == 0 or seen.tree_size == new.tree_size and seen.root_hash == new.root_hash:
        return
    proof = client.get(
        "/api/v1/audit/proof/consistency", params={"first": seen.tree_size, "second": new.tree_size}
    )
    try:
        verify_consistency(
            seen.tree_size, new.tree_size, seen.root_hash, new.root_hash, _hashes(proof, "consistency")
        )
    except ProofError as e:
        raise CliError(
            f"FORK: the server's tree of {new.tree_size} entries does not extend the tree of "
            f"{seen.tree_size} entries {who} ({e})"
        ) from e


@app.command()
def prove(
    index: Annotated[int, typer.Argument(min=0, help="Leaf index of the entry.")], as_json: JsonFlag = False
) -> None:
    """Check that an entry is in the log, against your pinned checkpoint (run `checkpoint` first)."""
    vkey = _load_key(None)
    pin_path = state_dir() / "checkpoint.note"
    if vkey is None or not pin_path.is_file():
        raise CliError("no pinned checkpoint: run `tre audit checkpoint` first")
    try:
        cp = open_checkpoint(_read_text(pin_path, "saved checkpoint"), vkey)
    except NoteError as e:
        raise CliError(f"your pinned checkpoint does not verify: {e}") from e
    if index >= cp.tree_size:
        raise CliError(
            f"entry {index} is not in your pinned checkpoint of {cp.tree_size} entries (numbered from 0); "
            "`tre audit checkpoint` pins the newest"
        )
    client = ApiClient()
    entry = client.get(f"/api/v1/audit/entries/{index}")
    proof = client.get("/api/v1/audit/proof/inclusion", params={"index": index, "tree_size": cp.tree_size})
    body = entry.get("body") if isinstance(entry, dict) else None
    if not isinstance(body, str):
        raise CliError(f"the server's answer for entry {index} holds no entry body")
    try:
        verify_inclusion(
            leaf_hash(body.encode()),
            index,
            cp.tree_size,
            _hashes(proof, "inclusion"),
            cp.root_hash,
        )
    except ProofError as e:
        raise CliError(f"entry {index} is NOT proven to be in the log: {e}") from e
    # Show only what the proof covers: the hashed body, never the server's other fields. A
    # body two JSON readers could read differently (a repeated key: Python keeps the last,
    # others the first) is refused rather than shown one way.
    try:
        fields = json.loads(body, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):
        fields = None
    if not isinstance(fields, dict):
        raise CliError(f"entry {index} is in the log but is not a single JSON object with distinct keys")
    if fields.get("idx") != index:
        raise CliError(f"the server returned entry {untrusted(fields.get('idx'))} for index {index}")
    if as_json:  # the proven body itself (its fields as hashed), and the checkpoint it is proven in
        print_json(
            {"index": index, "tree_size": cp.tree_size, "root_hash": cp.root_hash.hex(), "entry": fields}
        )
        return
    _say(
        f"entry {index} ({fields.get('action')} by {fields.get('actor')} at {fields.get('ts')}) "
        f"is in the log of {cp.tree_size} entries"
    )


@app.command("check")
def check() -> None:
    """Admin, on the control-plane host: check the stored log in full (read-only)."""
    from sqlalchemy import func, select

    from tre.audit.check import check_log
    from tre.audit.service import tree_size
    from tre.audit.signing import KEY_FILE, get_signer, log_exists
    from tre.store.db import init_db, make_engine, session_scope
    from tre.store.models import AuditEntry

    settings = get_settings()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    with session_scope(engine) as s:
        keys = settings.keys_dir
        stored = s.scalar(select(func.count()).select_from(AuditEntry)) or 0
        if not (keys / KEY_FILE).exists() and not log_exists(keys) and tree_size(s) == 0 == stored:
            # A new install: nothing audited yet. Not a missing key (and check creates none).
            console.print(f"no audit log yet: no entries and no key in {keys}; nothing to check")
            return
        size, problems = check_log(s, get_signer(settings.keys_dir, create=False))
        s.rollback()
    for p in problems:
        _say(f"  - {p}", err=True)
    if problems:
        raise CliError(
            f"audit log DAMAGED: {count(len(problems), 'problem')} in a tree of {count(size, 'entry')}"
        )
    console.print(f"audit log intact: {size} entries, consistent with the last signed checkpoint")


@app.command("rotate-key")
def rotate_key_cmd(
    overlap: Annotated[
        float, typer.Option(help="Hours during which checkpoints carry both the old and new signature.")
    ] = 24 * 7,
) -> None:
    """Admin, on the control-plane host: replace the log's signing key (same origin).

    Writes a key transition signed by both keys (exported with every bundle, so auditors who
    pinned the old key follow it) and keeps co-signing with the old key for the overlap.
    """
    from tre.audit.signing import rotate_key

    t = rotate_key(get_settings().keys_dir, overlap * 3600)
    until = datetime.fromtimestamp(t.overlap_until_ms / 1000, UTC).isoformat(timespec="seconds")
    console.print(
        f"rotated the key of {t.origin}\n  old {t.old.encode()}\n  new {t.new.encode()}\n"
        f"both sign checkpoints until {until}; publish the new key to auditors and witnesses",
        highlight=False,
        soft_wrap=True,
    )


witness_app = typer.Typer(help="Admin, on the control-plane host: the witnesses this log submits to.")
app.add_typer(witness_app, name="witness")


@witness_app.command("add")
def witness_add(
    url: Annotated[str, typer.Argument(help="Witness base URL (POST <url>/add-checkpoint).")],
    vkey: Annotated[str, typer.Argument(help="The witness's cosignature/v1 key (`tre witness key`).")],
) -> None:
    """Configure a witness; checkpoints are submitted to it from now on."""
    from tre.audit.witnessing import add_witness

    try:
        w = add_witness(get_settings().keys_dir, url, vkey)
    except NoteError as e:
        raise CliError(f"bad witness: {e}") from e
    console.print(f"witness {w.key.name} at {w.url} added", highlight=False, soft_wrap=True)


@witness_app.command("run")
def witness_run() -> None:
    """Submit the newest checkpoint to every configured witness now, and show the outcome."""
    from tre.audit.signing import get_signer
    from tre.audit.witnessing import witness_latest
    from tre.store.db import init_db, make_engine, session_factory

    settings = get_settings()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    outcomes = witness_latest(session_factory(engine), get_signer(settings.keys_dir, create=False))
    if not outcomes:
        raise CliError("no witnesses configured (tre audit witness add URL KEY)")
    for o in outcomes:
        _say(f"{o.witness}: {o.status} {o.detail}".rstrip())  # detail: the witness's own words
    if not any(o.status == "cosigned" for o in outcomes):
        raise CliError("no witness cosigned the newest checkpoint")
