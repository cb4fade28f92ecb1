from __future__ import annotations

import math

from consultd.auth import sharecodes


def test_generated_codes_are_grouped_and_have_enough_entropy() -> None:
    code, parsed = sharecodes.generate()
    groups = code.split("-")
    assert [len(g) for g in groups] == [5] * 5
    secret_bits = len(parsed.secret) * math.log2(len(sharecodes.ALPHABET))
    assert secret_bits >= 100 > 80
    assert sharecodes.parse(code) == parsed


def test_parse_forgives_what_people_type() -> None:
    code, parsed = sharecodes.generate()
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert sharecodes.parse(typed) == parsed
    assert sharecodes.parse(code[:-1]) is None
    assert sharecodes.parse(code + "7") is None
    assert sharecodes.parse("UUUUU-UUUUU-UUUUU-UUUUU-UUUUU") is None  # U is not Crockford


def test_only_an_hmac_of_the_secret_is_compared() -> None:
    _, parsed = sharecodes.generate()
    key = b"k" * 32
    stored = sharecodes.secret_hash(key, parsed.secret)
    assert parsed.secret not in stored
    assert sharecodes.secret_matches(key, parsed.secret, stored)
    assert not sharecodes.secret_matches(b"other" * 8, parsed.secret, stored)
    other = "1" if parsed.secret.endswith("0") else "0"  # a different last character
    assert not sharecodes.secret_matches(key, parsed.secret[:-1] + other, stored)
