"""Run the real Singer tap-shopify (3.13.0) against a loopback sandbox shop, unchanged but for
where it connects: it builds ``https://{shop}.myshopify.com`` itself and has no base-URL
option, so this launcher (run with the tap's own virtualenv's Python, never importing
partnersync) points the ShopifyAPI session and the orders stream's bulk request at
``SANDBOX_URL``. Everything after the launcher's options is the tap's command line.

    /path/to/tap-venv/bin/python bench/tap_shopify_launcher.py http://127.0.0.1:PORT \
        --config config.json --discover
"""

from __future__ import annotations

import sys


def main() -> None:
    sandbox = sys.argv[1].rstrip("/")
    host = sandbox.split("://", 1)[1]
    sys.argv = ["tap-shopify", *sys.argv[2:]]

    import requests
    import shopify

    shopify.Session.protocol = "http"
    shopify.Session._Session__prepare_url = classmethod(lambda cls, url: host)  # type: ignore[attr-defined]

    import tap_shopify
    import tap_shopify.streams.orders as orders

    real_post = requests.post

    def post(url: str, *args: object, **kwargs: object) -> object:
        if ".myshopify.com" in url:
            url = sandbox + url.split(".myshopify.com", 1)[1]
        return real_post(url, *args, **kwargs)

    orders.requests.post = post  # type: ignore[attr-defined]
    tap_shopify.main()


if __name__ == "__main__":
    main()
