"""Which addresses RCPT looks up for a recipient (conduit/services/routing.py): a webhook's address
never has a plus (conduit/services/webhook_rules.py refuses it), so a plus-tagged recipient is
looked up by its base, then by the domain's catch-all."""

from __future__ import annotations

import pytest

from conduit.services.routing import candidates
from conduit.services.webhook_rules import parse_webhook_address


@pytest.mark.parametrize(("recipient", "tried"), [
    ("box@in.example", ["box@in.example", "*@in.example"]),
    ("box+tag@in.example", ["box@in.example", "*@in.example"]),
    ("box+a+b@in.example", ["box@in.example", "*@in.example"]),
    ("+tag@in.example", ["+tag@in.example", "*@in.example"]),  # no base: as it is, then the catch-all
])
def test_a_recipient_is_looked_up_by_its_base_then_the_catch_all(recipient: str, tried: list[str]):
    assert candidates(recipient) == tried


def test_no_webhook_address_has_a_plus():
    with pytest.raises(ValueError, match=r"'\+' is not allowed"):
        parse_webhook_address("box+tag@in.example")
