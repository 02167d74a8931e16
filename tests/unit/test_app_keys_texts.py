"""The clips and members pages hand their scripts every text the scripts say (``*.js.*`` keys), and no other."""

from __future__ import annotations

import pytest

from cloud_sync.register.webapp import i18n
from cloud_sync.register.webapp.pages import clips, members


@pytest.mark.parametrize(("page", "module"), [("clips", clips), ("members", members)])
def test_every_script_text_is_handed_to_the_script(page: str, module: object) -> None:
    registered = {k for k in i18n._TEXTS["fi"] if k.startswith(f"{page}.js.")}
    handed = {f"{page}.js.{k}" for k in module._JS_TEXTS}  # type: ignore[attr-defined]
    assert registered == handed
