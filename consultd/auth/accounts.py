"""Physicians' accounts and login sessions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from consultd.audit.log import ACCOUNTS
from consultd.auth.passwords import Passwords
from consultd.errors import Conflict, Unauthorized
from consultd.ids import new_id, new_token, now, token_hash
from consultd.ratelimit import RateLimiter
from consultd.store.tables import sessions, users
from consultd.store.unit import Store


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    name: str
    specialty: str
    country: str
    languages: list[str]

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "specialty": self.specialty,
            "country": self.country,
            "languages": list(self.languages),
        }


def _user(row: Any) -> User:
    return User(row.id, row.email, row.name, row.specialty, row.country, list(row.languages))


class Accounts:
    def __init__(self, store: Store, passwords: Passwords, *, session_ttl_s: int) -> None:
        self.store = store
        self.passwords = passwords
        self.session_ttl_s = session_ttl_s
        self.login_per_ip = RateLimiter("login per address", rate=10 / 60, burst=10)
        self.login_per_email = RateLimiter("login per account", rate=5 / 60, burst=5)

    async def register(
        self,
        *,
        name: str,
        email: str,
        password: str,
        specialty: str,
        country: str,
        languages: list[str],
        ip: str,
    ) -> tuple[User, str]:
        self.login_per_ip.hit(ip)
        email = email.strip().lower()
        pw_hash = await self.passwords.hash(password)
        user = User(new_id(), email, name.strip(), specialty.strip(), country.upper(), languages)
        async with self.store.tx() as conn:
            exists = await conn.scalar(sa.select(users.c.id).where(users.c.email == email))
            if exists:
                raise Conflict("an account with this e-mail already exists")
            await conn.execute(
                users.insert().values(
                    id=user.id,
                    email=email,
                    name=user.name,
                    password_hash=pw_hash,
                    specialty=user.specialty,
                    country=user.country,
                    languages=languages,
                    created_at=now(),
                )
            )
            token = await self._new_session(conn, user.id)
            await self.store.audit.record(
                conn, scope=ACCOUNTS, actor=user.id, action="account.created", target=user.id
            )
        return user, token

    async def login(self, *, email: str, password: str, ip: str) -> tuple[User, str]:
        email = email.strip().lower()
        self.login_per_ip.hit(ip)
        self.login_per_email.hit(email)
        async with self.store.db.read() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.email == email))).first()
        ok = await self.passwords.verify(row.password_hash if row else None, password)
        if not ok or row is None:
            raise Unauthorized("wrong e-mail or password")
        async with self.store.tx() as conn:
            token = await self._new_session(conn, row.id)
            await self.store.audit.record(
                conn, scope=ACCOUNTS, actor=row.id, action="session.created", target=row.id
            )
        return _user(row), token

    async def _new_session(self, conn: Any, user_id: str) -> str:
        token = new_token()
        t = now()
        await conn.execute(
            sessions.insert().values(
                token_hash=token_hash(token),
                user_id=user_id,
                created_at=t,
                expires_at=t + self.session_ttl_s,
            )
        )
        return token

    async def logout(self, token: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(sessions.delete().where(sessions.c.token_hash == token_hash(token)))

    async def user_for_session(self, token: str) -> User | None:
        async with self.store.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(users)
                    .join(sessions, sessions.c.user_id == users.c.id)
                    .where(
                        sessions.c.token_hash == token_hash(token), sessions.c.expires_at > now()
                    )
                )
            ).first()
        return _user(row) if row else None

    async def user_by_email(self, email: str) -> User | None:
        async with self.store.db.read() as conn:
            row = (
                await conn.execute(sa.select(users).where(users.c.email == email.strip().lower()))
            ).first()
        return _user(row) if row else None

    async def user_by_id(self, user_id: str) -> User | None:
        async with self.store.db.read() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        return _user(row) if row else None
