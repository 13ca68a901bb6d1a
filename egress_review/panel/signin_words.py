"""What the panel's sign-in page says, each message saying both what is wrong and what to do.

Newcomer round 21: a refused token ("token has expired", "does not carry the dac or admin
role") was shown in one paragraph and the advice (ask the administrator for a token) in
another, general one below it, so a reviewer holding an expired or a researcher's token read
"what is wrong" without being told that pasting it again cannot help. Every message here is
one sentence pair, fixed words chosen by the server (never the query string), that ends with
the next step; the page then leaves out its general paragraph.
"""

from __future__ import annotations

from collections.abc import Iterable

from tre.auth.tokens import TOKEN_EXPIRED

# What a reviewer who signs in with a pasted token does when theirs cannot be used.
MINT_COMMAND = "tre admin token --user YOU --role dac, on the control-plane host"
ASK_FOR_TOKEN = f"ask your administrator for a new one ({MINT_COMMAND}) and paste it below"
SIGNED_OUT = (
    "You have signed out of the review panel; the token you signed in with no longer works, "
    "here or in the tre CLI"
)


def next_step(paste_token: bool, provider: str | None) -> str:
    """The step that starts a new session: a new token to paste, or the provider's sign-in."""
    if paste_token:
        return ASK_FOR_TOKEN
    if provider:
        return f"sign in again with {provider} below"
    return "ask your administrator how to sign in to this panel"


def refused_token(problem_type: str, detail: str) -> str:
    """A pasted token the API refused: why, then that a new token is what helps."""
    if problem_type == "invalid-token" and detail == TOKEN_EXPIRED:
        what = "This token has expired"
    elif problem_type == "token-revoked":
        what = "This token was signed out (with Sign out or tre logout) and is refused from now on"
    elif problem_type == "token-superseded":
        what = "This token was issued before your account was last created or enabled, and is refused"
    elif problem_type == "unknown-user":
        what = "This token's user is unknown here or disabled"
    else:
        what = f"This token was refused ({detail}); check that you pasted all of it, or"
        return f"{what} {ASK_FOR_TOKEN}."
    return f"{what}: {ASK_FOR_TOKEN}."


def wrong_role(roles: Iterable[str]) -> str:
    """A valid token of someone who is not a reviewer: which roles it has, which it needs."""
    held = ", ".join(sorted(roles))
    # A token's roles are narrowed by the user table: one minted for a role its user lacks has none.
    who = (
        f"signs you in as {held}"
        if held
        else "gives you none of the roles it names (the user table narrows them)"
    )
    return (
        f"This token {who}, without the dac or admin role the review panel needs: ask your "
        f"administrator for a dac token ({MINT_COMMAND}) and paste it below."
    )


def session_ended(why: str, lost: bool, paste_token: bool, provider: str | None) -> str:
    """Why the session the browser still held ended (fixed words of `auth.ENDED`), and what
    to do: an expired or signed-out token never works again, so 'sign in again' alone would
    send the reviewer back to paste the same one."""
    step = next_step(paste_token, provider)
    if lost:
        return (
            f"{why}. The form you sent (a vote or a resolution) was not recorded: {step}, then send it again."
        )
    return f"{why}: {step}."


def signed_out(paste_token: bool, provider: str | None) -> str:
    """The notice after Sign out: that it happened, and how to review again."""
    if paste_token:
        return f"{SIGNED_OUT}. To review again, {ASK_FOR_TOKEN}."
    return f"You have signed out of the review panel. To review again, {next_step(paste_token, provider)}."
