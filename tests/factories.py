"""Small factories for test data, made through the API the way a user would."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import httpx

PASSWORD = "correct horse battery"
_counter = itertools.count(1)


@dataclass
class User:
    email: str
    password: str
    id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def new_email() -> str:
    return f"user{next(_counter)}@example.com"


async def sign_up(client: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD) -> dict:
    response = await client.post("/accounts", json={"email": email or new_email(), "password": password})
    assert response.status_code == 201, response.text
    return response.json()


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict:
    response = await client.post("/sessions", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


async def user(client: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD) -> User:
    """A signed-up, signed-in user."""
    account = await sign_up(client, email, password)
    tokens = await sign_in(client, account["email"], password)
    return User(email=account["email"], password=password, id=account["id"],
                access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])
