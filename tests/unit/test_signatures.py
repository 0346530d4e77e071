"""Known-answer vectors from GitHub's and Discourse's own documentation and specs."""

from __future__ import annotations

import json

from engagement.domain import signatures
from tests.conftest import SAMPLES, sample

# GitHub docs, "Testing the webhook payload validation": secret, payload and expected signature.
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_PAYLOAD = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
# Discourse spec (emit_web_hook_event_spec.rb): the ping body signed with the fabricator's secret.
DISCOURSE_SECRET = "my_lovely_secret_for_web_hook"
DISCOURSE_BODY = b'{"ping":"OK"}'
DISCOURSE_SIGNATURE = "sha256=162f107f6b5022353274eb1a7197885cfd35744d8d08e5bcea025d309386b7d6"


def test_github_published_vector_verifies():
    assert signatures.verify(GITHUB_SIGNATURE, GITHUB_SECRET, GITHUB_PAYLOAD)
    assert signatures.sign(GITHUB_SECRET, GITHUB_PAYLOAD) == GITHUB_SIGNATURE


def test_github_vector_file_matches_when_present():
    vector = json.loads(sample("github/signature-test-vector.json").read_text())
    assert signatures.verify(vector["X-Hub-Signature-256"], vector["secret"], vector["payload"].encode())


def test_discourse_published_vector_verifies():
    assert signatures.verify(DISCOURSE_SIGNATURE, DISCOURSE_SECRET, DISCOURSE_BODY)


def test_discourse_ping_file_is_the_signed_body():
    if (SAMPLES / "discourse/ping.json").exists():
        assert sample("discourse/ping.json").read_bytes().strip() == DISCOURSE_BODY


def test_form_encoded_sample_verifies_over_the_raw_form_bytes():
    body = sample("github/ping.form-urlencoded.CONSTRUCTED.txt").read_bytes()
    signature = "sha256=937421c54ae01a0974e52619728a1802fb50d93375a329ccb3a3d5004669d363"
    assert signatures.verify(signature, GITHUB_SECRET, body)


def test_wrong_secret_body_or_format_fails():
    assert not signatures.verify(GITHUB_SIGNATURE, "another secret", GITHUB_PAYLOAD)
    assert not signatures.verify(GITHUB_SIGNATURE, GITHUB_SECRET, GITHUB_PAYLOAD + b" ")
    assert not signatures.verify(GITHUB_SIGNATURE[len("sha256=") :], GITHUB_SECRET, GITHUB_PAYLOAD)  # no prefix
    assert not signatures.verify("sha1=" + "0" * 40, GITHUB_SECRET, GITHUB_PAYLOAD)
    assert not signatures.verify("sha256=zz\u00e9", GITHUB_SECRET, GITHUB_PAYLOAD)


def test_upper_case_hex_is_accepted():
    assert signatures.verify("SHA256=" + GITHUB_SIGNATURE[7:].upper(), GITHUB_SECRET, GITHUB_PAYLOAD)
