"""The test encoders reproduce real vectors byte for byte, so the property tests built on them mean something."""

from __future__ import annotations

from tests.support import ble_encode

H = bytes.fromhex


def test_bthome_encrypted_vector() -> None:
    sd = ble_encode.bthome(
        H("02CA0903BF13"), mac=H("5448E68F80A5"), key=H("231d39c1d7cc1ab1aee224cd096db932"), counter=0x33221100
    )
    assert sd == H("41a47266c95f730011223378237214")


def test_bthome_plaintext_with_mac_vector() -> None:
    assert ble_encode.bthome(H("04138a01"), mac=H("A4C1388D18B2"), include_mac=True) == H("42b2188d38c1a404138a01")


def test_mibeacon_encrypted_vectors() -> None:
    lywsd = ble_encode.mibeacon(
        H("061002d301"),
        product_id=0x055B,
        frame_counter=0x50,
        mac=H("A4C1380283F4"),
        key=H("e9ea895fac7cca6d30532432a516f3a8"),
        ext_counter=0x26,
        extra_flags=0x0800,  # auth mode 2, "standard certification"
    )
    assert lywsd == H("58585b0550f4830238c1a495ef58763c26000097e2abb5")
    smoke = ble_encode.mibeacon(
        H("15100101"),
        product_id=0x0997,
        frame_counter=0x66,
        mac=H("54EF44E39CBC"),
        key=H("5b51a7c91cde6707c9ef18dfda143a58"),
        extra_flags=0x0900,  # registered, auth mode 2
    )
    assert smoke == H("5859970966bc9ce344ef5401081205000000715ebe90")


def test_mibeacon_plaintext_vector() -> None:
    sd = ble_encode.mibeacon(
        ble_encode.mi_object(0x100D, H("1001ea01")),
        product_id=0x055B,
        frame_counter=3,
        mac=H("A4C138B4944C"),
        version=3,
    )
    assert sd == H("50305b05034c94b438c1a40d10041001ea01")


def test_atc_vectors() -> None:
    assert ble_encode.atc1441(H("A4C138D5D498"), 325, 62, 81, 2939, 0x62) == H("a4c138d5d49801453e510b7b62")
    assert ble_encode.pvvx(H("A4C138CF0156"), 2112, 5053, 3143, 100, 204, 0x0F) == H("5601cf38c1a44008bd13470c64cc0f")


def test_ruuvi_vector() -> None:
    sd = ble_encode.ruuvi5(4860, 21396, 50044, (4, -4, 1036), 1377, 22, 66, 205, H("CBB8334C884F"))
    assert sd == H("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
