"""Rendering .env from .env.template."""

from __future__ import annotations

import pytest

from fleetcore.rolebundle.envfile import check_template, render
from fleetcore.rolebundle.errors import MissingValue, TemplateError

OWNED = {"ROLE_NAME": "webapp", "ROLE_STATE": "/data/roles/webapp/state"}


def test_renders_config_then_owned_variables():
    text = render(
        "# comment\nGREETING={{ config.greeting }}\nID={{ device.id }}\n",
        context={"config": {"greeting": "hi"}, "device": {"id": "d1"}},
        owned=OWNED,
    )
    assert text == (
        "# comment\nGREETING=hi\nID=d1\nROLE_NAME=webapp\nROLE_STATE=/data/roles/webapp/state\n"
    )


def test_missing_value_names_it():
    with pytest.raises(TemplateError, match="loki_url") as caught:
        render("LOKI_URL={{ config.loki_url }}\n", context={"config": {}}, owned=OWNED)
    assert caught.value.hint


def test_overlord_variables_are_vars_and_a_missing_one_is_not_the_bundles_fault():
    text = render(
        "FPS={{ vars.CAMERA_FPS }}\nURL={{ vars.URL | default('none') }}\n",
        context={"vars": {"CAMERA_FPS": "25"}},
        owned={},
    )
    assert text == "FPS=25\nURL=none\n"
    with pytest.raises(MissingValue, match="CAMERA_FPS.*fleetctl config set"):
        render("FPS={{ vars.CAMERA_FPS }}\n", context={"vars": {}}, owned={})


def test_defaults_apply():
    text = render('A={{ config.a | default("x") }}\n', context={"config": {}}, owned={})
    assert text == "A=x\n"


def test_template_cannot_redefine_owned_variables():
    with pytest.raises(TemplateError, match="redefines ROLE_STATE"):
        render("ROLE_STATE=/\n", context={}, owned=OWNED)


def test_injected_newline_becomes_an_invalid_line():
    with pytest.raises(TemplateError, match="not KEY=VALUE"):
        render("A={{ config.a }}\n", context={"config": {"a": "x\n/evil"}}, owned={})


def test_sandbox_blocks_attribute_escapes():
    with pytest.raises(TemplateError):
        render("A={{ ''.__class__.__mro__ }}\n", context={}, owned={})


def test_syntax_check():
    check_template("A={{ config.a }}\n")
    with pytest.raises(TemplateError, match="line 1"):
        check_template("A={{ config.a \n")
