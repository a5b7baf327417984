"""``fleetctl login``: check a URL and token against the Overlord, then save them 0600."""

from __future__ import annotations

import argparse
import getpass
import os

from fleetctl.client import Client
from fleetctl.commands import Subparsers, command
from fleetctl.errors import UsageError
from fleetctl.session import Session
from fleetctl.settings import (
    TOKEN_ENV,
    URL_ENV,
    Credentials,
    check_token,
    check_url,
    config_path,
    save_file,
)


def add(sub: Subparsers) -> None:
    command(
        sub,
        "login",
        login,
        "save the Overlord URL and token for later commands",
        "Check the URL and token with one API call, then save them to "
        f"{config_path()} (mode 0600). Without --token the token is read from {TOKEN_ENV} "
        "or asked for without echo, so it stays out of the shell history.",
    )


def login(session: Session, args: argparse.Namespace) -> None:
    url = args.url or os.environ.get(URL_ENV)
    if not url:
        raise UsageError("fleetctl login needs --url", hint=f"or set {URL_ENV}")
    token = args.token or os.environ.get(TOKEN_ENV) or getpass.getpass("Overlord token: ")
    credentials = Credentials(url=check_url(url), token=check_token(token))
    with Client(credentials) as client:
        # Any operator role may list groups: a cheap call that proves URL and token.
        client.get("/groups")
    path = config_path()
    save_file(path, credentials)
    if session.printer.as_json:
        session.printer.data({"url": credentials.url, "config": str(path)})
    else:
        session.printer.message(f"logged in to {credentials.url}; saved to {path} (mode 0600)")
