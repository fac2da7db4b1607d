"""``submit --account``: the preflight asks every account the batch may go on.

Two simulated accounts behind one base URL, told apart by their API keys, known
to klingmon from ``[accounts.NAME]`` tables and ``KLING_<NAME>_API_KEY``. A wrong
key on one of them, or packs that together cannot pay for the batch, store
nothing and send nothing; packs that cover it together let it be stored.
"""

from __future__ import annotations

import json
import os

from cli_support import klingmon

from klingmon.sim import ResourcePack, SimAccounts, SimConfig
from klingmon.store import Store
from klingmon.testing import AppServer

V3 = "/text-to-video/kling-3.0"
ROWS = 4


def _account(name: str, units: float) -> SimConfig:
    pack = ResourcePack(name=f"{name} video", total=units, pack_id=f"{name}-1")
    return SimConfig(
        admin=True,
        access_key=f"{name}-access",
        secret_key=f"{name}-secret-key-0123456789",
        api_key=f"{name}-api-key",
        packs=(pack,),
    )


def _env(tmp_path, url: str, **keys: str) -> dict[str, str]:
    (tmp_path / "klingmon.toml").write_text(
        "".join(f'[accounts.{n}]\napi_base = "{url}"\n' for n in ("a", "b"))
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KLING_", "KLINGMON_"))
    }
    return env | {
        "KLINGMON_CONFIG": str(tmp_path / "klingmon.toml"),
        "KLINGMON_DB": str(tmp_path / "k.db"),
        **keys,
    }


def _quoted_units(tmp_path, env: dict[str, str], rows) -> float:
    shown = klingmon(
        "quote", str(rows), "--endpoint", V3, "--no-account", "--json", env=env
    )
    assert shown.returncode == 0, shown.stderr
    units = json.loads(shown.stdout)["units"]
    assert units > 0
    return float(units)


def _stored(env: dict[str, str]) -> int:
    with Store.open(env["KLINGMON_DB"]) as store:
        return len(store.tasks.tasks())


def test_each_account_is_asked_before_anything_is_stored(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("prompt\n" + "".join(f"a kite {i}\n" for i in range(ROWS)))
    plain = _env(tmp_path, "http://127.0.0.1:9")
    units = _quoted_units(tmp_path, plain, rows)
    # a alone cannot pay for the batch; a and b together can.
    accounts = SimAccounts({"a": _account("a", units / 2), "b": _account("b", units)})
    server = AppServer(accounts.app)
    server.start()
    try:
        submit = ["submit", str(rows), "--endpoint", V3]
        good = {"KLING_A_API_KEY": "a-api-key", "KLING_B_API_KEY": "b-api-key"}

        env = _env(tmp_path, server.url, **(good | {"KLING_B_API_KEY": "b-wrong"}))
        refused = klingmon(*submit, "--account", "a", "--account", "b", env=env)
        assert refused.returncode == 3, refused.stderr
        assert "(account b) refused the credentials" in refused.stderr
        assert "nothing was stored" in refused.stderr
        assert "b-wrong" not in refused.stderr + refused.stdout

        env = _env(tmp_path, server.url, **good)
        short = klingmon(*submit, "--account", "a", env=env)
        assert short.returncode == 2, short.stderr
        assert f"quoted at {units:g} units but the packs of a have" in short.stderr
        assert _stored(env) == 0

        both = klingmon(*submit, "--account", "a", "--account", "b", env=env)
        assert both.returncode == 0, both.stderr
        assert _stored(env) == ROWS
        counters = accounts.counters()
    finally:
        server.stop()
    for name, c in counters.items():
        assert c["requests_by_route"].get("create", 0) == 0, name  # stored, not sent
