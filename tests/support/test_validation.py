import pytest

from nebras_bot.support.validation import clean_description, normalise_email, normalise_order_id


@pytest.mark.parametrize("value, expected", [
    ("amira@example.com", "amira@example.com"),
    (" Amira.H+shop@Example.COM ", "Amira.H+shop@example.com"),
    ("my email is lena@mail.de thanks", "lena@mail.de"),
    ("amira@", None),
    ("amira@example", None),
    ("not an email", None),
    ("", None),
    (None, None),
])
def test_email(value, expected):
    assert normalise_email(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("370795561790", "370795561790"),
    ("#4587345", "4587345"),
    ("ord-12345", "ORD-12345"),
    ("order number 123842 please", "123842"),
    ("12", None),
    ("abcdef", None),
    ("", None),
    (None, None),
])
def test_order_id(value, expected):
    assert normalise_order_id(value) == expected


def test_description_needs_enough_text():
    assert clean_description("  my  parcel \n arrived broken ", 10) == "my parcel arrived broken"
    assert clean_description("broken", 10) is None
    assert clean_description(None, 10) is None
