"""Personal API tokens: created and revoked by their user, shown once, stored as a SHA-256 of the secret.

Why a prefix and a hash: the prefix (public, unique) finds the row without scanning; the secret is compared in
constant time with hmac.compare_digest, and a leaked database holds nothing that opens the API. A plain SHA-256 is
enough because the secret is 256 random bits, not a password a person chose.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from annotate.models import ApiToken

TOKEN_PREFIX = "ann"  # noqa: S105 - the fixed start of every token, not a secret
MAX_ACTIVE_TOKENS = 20
# last_used_at is written at most this often per token, so that the API's hot path is not a write per request.
_TOUCH_EVERY = dt.timedelta(minutes=1)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_create(*, user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for `user` and its full text `ann_<prefix>_<secret>`, which is never stored and shown only now."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationError("Give the token a name of 1 to 100 characters, e.g. the pipeline that will use it.")
    if ApiToken.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_ACTIVE_TOKENS:
        raise ValidationError(f"You have {MAX_ACTIVE_TOKENS} active tokens; revoke one first.")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=prefix, secret_hash=_digest(secret))
    return token, f"{TOKEN_PREFIX}_{prefix}_{secret}"


def token_revoke(*, user: User, token_id: int) -> ApiToken | None:
    """Revoke one of the user's own tokens (another user's token id finds nothing). Revoking twice is harmless."""
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is not None and token.revoked_at is None:
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        token.refresh_from_db()
    return token


def token_authenticate(raw: str) -> ApiToken | None:
    """The live token `raw` names, with its active user; None for anything else (malformed, unknown, revoked)."""
    parts = raw.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(prefix=parts[1], revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    # compare_digest on the hashes: the time taken says nothing about how much of the secret was right.
    if token is None or not hmac.compare_digest(token.secret_hash, _digest(parts[2])):
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - _TOUCH_EVERY)
        ).update(last_used_at=now)
    return token
