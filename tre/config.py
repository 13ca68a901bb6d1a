"""Runtime settings, read once from the environment (prefix ``TRE_``).

Everything defaults to the embedded single-machine mode: a SQLite file and the local
bubblewrap sandbox under one state directory, so that ``tre demo`` works with no setup.
Production overrides the database URL, the executor and the token issuer.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from tre import plural
from tre.errors import TreError

# Root runs tre as a system service: state and data live in the system's places, never in
# /root, which dataset paths may not overlap (a job must never be able to read an admin's
# home). An ordinary user keeps both in their home folder, side by side and disjoint.
SYSTEM_HOME = Path("/var/lib/tre")
SYSTEM_DATA_DIR = Path("/srv/tre")


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def default_home() -> Path:
    """The state directory a `tre` command uses when TRE_HOME is not set."""
    return SYSTEM_HOME if running_as_root() else Path.home() / ".tre"


def _default_data_dir() -> Path:
    return SYSTEM_DATA_DIR if running_as_root() else Path.home() / "tre-data"


def _default_cache_dir() -> Path:
    return Path("/var/cache/tre") if running_as_root() else Path.home() / ".cache" / "tre"


_S = TypeVar("_S", bound=BaseSettings)

# The database back-ends the store and its migrations are written and tested for.
DATABASE_BACKENDS = ("sqlite", "postgresql")
_DATABASE_URL = re.compile(r"^(?P<backend>[a-z]+)(\+[a-z0-9_]+)?://")
_WEB_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")
# An OCI registry host (a DNS name or IP, optional port) and optional lowercase repository
# path, as image references carry it: `registry.tre.local`, `registry.example.org:5000/tre`.
_REGISTRY = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
# The largest uid/gid the kernel hands out ((uid_t)-1 means "no change").
MAX_ID = 2**32 - 2
# The last host uid the per-job range (TRE_SANDBOX_UID_BASE/_COUNT) may reach: 2^31 - 1, as
# some tools still read a uid as a signed 32-bit number.
UID_RANGE_END = 2**31 - 1
_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+$")
# Signature algorithms never taken for OIDC tokens: no signature at all, or a shared secret
# (an HS* token "signed" with the provider's public key would verify). tre.auth checks them
# again per token.
FORBIDDEN_ALGORITHMS = frozenset({"none", "HS256", "HS384", "HS512"})
# The asymmetric JWS algorithms (RFC 7518, RFC 8037) an OpenID provider signs with.
KNOWN_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class SettingsError(TreError):
    """A ``TRE_*`` variable with a value the platform cannot use, named with the reason.

    Raised when the settings are first read (every command and the server's start), so a
    mistake in a deployment's environment is one line at start-up, not a traceback later.
    """

    status = 500
    title = "Invalid setting"
    slug = "invalid-setting"


def load_settings(cls: type[_S], prefix: str) -> _S:
    """``cls()`` from the environment, a bad value turned into one `SettingsError` sentence:
    a value of the wrong type or range (pydantic's ValidationError), or a list or object
    setting that is not JSON (pydantic-settings' own error, raised before validation)."""
    try:
        return cls()
    except ValidationError as exc:
        raise settings_error(exc, prefix) from None
    except PydanticSettingsError as exc:
        field = re.search(r'field "([a-z0-9_]+)"', str(exc))
        name = f"{prefix}{field[1].upper()}" if field else f"a {prefix}* variable"
        raise SettingsError(
            f'invalid setting {name}: not valid JSON (a list or object, such as {{"k": "v"}})'
        ) from None


def settings_error(exc: ValidationError, prefix: str) -> SettingsError:
    """One sentence naming each offending variable (``TRE_API_WORKERS='abc': ...``)."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = err.get("loc") or ()
        if not loc:  # a check across settings: its message names them
            parts.append(str(err.get("msg", "invalid settings")).removeprefix("Value error, "))
            continue
        name = f"{prefix}{str(loc[0]).upper()}"
        value = err.get("input")
        # A database URL may carry a password, a client secret is one: never echo those.
        secret = any(word in name for word in ("DATABASE_URL", "SECRET"))
        shown = (
            ""
            if secret or not isinstance(value, (str, int, float)) or len(repr(value)) > 80
            else f"={value!r}"
        )
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{name}{shown}: {message[0].lower()}{message[1:]}" if message else name)
    return SettingsError("invalid setting " + "; ".join(parts))


def _secure_or_loopback(url: str) -> bool:
    """https, or http to this machine (RFC 8252 7.3's loopback: localhost or a loopback IP)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    if parts.scheme == "https":
        return bool(host)
    if parts.scheme != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """All knobs of the platform; see README 'Configuration'."""

    model_config = SettingsConfigDict(env_prefix="TRE_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="State directory (db, keys, jobs, staging).")
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where local datasets live (the demo copies its sample data here); "
        "never inside the state directory or a home folder jobs must not read.",
    )
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Rebuildable artefacts shared by every state directory on this host (the "
        "CPU job image's build); safe to delete.",
    )
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite file in home.")
    api_url: str = Field(default="http://127.0.0.1:8765", description="Where the CLI finds the API.")
    # API server processes for `tre serve` (uvicorn workers). One Python process uses one core
    # at most; more serve more requests on a machine with free cores (docs/api-load.md).
    api_workers: int = Field(default=1, ge=1, le=64)
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="SQLite's synchronous mode for the API's connections: FULL syncs the WAL on "
        "every commit; NORMAL skips that fsync (faster writes under load) but a power cut may lose "
        "the last commits, which the audit guard then reports as a truncated log (docs/api-load.md).",
    )
    api_read_cache: bool = Field(
        default=True,
        description="Answer repeated hot reads (jobs, datasets, projects) from a per-process cache "
        "while the database is unchanged (tre.api.read_cache; docs/api-load.md).",
    )
    policies_dir: Path | None = Field(default=None, description="Folder of policy YAML; default ./policies.")

    # Auth: embedded issuer (Ed25519) or external OIDC issuer via JWKS.
    auth_mode: Literal["embedded", "oidc"] = "embedded"
    token_issuer: str = Field(default="tre-embedded", min_length=1)
    token_audience: str = Field(default="tre-api", min_length=1)
    token_ttl_s: int = Field(default=8 * 3600, ge=1)
    oidc_jwks_url: str | None = None
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    oidc_roles_claim: str = Field(default="tre_roles", min_length=1)
    # OpenID Connect sign-in (docs/oidc.md). The issuer's discovery document names its
    # endpoints and keys; with it set, tokens must carry this issuer (token_issuer is then
    # ignored) and the JWKS comes from discovery unless oidc_jwks_url pins it.
    oidc_issuer: str | None = None
    # The review panel's client (authorization code + PKCE); no secret: a public client.
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_redirect_url: str | None = Field(
        default=None, description="The panel's callback as registered: https://HOST/panel/oidc/callback."
    )
    oidc_scopes: str = "openid"
    # The CLI's public client for the device authorization grant (`tre login --oidc`).
    oidc_cli_client_id: str | None = None
    # What the panel's sign-in button calls the provider (default: the issuer URL).
    oidc_provider_name: str | None = None
    oidc_http_timeout_s: float = Field(default=10.0, gt=0)
    # How far past ``exp`` (and before ``iat``) a token is still taken, for clocks that
    # disagree: both the embedded issuer's and a provider's tokens.
    token_clock_leeway_s: int = Field(default=10, ge=0, le=300)

    # Jobs and executors.
    executor: Literal["local", "kubernetes", "docker"] = "local"
    worker_poll_s: float = Field(default=0.5, gt=0)
    # How often a running job's heartbeat is written; must stay well under worker_stale_after_s.
    worker_heartbeat_s: float = Field(default=2.0, gt=0)
    worker_stale_after_s: float = Field(default=15.0, gt=0)
    # An egress request still awaiting votes or a resolution this long after it was made
    # expires (final; egress_review.expiry, swept by the worker). 0: requests never expire.
    egress_open_ttl_days: float = Field(default=30.0, ge=0, le=3650)
    # The panel's queue marks an open request that expires within this many days, and its
    # "expiring" tab lists them (docs/egress.md, "Expiry"). 0: no marks.
    egress_expiry_warn_days: float = Field(default=3.0, ge=0, le=3650)
    # At most this many running jobs per project on one worker (0: no cap beyond fair order).
    # See docs/scheduling.md.
    worker_project_running_limit: int = Field(default=0, ge=0)
    # The job's ids inside its sandbox (and the Docker executor's container user): never root.
    sandbox_uid: int = Field(default=10001, ge=1, le=MAX_ID)
    sandbox_gid: int = Field(default=10001, ge=1, le=MAX_ID)
    # A delegated cgroup v2 folder to create job cgroups under (systemd hosts); see docs/sandbox.md.
    sandbox_cgroup_parent: Path | None = None
    # The dedicated unprivileged host user every local job runs as (made by
    # scripts/install-system-deps); never root, never the worker's own user.
    # Checked against the host when a worker with the local executor starts
    # (tre.executors.sandbox_settings), like sandbox_cgroup_parent.
    sandbox_job_user: str = Field(default="tre-job", min_length=1, max_length=32)
    # Each running local job gets a host uid of its own from this range (group: the job
    # user's), so per-user kernel counters are not shared between jobs; count 0: all jobs
    # run as the job user's uid. The range must hold no accounts (those uids are skipped).
    sandbox_uid_base: int = Field(default=0x70000000, ge=1000, le=UID_RANGE_END)
    sandbox_uid_count: int = Field(default=1024, ge=0, le=65536)
    # Developer mode: run jobs that have no image root file system on the host's /usr and
    # Python (read-only). Off by default; the local executor refuses such jobs without it.
    sandbox_host_toolchain: bool = False

    # Researchers' container images (tre.images): the registry host (and optional path) the
    # TRE's images are named under and pushed to, and the bounds an imported image must keep.
    image_registry: str = "registry.tre.local"
    image_registry_tls_verify: bool = True
    image_push_on_approve: bool = False
    image_max_upload_mb: int = Field(default=4096, ge=1)
    image_max_layer_mb: int = Field(default=4096, ge=1)
    image_max_unpacked_mb: int = Field(default=8192, ge=1)
    image_max_files: int = Field(default=300_000, ge=1)
    # What one researcher's imports may hold in the shared store (stored blobs plus the
    # unpacked root file system, counted per image they imported; admins are not bounded).
    image_max_store_mb_per_user: int = Field(default=32768, ge=1)
    # ... and how many files (inodes, once unpacked): empty files cost no bytes.
    image_max_store_files_per_user: int = Field(default=2_000_000, ge=1)
    # Code archives (tre.code): what one project's distinct uploads may hold of the shared code
    # store, archives plus their unpacked trees (each upload is bounded by the project's quota).
    code_max_store_mb_per_project: int = Field(default=10240, ge=1)

    # Federation (tre.federation, docs/federation.md). At a hub: a node that has not polled
    # for this long is shown offline, and work it did not acknowledge is offered again.
    federation_lease_s: float = Field(default=30.0, gt=0)
    # At a node: how long the agent's long poll may wait at the hub, and its pause after errors.
    federation_poll_wait_s: float = Field(default=10.0, ge=0, le=30)
    federation_retry_s: float = Field(default=2.0, gt=0)

    # The node's dataset catalogue (tre.catalogue, docs/catalogue.md).
    catalogue_title: str = Field(default="tre node catalogue", max_length=200)
    catalogue_base_iri: str = Field(
        default="urn:tre:node:local",
        max_length=200,
        description="IRI the catalogue and its datasets are named under (<base>/dataset/<id>).",
    )
    # How old the check of a dataset folder's fingerprint may be before a query checks again.
    catalogue_recheck_s: float = Field(default=60.0, ge=0)

    @field_validator("home", "data_dir", "cache_dir", "policies_dir", mode="after")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        """A relative folder is taken from where tre started, once: the state folder, the
        protected paths datasets are checked against and the sandbox's mounts then never
        depend on the working folder of a later call (before, ``TRE_HOME=state`` named a
        different folder for each process started elsewhere)."""
        return None if path is None else path.expanduser().absolute()

    @field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric_algorithms(cls, algorithms: list[str]) -> list[str]:
        """Checked here, so that a wrong list stops every command with the setting's name
        (before, ``tre serve`` printed its start line and then "unexpected TokenError ... a
        bug in tre")."""
        if not algorithms:
            raise ValueError('at least one signature algorithm is needed, such as ["RS256"]')
        forbidden = sorted(FORBIDDEN_ALGORITHMS.intersection(algorithms))
        if forbidden:
            raise ValueError(
                f"refused: {', '.join(forbidden)} (no signature, or a shared secret); asymmetric ones only"
            )
        unknown = sorted(set(algorithms) - KNOWN_ALGORITHMS)
        if unknown:
            known = ", ".join(sorted(KNOWN_ALGORITHMS))
            raise ValueError(
                f"unknown {plural.agree(len(unknown), 'algorithm', 'algorithms')} "
                f"{', '.join(unknown)}; use {known}"
            )
        return algorithms

    @field_validator("oidc_scopes")
    @classmethod
    def _openid_scope(cls, scopes: str) -> str:
        """Without ``openid`` a provider answers with no ID token: every panel sign-in would
        fail at the callback, found only by the first DAC member signing in."""
        if "openid" not in scopes.split():
            raise ValueError("must include openid (space-separated scopes, such as 'openid tre')")
        return scopes

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str | None) -> str | None:
        """Only the back-ends the store is tested on, as a SQLAlchemy URL; checked here so that
        a typo stops start-up with the setting's name, not a driver's traceback later."""
        if url is None or url == "":
            return None
        match = _DATABASE_URL.match(url)
        if match is None:
            raise ValueError(
                "not a SQLAlchemy URL such as postgresql+psycopg://USER:PASSWORD@HOST:5432/DB "
                "or sqlite:////var/lib/tre/tre.db"
            )
        if match["backend"] not in DATABASE_BACKENDS:
            raise ValueError(f"database {match['backend']!r} is not supported (use postgresql or sqlite)")
        return url

    @field_validator("policies_dir")
    @classmethod
    def _policies_folder(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_dir():
            raise ValueError(f"{str(path)!r} is not a folder (of policy YAML files)")
        return path

    @field_validator("oidc_issuer", "oidc_jwks_url", "oidc_redirect_url")
    @classmethod
    def _web_address(cls, url: str | None) -> str | None:
        if not url:  # an empty variable (a manifest's placeholder) reads as unset
            return None
        if not _WEB_URL.match(url):
            raise ValueError("not an http(s) URL")
        return url

    @field_validator("oidc_issuer")
    @classmethod
    def _secure_issuer(cls, url: str | None) -> str | None:
        """Tokens and codes must never cross a network in clear: https, or plain http on this
        machine's loopback (a local provider, the tests), as `tre.auth.oidc` requires. Said
        here, in one line naming the variable; before, `tre serve` stopped with "unexpected
        TokenError ... (a bug in tre ...)" when it built its verifier (newcomer round 23)."""
        if url and not _secure_or_loopback(url):
            raise ValueError("must be an https URL (plain http only on loopback: localhost, 127.0.0.1, ::1)")
        return url

    @field_validator("image_registry")
    @classmethod
    def _registry(cls, registry: str) -> str:
        """Part of every imported image's reference (what approvals, jobs and pushes name):
        a scheme, a trailing slash or an upper-case path would make references that no
        registry accepts, found only at the first push."""
        if not _REGISTRY.match(registry):
            raise ValueError("not a registry host[:port][/path] (no scheme, lower-case path)")
        return registry

    @field_validator("catalogue_base_iri")
    @classmethod
    def _iri(cls, iri: str) -> str:
        if not _IRI.match(iri):
            raise ValueError("not an IRI such as https://node.example.org/tre or urn:tre:node:NAME")
        return iri

    @model_validator(mode="after")
    def _heartbeat_within_stale(self) -> Settings:
        """A heartbeat slower than the staleness limit would make every running job look
        orphaned to the other workers; refused at start rather than failing jobs later."""
        if self.worker_heartbeat_s >= self.worker_stale_after_s:
            raise ValueError(
                f"TRE_WORKER_HEARTBEAT_S ({self.worker_heartbeat_s:g}) must be less than "
                f"TRE_WORKER_STALE_AFTER_S ({self.worker_stale_after_s:g})"
            )
        return self

    @model_validator(mode="after")
    def _sandbox_uid_range_fits(self) -> Settings:
        """The per-job host uids are ``base`` .. ``base + count - 1``; past 2^31 - 1 some tools
        read a uid as a negative number and the kernel's own limit (2^32 - 2) comes near.
        Before, only the first job found out (it failed); now every command says so."""
        last = self.sandbox_uid_base + self.sandbox_uid_count - 1
        if self.sandbox_uid_count and last > UID_RANGE_END:
            raise ValueError(
                f"TRE_SANDBOX_UID_BASE ({self.sandbox_uid_base}) + TRE_SANDBOX_UID_COUNT "
                f"({self.sandbox_uid_count}) runs past 2^31: the last uid ({last}) must be at most "
                f"{UID_RANGE_END}"
            )
        return self

    @model_validator(mode="after")
    def _oidc_has_a_provider(self) -> Settings:
        """OIDC without a provider would accept no token at all; said at start, not per request."""
        if self.auth_mode == "oidc" and not (self.oidc_issuer or self.oidc_jwks_url):
            raise ValueError("TRE_AUTH_MODE=oidc needs TRE_OIDC_ISSUER (or TRE_OIDC_JWKS_URL)")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'tre.db'}"

    @property
    def resolved_policies_dir(self) -> Path:
        if self.policies_dir:
            return self.policies_dir
        here = Path(__file__).resolve().parent.parent / "policies"
        return here if here.is_dir() else Path.cwd() / "policies"

    @property
    def expected_token_issuer(self) -> str:
        """The ``iss`` every accepted token must carry."""
        if self.auth_mode == "oidc" and self.oidc_issuer:
            return self.oidc_issuer
        return self.token_issuer

    @property
    def panel_oidc_enabled(self) -> bool:
        """Whether the review panel signs in through the OIDC provider (code flow + PKCE)."""
        return bool(
            self.auth_mode == "oidc" and self.oidc_issuer and self.oidc_client_id and self.oidc_redirect_url
        )

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def staging_dir(self) -> Path:
        return self.home / "staging"

    @property
    def images_dir(self) -> Path:
        """The image store (tre.images); not ``<home>/images``, where the local executor
        looks for hand-installed root filesystems by reference."""
        return self.home / "image-store"

    @property
    def protected_paths(self) -> list[Path]:
        """The state directory and its parts: no dataset may overlap them (keys, database,
        job outputs, staging), on top of `tre.registry.SYSTEM_PATHS`."""
        return [self.home, self.keys_dir, self.jobs_dir, self.staging_dir]

    def ensure_dirs(self) -> None:
        """Make the state folders, private to the platform's own user (0700).

        Everything under ``home`` (the database, keys, raw job logs, unreleased outputs,
        staged egress copies) is then out of reach of every other account whatever the
        files' own modes; jobs reach what they need through the sandbox's private staging
        mounts (docs/sandbox.md), never through these permissions.
        """
        for d in (self.home, self.keys_dir, self.jobs_dir, self.staging_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process; a bad ``TRE_*`` value raises `SettingsError`."""
    return load_settings(Settings, "TRE_")


def reset_settings_cache() -> None:
    """Tests and the CLI change TRE_* variables at run time; forget the cached copy."""
    get_settings.cache_clear()
