"""Real exports in one drop: odd encodings, delimiters and headers land; each bad file or row is
named and nothing blocks the rest (the file connector's robustness)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from partnersync.sandbox.files import FileSandbox
from tests.integration.test_cli import Cli

GOOD = {
    "a-utf8.csv": b"sku,location,available\nA-1,Main,5\n",
    "b-latin1.csv": "sku,location,available\nCAFÉ-1,Entrepôt,7\n".encode("latin-1"),
    # A Chinese ERP's export in GBK (detection needs a few lines of text, as real exports have).
    "c-gbk.csv": (
        "sku,location,available\n连衣裙-红色-M,杭州仓库,9\n连衣裙-红色-L,杭州仓库,11\n"
        "衬衫-白色-S,上海仓库,3\n衬衫-白色-M,上海仓库,0\n牛仔裤-蓝色-30,北京仓库,12\n"
    ).encode("gbk"),
    "d-bom-crlf.csv": "\ufeffsku,location,available\r\nBOM-1,Main,3\r\n".encode(),
    "e-semicolon.csv": b"sku;location;available\nSEMI-1;Main;4\n",
    "f-capitalised.csv": b"SKU , Location,Available\nCAP-1,Main,6\n",
    "g-aliases.csv": b"Item Code,Warehouse,Qty\nALIAS-1,Main,8\n",
    "h-rows.jsonl": b'{"SKU": "JSON-1", "Location": "Main", "qty": 2}\n',
}


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "project")


def test_a_drop_of_real_exports_lands_what_it_can_and_names_the_rest(
    tmp_path: Path, cli: Cli
) -> None:
    drop = FileSandbox(directory=tmp_path / "drop", skus=0, files=0).start()
    assert drop.directory is not None
    folder = drop.directory / "inventory"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in GOOD.items():
        (folder / name).write_bytes(data)
    (folder / "x-binary.csv").write_bytes(b"PK\x03\x04\x00\x00binary zip\x00\x00")
    (folder / "y-missing-column.csv").write_bytes(b"sku,location\nMISS-1,Main\n")
    (folder / "z-bad-rows.csv").write_bytes(
        b"sku,location,available\nDUP-1,Main,1\nDUP-1,Main,2\nNEG-1,Main,-5\nBIG-1,Main,99999999\n"
    )
    cli("init", str(cli.project))
    cli("accounts", "add", "erp", "--platform", "file", "--url", drop.url)

    cli("sync", "pull", "erp", "inventory", expect=4)  # partial: some rows were refused

    records = json.loads(cli("runs", "list", "--json").stdout)
    assert records[0]["status"] == "partial"
    letters = json.loads(cli("dlq", "list", "--json").stdout)
    reasons = {d["source_ref"]: d["reason"] for d in letters}
    assert "a binary file" in reasons["inventory/x-binary.csv:1"]
    assert "moved to inventory/quarantine/x-binary.csv" in reasons["inventory/x-binary.csv:1"]
    assert (folder / "quarantine" / "x-binary.csv").exists()
    missing = reasons["inventory/y-missing-column.csv:2"]
    assert "column 'available' (or qty, quantity" in missing
    assert "its header is: sku, location" in missing
    assert "duplicate SKU 'DUP-1'" in reasons["inventory/z-bad-rows.csv:3"]
    assert "stock is negative: -5" in reasons["inventory/z-bad-rows.csv:4"]
    assert "above this account's max_stock" in reasons["inventory/z-bad-rows.csv:5"]
    assert len(letters) == 5
    landed = {
        json.loads(cli("records", "show", "erp", "inventory", f"{sku}@{where}", "--json").stdout)[
            "data"
        ]["available"]
        for sku, where in [
            ("A-1", "Main"),
            ("CAFÉ-1", "Entrepôt"),
            ("连衣裙-红色-L", "杭州仓库"),
            ("BOM-1", "Main"),
            ("SEMI-1", "Main"),
            ("CAP-1", "Main"),
            ("ALIAS-1", "Main"),
            ("JSON-1", "Main"),
            ("DUP-1", "Main"),
        ]
    }
    assert landed == {5, 7, 11, 3, 4, 6, 8, 2, 1}
    cli("sync", "pull", "erp", "inventory", expect=4)  # re-reads the drop (within the overlap)
    again = json.loads(cli("dlq", "list", "--json").stdout)
    assert len(again) == 5  # nothing reported twice; the quarantined file is not read again
