"""Deployment as the README documents it: `gunicorn app:server` behind the README's own nginx
block (Debian's nginx, TLS with a test certificate, on a port other than 443), the page opened
in a real headless Chromium; and the page's own resolution of the bridge URL."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hrdash import ids
from hrdash.webapp import ASSETS
from tests.support import (
    ROOT,
    Running,
    chromium_page,
    free_port,
    gunicorn_command,
    hrdash_running,
    poll,
    wait_port,
    watch,
)

NGINX = os.environ.get("HRDASH_TEST_NGINX", "/usr/sbin/nginx")
FACTOR = float(os.environ.get("HRDASH_TEST_TIMEOUT_FACTOR", "1"))
SCREENSHOTS = os.environ.get("HRDASH_TEST_SCREENSHOTS", "")  # a directory, or empty: none
needs_nginx = pytest.mark.skipif(
    not Path(NGINX).exists(),
    reason=f"nginx not found at {NGINX}: apt-get install -y nginx (or set HRDASH_TEST_NGINX)",
)

# What a person sees: the badge, its title, the alert line, the table's rows.
PAGE_JS = """
(ids) => {
  const alert = document.getElementById(ids.alert);
  const badge = document.getElementById(ids.status);
  return {
    status: badge?.textContent.trim(),
    title: badge?.getAttribute('title') || '',
    alert: alert && !alert.hidden ? alert.textContent.trim() : '',
    rows: document.querySelectorAll(`#${ids.table} .ag-center-cols-container .ag-row`).length,
    bpm: document.getElementById(ids.bpm)?.textContent.trim(),
    wsUrl: window.hrdashCore ? window.hrdashCore.state.wsBase : null,
  };
}
"""
PAGE_IDS = {
    "status": ids.STATUS,
    "alert": ids.ORIGIN_ALERT,
    "table": ids.TABLE,
    "bpm": ids.CURRENT_BPM,
}


def shown(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(PAGE_JS, PAGE_IDS))


def readme_nginx_block(scale_out: bool = False) -> str:
    """The README's nginx block, as a user would copy it: the one in front of one machine, or
    (``scale_out``) the one with an ``upstream`` of edges."""
    blocks = re.findall(r"```nginx\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    chosen = [b for b in blocks if ("upstream " in b) == scale_out]
    assert len(chosen) == 1, "the README must hold one nginx block of each kind"
    return str(chosen[0])


def site_config(block: str, substitutions: dict[str, str]) -> str:
    """``block`` with every ``substitutions`` made (each must occur, so that a README change
    that the test does not follow fails loudly instead of testing something else)."""
    for old, new in substitutions.items():
        assert block.count(old) >= 1, f"the README's nginx block no longer contains {old!r}"
        block = block.replace(old, new)
    return block


@contextlib.contextmanager
def nginx_running(site: str, port: int) -> Iterator[Path]:
    """Debian's nginx in the foreground with ``site`` as its only server, its own prefix, pid
    file, logs and temp directories in a fresh directory; yields that directory."""
    with tempfile.TemporaryDirectory(prefix="hrdash-nginx-") as tmp:
        prefix = Path(tmp)
        prefix.chmod(0o755)  # nginx's workers (nobody, when started as root) use the temp dirs
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"""
pid {prefix}/nginx.pid;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{site}
}}
"""
        )
        command = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
        assert check.returncode == 0, f"nginx -t:\n{check.stderr}\n{conf.read_text()}"
        proc = subprocess.Popen(
            [*command, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_port(port, 10 * FACTOR, proc)
            yield prefix
        finally:
            proc.send_signal(signal.SIGTERM)  # fast shutdown, workers included
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A certificate for localhost from a throwaway CA (trustme): (cert chain, key) paths."""
    return make_certificate(tmp_path_factory.mktemp("nginx-tls"))


def make_certificate(folder: Path) -> tuple[str, str]:
    """A certificate for localhost and 127.0.0.1 from a throwaway CA (trustme), written to
    ``folder``: (cert chain, key) paths."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    chain, key = folder / "cert.pem", folder / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    return str(chain), str(key)


@contextlib.contextmanager
def deployed(
    certificate: tuple[str, str], allowed_origins: str, host_header: str = "$http_host"
) -> Iterator[tuple[Running, int, Path]]:
    """gunicorn (2 workers, the bridge from its master) with HRDASH_PUBLIC_WS_URL=/ws behind the
    README's nginx block on a free port (not 443) with TLS; yields (hrdash, nginx port, nginx's
    directory). ``{port}`` in ``allowed_origins`` becomes nginx's port."""
    port = free_port()
    assert port != 443
    env = {
        "HRDASH_PUBLIC_WS_URL": "/ws",
        "HRDASH_ALLOWED_ORIGINS": allowed_origins.format(port=port),
        "HRDASH_SIMULATOR_PERIOD": "0.5",
    }
    with hrdash_running(gunicorn_command(2), env) as running:
        chain, key = certificate
        site = site_config(
            readme_nginx_block(),
            {
                "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
                "/etc/ssl/certs/monitor.example.org.pem": chain,
                "/etc/ssl/private/monitor.example.org.key": key,
                "http://127.0.0.1:8765": f"http://127.0.0.1:{running.bridge_port}",
                "http://127.0.0.1:8050": f"http://127.0.0.1:{running.port}",
                "proxy_set_header Host $http_host;": f"proxy_set_header Host {host_header};",
            },
        )
        with nginx_running(site, port) as prefix:
            yield running, port, prefix


