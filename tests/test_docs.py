"""The documentation site, checked as a reader meets it: ``mkdocs build --strict`` (which
executes every tutorial notebook, on slices of the real MNIST), then the built site opened in
headless Chromium: every page loads without a console error or a failed request, every image
decodes, every internal link resolves, and the search finds "Dense". Also what the notebooks
lean on: ``History.plot``, a model's summary in Jupyter, the notebook progress bar."""

import functools
import http.server
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import chromium

pytestmark = pytest.mark.slow  # servers, Chromium, PostgreSQL, benchmarks or long training

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.py"))


@pytest.fixture(scope="module")
def site(tmp_path_factory, mnist_path):
    pytest.importorskip("mkdocs_jupyter", reason="the docs extra: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NUMLP_DOCS_QUICK": "1", "NUMLP_DATA": str(mnist_path)}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a browser that moves on drops connections mid-answer: not the site's fault


def watch(page, problems: list) -> None:
    """Note every console error, script error, failed request and 4xx/5xx answer of ``page``."""

    def console(message):
        if message.type == "error":
            problems.append(f"console: {message.text}")

    def response(answer):
        if answer.status >= 400:
            problems.append(f"{answer.status}: {answer.url}")

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} ({r.failure})"))
    page.on("response", response)


def pages_of(site: Path) -> list[str]:
    return sorted(
        "/" + p.parent.relative_to(site).as_posix().removeprefix(".")
        for p in site.rglob("index.html")
    )


def test_the_site_has_every_page_the_issue_asks_for(site):
    pages = pages_of(site)
    for page in ("/getting-started", "/cli", "/recipes", "/concepts/protocol",
                 "/concepts/training", "/concepts/data", "/concepts/files",
                 "/reference/layers", "/reference/model"):  # fmt: skip
        assert page in pages, page
    assert len([p for p in pages if p.startswith("/tutorials/")]) == len(TUTORIALS) == 5
    # the API reference comes from the docstrings, the CLI page from the parser
    reference = (site / "reference/layers/index.html").read_text()
    assert 'id="numlp.layers.Dense"' in reference and "dW = x.T @ grad_out" in reference
    cli = (site / "cli/index.html").read_text()
    for command in ("numlp train", "numlp ensemble", "numlp sweep show", "numlp data import"):
        assert command in cli, command
    assert "--members" in cli and "--distill-temperature" in cli


def test_every_tutorial_ran_and_kept_its_outputs(site):
    for tutorial in TUTORIALS:
        page = (site / "tutorials" / tutorial.stem / "index.html").read_text()
        assert "Traceback" not in page  # (a notebook that raises fails the build itself)
        assert "data:image/png;base64," in page, f"{tutorial.name} has no plot"
    first = (site / "tutorials/01_mlp_from_scratch/index.html").read_text()
    assert "gradient check ok" in first and "gradient check FAILED" in first
    assert "test accuracy" in first


def test_every_page_loads_in_chromium_with_images_and_links_that_work(site, server):
    problems, links, images = [], set(), 0
    with chromium() as browser:
        page = browser.new_page()
        watch(page, problems)
        for path in pages_of(site):
            url = server + (path.rstrip("/") + "/")
            # networkidle: the search worker has loaded too before the next page aborts it
            response = page.goto(url, wait_until="networkidle")
            assert response.status == 200, url
            broken = page.evaluate(
                "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
                ".map(i => i.src)"
            )
            assert not broken, f"{url}: images that did not load: {broken}"
            images += page.evaluate("document.images.length")
            hrefs = page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
            links |= {h.split("#")[0] for h in hrefs if h.startswith(server)}
    assert not problems, problems[:10]
    assert images >= 8  # the tutorials' plots, decoded by the browser
    for link in sorted(links):
        try:
            status = urllib.request.urlopen(link, timeout=10).status
        except urllib.error.HTTPError as err:
            status = err.code
        assert status == 200, f"internal link {link} gives {status}"


def test_the_search_finds_dense(server):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})  # a desktop header
        page.goto(server + "/", wait_until="networkidle")
        box = page.locator("input.md-search__input")
        box.click()
        box.press_sequentially("Dense", delay=50)  # typed as a reader types it
        page.wait_for_selector(".md-search-result__item", timeout=20_000)
        results = page.locator(".md-search-result__item").all_inner_texts()
    assert any("Dense" in text for text in results), results[:5]


# -- what the notebooks lean on ----------------------------------------------------------------


def test_history_plots_its_curves_and_a_model_shows_its_summary():
    pytest.importorskip("matplotlib")
    from numlp import Dense, ReLU, Sequential

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 4)).astype(np.float32), rng.integers(0, 3, 200)
    model = Sequential([Dense(4, 8), ReLU(), Dense(8, 3)], seed=0)
    history = model.fit(x, y, epochs=3, validation_split=0.2, seed=0)
    figure = history.plot()
    loss_axis, accuracy_axis = figure.axes
    assert [line.get_label() for line in loss_axis.lines] == ["train", "validation"]
    assert list(loss_axis.lines[1].get_ydata()) == history["val_loss"]
    assert len(accuracy_axis.lines) == 2
    html = model._repr_html_()
    assert html.startswith("<pre>") and html.endswith("</pre>")
    assert "Dense(in_features=4, out_features=8, init=&#x27;auto&#x27;)" in html  # escaped
    assert "67 parameters" in html


def test_the_progress_bar_is_a_notebook_widget_only_in_jupyter(monkeypatch):
    pytest.importorskip("tqdm")
    import tqdm
    import tqdm.notebook

    from numlp import progress

    assert progress.tqdm_class() is tqdm.tqdm  # a terminal or a test: the text bar
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    assert progress.tqdm_class() is tqdm.notebook.tqdm
