"""A scoped token kept with its web session opens only with that session's id, and not if altered."""

from __future__ import annotations

from conveyor.store.web_sessions import seal, unseal


def test_only_the_session_that_sealed_a_token_opens_it() -> None:
    token = "cvt_abc123_" + "s" * 43
    sealed = seal("session-one", token)
    assert token not in sealed and "s" * 10 not in sealed
    assert unseal("session-one", sealed) == token
    assert unseal("session-two", sealed) is None


def test_an_altered_sealed_token_does_not_open() -> None:
    sealed = seal("sid", "cvt_id_secret")
    flipped = sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]
    assert unseal("sid", flipped) is None  # authenticated: a keystream XOR would have opened to garbage
    assert unseal("sid", "not base64 at all!") is None
