"""``Secret``: a string that never shows itself (its own module: the settings of
accounts and of the whole process both hold them)."""

from __future__ import annotations

__all__ = ["Secret", "client_keys"]


class Secret:
    """A string that never shows itself in a repr or str."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def client_keys(
    access_key: str | None, secret_key: Secret | None, api_key: Secret | None
) -> dict[str, str | None]:
    """Keyword arguments for a Kling client: the secrets unwrapped, at the last step."""
    return {
        "access_key": access_key,
        "secret_key": secret_key.get() if secret_key else None,
        "api_key": api_key.get() if api_key else None,
    }
