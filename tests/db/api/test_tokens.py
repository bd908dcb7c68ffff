"""Tokens: printed once, stored as a hash, listed without secrets, revoked, expired;
and the 401s of the API for each kind of bad token."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from apisupport import Api, fault

from novanet.cli.main import main
from novanet.db.schema import tokens as T
from novanet.domain.errors import InvalidInput, NotFound, Unauthorized
from novanet.service import tokens


def test_cli_create_list_revoke(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from apisupport import make_ctx

    ctx = make_ctx(db_url)
    try:
        base = ["--db", ctx.engine.url.render_as_string(hide_password=False)]
        assert main([*base, "token", "create", "--project", "p1", "--user", "alice"]) == 0
        secret = capsys.readouterr().out.strip()
        assert secret.startswith("nvn_") and "\n" not in secret  # alone on stdout
        assert (
            main([*base, "token", "create", "--project", "p1", "--admin", "--expires", "1h", "--json"]) == 0
        )
        made = json.loads(capsys.readouterr().out)
        assert made["project_id"] == "p1" and made["roles"] == ["admin"] and made["expires_at"]
        with ctx.engine.connect() as conn:
            stored = list(conn.execute(sa.select(T.c.token_hash)).scalars())
        assert tokens.hash_token(secret) in stored and secret not in stored  # only the hash
        assert main([*base, "token", "list", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [r["state"] for r in listed] == ["active", "active"]
        assert secret not in json.dumps(listed)
        assert tokens.authenticate(ctx, secret).user == "alice"
        assert main([*base, "token", "revoke", listed[0]["id"]]) == 0
        capsys.readouterr()
        with pytest.raises(Unauthorized, match="revoked"):
            tokens.authenticate(ctx, secret)
        assert main([*base, "token", "revoke", listed[0]["id"]]) == 0  # idempotent
        assert main([*base, "token", "create", "--project", "p1", "--expires", "soon"]) == 2
        assert "expiry 'soon'" in capsys.readouterr().err
        assert main([*base, "token", "create", "--project", "p 1"]) != 0
        assert main([*base, "token", "revoke", "abcdef"]) == 3
    finally:
        ctx.engine.dispose()


def test_expired_and_refusals(api: Api) -> None:
    made = tokens.create(api.ctx, "p1", expires="60")
    with api.ctx.engine.begin() as conn:
        conn.execute(
            T.update()
            .where(T.c.token_hash == tokens.hash_token(made["token"]))
            .values(expires_at=dt.datetime(2000, 1, 1))
        )
    with pytest.raises(Unauthorized, match="expired"):
        tokens.authenticate(api.ctx, made["token"])
    assert "expired" in fault(api.req("GET", "/v2/p1/os-floating-ips", made["token"]), 401)["message"]
    fault(api.req("GET", "/v2/p1/os-floating-ips", None), 401)
    fault(api.req("GET", "/v2/p1/os-floating-ips", "nvn_unknown"), 401)
    fault(api.req("GET", "/v2/p1/os-floating-ips", "x" * 5000), 401)
    tokens.revoke(api.ctx, api.member)
    assert "revoked" in fault(api.req("GET", "/v2/p1/os-floating-ips", api.member), 401)["message"]
    # the URL's project must be the token's
    fault(api.req("GET", "/v2/p1/os-floating-ips", api.other), 400)
    with pytest.raises(InvalidInput):
        tokens.create(api.ctx, "p1", role="root")
    with pytest.raises(NotFound):
        tokens.revoke(api.ctx, "0123456789")