@needs_nginx
@pytest.mark.browser
@pytest.mark.parametrize(
    "host_header",
    [
        "$http_host",  # the README's block as written
        "$host",  # a proxy that drops the port from Host: the page must not care
    ],
)
def test_page_behind_nginx_tls_on_another_port_goes_live(
    certificate: tuple[str, str], host_header: str
) -> None:
    """Behind the README's nginx block on a port other than 443 with TLS, with
    HRDASH_PUBLIC_WS_URL=/ws, the page served by gunicorn connects to
    wss://localhost:<that port>/ws (resolved in the browser, whatever Host the proxy sends),
    reaches Live and fills the table, with no console error."""
    with deployed(certificate, "https://localhost:{port}", host_header) as (running, port, _):
        running.wait_readings(3, timeout=30 * FACTOR)
        with chromium_page(ignore_https_errors=True) as page:
            _, errors = watch(page)
            page.goto(f"https://localhost:{port}/", wait_until="domcontentloaded")
            seen = poll(
                page,
                shown,
                lambda s: s["status"] == "Live" and s["rows"] >= 3 and s["bpm"].isdigit(),
                20 * FACTOR,
                "Live with readings through nginx",
            )
            assert seen["wsUrl"] == f"wss://localhost:{port}/ws?patient=bed-01&overlap=1"
            assert seen["alert"] == ""
            assert errors == []
        health = running.health()
        assert health["counters"]["viewers_connected"] >= 1
        assert health["origins"]["refused"]["total"] == 0


@needs_nginx
@pytest.mark.browser
def test_page_says_when_the_bridge_refuses_its_origin(certificate: tuple[str, str]) -> None:
    """With HRDASH_ALLOWED_ORIGINS missing the port the browser uses (https://localhost behind
    nginx on another port), the page says that the bridge refuses its origin, naming it and
    HRDASH_ALLOWED_ORIGINS, in a visible line and the badge; the bridge counts the refusals in
    /healthz and logs the origin once, with the allowed list."""
    with deployed(certificate, "https://localhost") as (running, port, _):
        origin = f"https://localhost:{port}"
        with chromium_page(ignore_https_errors=True) as page:
            page.goto(f"{origin}/", wait_until="domcontentloaded")
            seen = poll(
                page,
                shown,
                lambda s: s["alert"] != "" and s["status"] == "Origin refused",
                20 * FACTOR,
                "the refused-origin message",
            )
            assert f"this page's origin, {origin}" in seen["alert"]
            assert "HRDASH_ALLOWED_ORIGINS" in seen["alert"]
            assert "it is now https://localhost." in seen["alert"]
            assert seen["title"] == seen["alert"]
            assert seen["rows"] == 0
            # Let it retry a few times: still one log line (once per origin per minute).
            poll(
                page,
                lambda _: {"refused": running.health()["origins"]["refused"]["total"]},
                lambda s: s["refused"] >= 3,
                20 * FACTOR,
                "three refused handshakes",
            )
            if SCREENSHOTS:  # to look at what a person sees
                page.screenshot(path=str(Path(SCREENSHOTS) / "origin-refused.png"))
        refused = running.health()["origins"]["refused"]
        assert set(refused["by_origin"]) == {origin}
        lines = [line for line in running.log().splitlines() if "refused a viewer" in line]
        assert len(lines) == 1, lines
        assert repr(origin) in lines[0] and "(https://localhost)" in lines[0]


@pytest.mark.browser
def test_bridge_url_is_resolved_against_the_page_location() -> None:
    """resolveWsUrl (assets/hrdash.js): a path takes the page's scheme (https → wss), host and
    port; with a bridge port, the page's host name on that port over ws; an absolute ws(s) URL
    stays as it is. originRefusal is empty exactly when the origin is allowed."""
    cases = [
        (["/ws?overlap=1", None, "https://localhost:8443/"], "wss://localhost:8443/ws?overlap=1"),
        (["/ws", None, "https://monitor.example.org/"], "wss://monitor.example.org/ws"),
        (["/ws", None, "http://monitor.example.org:8080/a/b"], "ws://monitor.example.org:8080/ws"),
        (["ws", None, "https://h.example:1/app/"], "wss://h.example:1/app/ws"),
        (["/ws?overlap=1", 8765, "http://192.168.1.5:8050/"], "ws://192.168.1.5:8765/ws?overlap=1"),
        (["/ws?overlap=1", 8765, "http://[::1]:8050/"], "ws://[::1]:8765/ws?overlap=1"),
        (["/ws?overlap=1", 8765, "https://m.example/"], "ws://m.example:8765/ws?overlap=1"),
        (["wss://b.example/ws?overlap=1", None, "http://x:1/"], "wss://b.example/ws?overlap=1"),
    ]
    with chromium_page() as page:
        page.add_script_tag(path=str(Path(ASSETS) / "hrdash.js"))
        for (configured, port, href), expected in cases:
            got = page.evaluate(
                "([c, p, href]) => window.hrdashCore.resolveWsUrl(c, p, {href: href})",
                [configured, port, href],
            )
            assert got == expected, (configured, port, href)
        refusal = "([o, a]) => window.hrdashCore.originRefusal(o, a)"
        assert page.evaluate(refusal, ["https://h:8443", ["https://h:8443"]]) == ""
        assert page.evaluate(refusal, ["https://h:8443", ["*"]]) == ""
        message = page.evaluate(refusal, ["https://h:8443", ["https://h", "http://h:8443"]])
        assert "https://h:8443" in message and "HRDASH_ALLOWED_ORIGINS" in message
        assert "https://h, http://h:8443" in message
