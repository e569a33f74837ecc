"""The README's sign-in that handles the 2FA challenge, run by bash against a real `conduit serve`:
the code is typed on standard input, as a person would type it from the authenticator app."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import pyotp

from tests.support.conduit_process import Conduit

README = Path(__file__).resolve().parents[2] / "README.md"
EMAIL, PASSWORD = "you@example.com", "a long passphrase"


def readme_script(heading: str, port: int) -> str:
    """The first sh block after ``heading``, pointed at ``port``."""
    text = README.read_text()
    section = text[text.index(heading):]
    script = section[section.index("```sh") + len("```sh"):]
    return script[:script.index("```")].replace("127.0.0.1:8080", f"127.0.0.1:{port}")


def run(script: str, typed: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], input=typed, capture_output=True, text=True,
                          check=False, timeout=60)


async def test_the_readme_sign_in_answers_the_totp_challenge(tmp_path, database_url):
    conduit = Conduit(tmp_path, database_url)
    await conduit.start()
    try:
        async with httpx.AsyncClient(base_url=conduit.api_url, timeout=30) as api:
            assert (await api.post("/accounts", json={"email": EMAIL, "password": PASSWORD})).status_code == 201
            script = readme_script("### Signing in when 2FA is on", conduit.http_port)
            # Without 2FA the same lines sign in at once (nothing is read from the terminal).
            plain = await asyncio.to_thread(run, script, "")
            assert plain.returncode == 0, plain.stderr
            assert f'"email":"{EMAIL}"' in plain.stdout

            token = (await api.post("/sessions", json={"email": EMAIL, "password": PASSWORD})).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            setup = (await api.post("/accounts/me/2fa/setup", headers=headers)).json()
            totp = pyotp.TOTP(setup["secret"])
            enabled = await api.post("/accounts/me/2fa/enable", headers=headers, json={"code": totp.now()})
            assert enabled.status_code == 200, enabled.text

            wrong = await asyncio.to_thread(run, script, "000000\n")
            assert wrong.returncode != 0  # no access token: the script stops

            # Each step's code works once (enable used the current one): the next step's, within the drift allowed.
            signed_in = await asyncio.to_thread(run, script, totp.at(time.time() + 30) + "\n")
            assert signed_in.returncode == 0, signed_in.stderr
            assert f'"email":"{EMAIL}"' in signed_in.stdout
            assert '"totp_enabled":true' in signed_in.stdout
    finally:
        conduit.stop()
