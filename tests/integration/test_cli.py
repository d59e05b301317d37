"""The ``partnersync`` command end to end, as a user types it (real subprocesses)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import SHOP_TOKEN


class Cli:
    def __init__(self, project: Path) -> None:
        self.project = project
        self.outputs: list[str] = []

    def __call__(
        self,
        *args: str,
        expect: int = 0,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SHOP_TOKEN": SHOP_TOKEN, "COLUMNS": "200", **(env or {})}
        env.pop("PARTNERSYNC_KEYS", None)
        result = subprocess.run(
            [sys.executable, "-m", "partnersync", "-p", str(self.project), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            input=stdin,
            check=False,
        )
        self.outputs += [result.stdout, result.stderr]
        assert result.returncode == expect, (result.stdout, result.stderr)
        return result


def add_shop(cli: Cli, shop: ShopifySandbox, *, typed_token: str | None = None, **kw: str) -> None:
    """``accounts add`` for the sandbox: the token typed at the prompt, or read from $SHOP_TOKEN."""
    token_args = [] if typed_token else ["--secret-env", "access_token=SHOP_TOKEN"]
    extra = [arg for key, value in kw.items() for arg in (f"--{key}", value)]
    cli(
        *["accounts", "add", "shop", "--platform", "shopify", "--url", shop.url],
        *["--allow-loopback", *token_args, *extra],
        stdin=f"{typed_token}\n" if typed_token else None,
    )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "project")


def test_a_user_wires_an_account_pulls_and_inspects_the_hub(cli: Cli, shop: ShopifySandbox) -> None:
    cli("init", str(cli.project))
    assert (cli.project / "partnersync.toml").exists()
    add_shop(cli, shop, option="page_size=25")
    accounts = json.loads(cli("accounts", "list", "--json").stdout)
    assert [(a["name"], a["platform"], a["api_version"]) for a in accounts] == [
        ("shop", "shopify", "2026-10")
    ]
    assert "ok" in cli("accounts", "test", "shop").stdout

    runs = json.loads(cli("sync", "pull", "shop", "all", "--json").stdout)
    assert [r["entity"] for r in runs] == ["products", "inventory", "orders"]
    assert all(r["status"] == "succeeded" for r in runs)
    assert runs[0]["created"] == len(shop.data.tables["products"])

    shop.data.touch("orders", 2)
    [again] = json.loads(cli("sync", "pull", "shop", "orders", "--json").stdout)
    assert (again["updated"], again["created"]) == (2, 0)

    table = cli("sync", "pull", "shop", "products").stdout
    assert "succeeded" in table
    assert "unchanged" in table

    listed = json.loads(cli("runs", "list", "--json").stdout)
    assert len(listed) == 5
    shown = json.loads(cli("runs", "show", str(again["run_id"]), "--json").stdout)
    assert shown["updated"] == 2
    assert shown["mode"] == "incremental"

    product_id = sorted(shop.data.tables["products"])[1]
    record = json.loads(cli("records", "show", "shop", "products", product_id, "--json").stdout)
    assert record["data"]["origin"]["external_id"] == product_id
    assert json.loads(cli("dlq", "list", "--json").stdout) == []

    cli("accounts", "remove", "shop")
    assert json.loads(cli("accounts", "list", "--json").stdout) == []

    # The access token never shows: not in any output, the log, or the hub files.
    assert all(SHOP_TOKEN not in out for out in cli.outputs)
    for path in [*cli.project.glob("hub.db*"), *cli.project.glob("logs/*")]:
        assert SHOP_TOKEN.encode() not in path.read_bytes(), path


def test_dead_letters_are_listed_with_record_field_and_reason(
    cli: Cli, shop: ShopifySandbox
) -> None:
    cli("init", str(cli.project))
    add_shop(cli, shop, typed_token=SHOP_TOKEN)
    order_id = sorted(shop.data.tables["orders"])[0]
    shop.data.update("orders", order_id, {"createdAt": "2026-02-30T00:00:00Z"})
    [run] = json.loads(cli("sync", "pull", "shop", "orders", "--json", expect=4).stdout)
    assert run["status"] == "partial"  # exit code 4: partial, so cron and CI can tell
    [letter] = json.loads(cli("dlq", "list", "--json").stdout)
    assert (letter["external_id"], letter["field"]) == (order_id, "created_at")
    assert "ISO-8601" in letter["reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sync", "pull", "nosuch", "products"], "no account named 'nosuch'"),
        (["runs", "show", "999"], "no run 999"),
    ],
)
def test_errors_are_one_clear_line_without_traceback(
    cli: Cli, args: list[str], message: str
) -> None:
    cli("init", str(cli.project))
    result = cli(*args, expect=2)
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_wrong_token_fails_the_run_with_the_authentication_error(
    cli: Cli, shop: ShopifySandbox
) -> None:
    cli("init", str(cli.project))
    add_shop(cli, shop, typed_token="wrong-token")
    result = cli("accounts", "test", "shop", expect=2)
    assert "AuthenticationError" in result.stderr or "401" in result.stderr
    pulled = cli("sync", "pull", "shop", "products", expect=1)
    assert "failed" in pulled.stdout + pulled.stderr
    assert "Traceback" not in pulled.stderr


def test_project_without_init_says_what_to_do(cli: Cli) -> None:
    result = cli("runs", "list", expect=2)
    assert "partnersync init" in result.stderr


def test_demo_runs_from_an_empty_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "partnersync", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "incremental" in out
    assert "dead letter" in out
    assert "pushed again: 0 writes" in out
    demo = tmp_path / "partnersync-demo"
    assert len(list((demo / "drop" / "orders-out").glob("orders-*.jsonl"))) == 1
    for name in (
        "partnersync.toml",
        "hub.db",
        "logs/partnersync.log",
        "logs/sandbox-requests.jsonl",
    ):
        assert (demo / name).exists(), name
    assert str(demo) in out


def test_connectors_lists_the_capability_matrix_without_a_project(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "nowhere")
    rows = json.loads(cli("connectors", "--json").stdout)
    matrix = {(r["platform"], r["entity"]): r for r in rows}
    assert matrix[("shopify", "inventory")]["push"] == ["update"]
    assert matrix[("shopify", "inventory")]["compare_and_set"] is True
    assert matrix[("shopify", "products")]["push"] == ["create", "update"]
    assert matrix[("file", "orders")]["pull"] is False
    table = cli("connectors").stdout
    assert "shopify" in table
    assert "fulfillments" in table


@pytest.mark.parametrize(
    ("platform", "bad_record"),
    [("woocommerce", "unknown product status 'limbo'"), ("taobao", "not a decimal number")],
)
def test_the_demo_runs_on_other_sandboxes(tmp_path: Path, platform: str, bad_record: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "partnersync", "demo", "--platform", platform],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert result.returncode == 0, result.stderr
    assert f"sandbox {platform}" in result.stdout
    assert "incremental" in result.stdout
    assert bad_record in result.stdout
    assert "pushed again: 0 writes" in result.stdout
    exports = tmp_path / "partnersync-demo" / "drop" / "orders-out"
    assert len(list(exports.glob("orders-*.jsonl"))) == 1


def test_since_in_the_users_words_and_errors_in_json(cli: Cli, shop: ShopifySandbox) -> None:
    cli("init", str(cli.project))
    add_shop(cli, shop)
    for since in ("2026-11-01", "3d", "yesterday", "2026-11-01T08:00+08:00"):
        [run] = json.loads(
            cli("sync", "pull", "shop", "products", "--since", since, "--json").stdout
        )
        assert run["status"] == "succeeded"
    bad = cli("sync", "pull", "shop", "products", "--since", "last week", "--json", expect=2)
    assert json.loads(bad.stdout) == {
        "error": bad.stderr.strip().removeprefix("error: "),
        "kind": "ConfigError",
        "exit_code": 2,
    }
    assert "--since takes an ISO date or time" in bad.stderr
    both = cli("sync", "pull", "shop", "products", "--since", "3d", "--full", expect=2)
    assert "--since and --full cannot go together" in both.stderr
    assert "Traceback" not in "".join(cli.outputs)


def test_a_job_with_an_unknown_target_writes_nothing(cli: Cli, shop: ShopifySandbox) -> None:
    cli("init", str(cli.project))
    with (cli.project / "partnersync.toml").open("a") as handle:
        handle.write(
            '\n[jobs.stock]\nentity = "inventory"\nsources = ["shop"]\n'
            'targets = ["shop", "ghost"]\n'
        )
    add_shop(cli, shop)
    shop.log.clear()
    failed = cli("sync", "run", "stock", expect=2)
    assert "no account named 'ghost'" in failed.stderr
    assert shop.log.entries == []  # refused before the first request


def test_findable_version_jobs_and_dismissed_dead_letters(cli: Cli, shop: ShopifySandbox) -> None:
    assert cli("--version").stdout.startswith("partnersync ")
    cli("init", str(cli.project))
    with (cli.project / "partnersync.toml").open("a") as handle:
        handle.write('\n[jobs.out]\nentity = "orders"\nsources = ["shop"]\ntargets = ["shop"]\n')
    [job] = json.loads(cli("jobs", "list", "--json").stdout).values()
    assert (job["entity"], job["sources"]) == ("orders", ["shop"])
    wrong = cli(
        *["accounts", "add", "x", "--platform", "shopify", "--url", shop.url, "--allow-loopback"],
        *["--secret-env", "token=SHOP_TOKEN"],
        expect=2,
    )
    assert "take the secret field(s) access_token, not token" in wrong.stderr
    add_shop(cli, shop)
    order_id = sorted(shop.data.tables["orders"])[0]
    shop.data.update("orders", order_id, {"createdAt": "2026-02-30T00:00:00Z"})
    cli("sync", "pull", "shop", "orders", expect=4)
    [letter] = json.loads(cli("dlq", "list", "--json").stdout)
    cli("dlq", "dismiss", str(letter["id"]))
    assert json.loads(cli("dlq", "list", "--json").stdout) == []
    assert "nothing to replay" in cli("dlq", "replay", "--all").stdout


def test_everything_is_findable_from_the_command_line(
    cli: Cli, shop: ShopifySandbox, tmp_path: Path
) -> None:
    cli("init", str(cli.project))
    add_shop(cli, shop)
    project = str(cli.project)

    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        # -p after the subcommand, as people type it
        result = subprocess.run(
            [sys.executable, "-m", "partnersync", *args, "-p", project],
            env={**os.environ, "SHOP_TOKEN": SHOP_TOKEN},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == expect, (result.stdout, result.stderr)
        return result

    run("sync", "pull", "shop", "products")
    account = json.loads(run("accounts", "show", "shop", "--json").stdout)
    assert account["secret_fields"] == ["access_token"]
    assert SHOP_TOKEN not in json.dumps(account)
    settings = json.loads(run("config", "show", "--json").stdout)
    assert settings["project"] == project
    [cursor] = json.loads(run("cursors", "show", "--json").stdout)
    assert (cursor["account"], cursor["entity"]) == ("shop", "products")
    product = next(iter(shop.data.tables["products"].values()))
    listed = json.loads(
        run("records", "list", "shop", "products", "--search", product["handle"], "--json").stdout
    )
    assert [r["external_id"] for r in listed] == [product["id"]]
    preview = json.loads(
        run("mapping", "preview", "shop", "products", product["id"], "--json").stdout
    )
    assert preview["raw"]["id"] == product["id"]
    assert preview["canonical"]["title"] == product["title"]
    assert preview["sources"]["title"] == ["title"]
    run("cursors", "reset", "shop", "products")
    assert json.loads(run("cursors", "show", "--json").stdout) == []
    assert "no orders cursor" in run("cursors", "reset", "shop", "orders", expect=2).stderr

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        taken = run("sandbox", "serve", "--port", port, expect=2)
    assert "cannot serve on 127.0.0.1" in taken.stderr
    assert "Traceback" not in taken.stderr


def test_waits_and_retries_are_said_and_migrations_keep_quiet(
    cli: Cli, shop: ShopifySandbox
) -> None:
    cli("init", str(cli.project))
    add_shop(cli, shop)
    shop.faults.fail(503, times=1)

    cli("sync", "pull", "shop", "products")

    log = (cli.project / "logs" / "partnersync.log").read_text()
    assert "retry 1/5 after HTTP 503 from 127.0.0.1" in log
    assert "Running upgrade" not in log  # Alembic's chatter stays out at INFO
    shop.faults.fail(503, times=1)
    before = len(log)
    cli("sync", "pull", "shop", "products", "--log-level", "WARNING")
    assert "retry" not in (cli.project / "logs" / "partnersync.log").read_text()[before:]
    bad = cli("runs", "list", "--log-level", "LOUD", expect=2)
    assert "log level must be one of" in bad.stderr
