"""The dashboard in a real headless Chromium (selenium + chromedriver) over traces seeded through
the stream: the list shows the traces newest first with their columns, filters and paging work,
live refresh shows a new trace without a reload, a trace page shows the query, template and
variables, the final prompt, the sources with scores, the answer, the stage waterfall, tokens
and cost, with trace text rendered as text (never as HTML); the overview draws its charts.
Screenshots go to the test's tmp dir and, when TWIN_ARTIFACTS_DIR is set, there too.
Skipped (with the reason) when chromium, chromedriver or selenium is missing."""
import json
import os
import shutil
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import trace_producer as tp  # noqa: E402
from twin_testlib import Redis  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not CHROMIUM or not DRIVER:
    pytest.skip("chromium and chromedriver are needed (apt-get install chromium chromium-driver)",
                allow_module_level=True)
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def special_trace(now):
    """The newest trace, with text that must not be parsed as HTML."""
    t = tp.make_trace(10_000, seed=21, now_ms=now, spread_ms=1)
    t.update({
        "trace_id": "dash-special-1",
        "time_ms": now,
        "query": "<img src=x onerror=\"document.title='pwned'\"> How does paged attention share KV blocks?",
        "template_name": "rag_answer",
        "template_version": "v3",
        "variables": {"question": "How does paged attention share KV blocks?", "author": "Ada Lovelace",
                      "k": 3, "context": ["c-a", "c-b", "c-c"]},
        "prompt": "<|system|>You answer as Ada Lovelace's twin.\n<|context|>\n[c-a] blocks of 16 tokens\n"
                  "<|user|>How does paged attention share KV blocks?\n<|assistant|>",
        "sources": [{"chunk_id": "c-a", "doc_id": "d-7", "score": 0.9312, "snippet": "blocks of 16 tokens"},
                    {"chunk_id": "c-b", "doc_id": "d-7", "score": 0.8125, "snippet": "a block table per sequence"},
                    {"chunk_id": "c-c", "doc_id": "d-2", "score": 0.5, "snippet": "<script>alert(1)</script>"}],
        "answer": "Sequences that share a prefix point at the same full blocks; a block is copied only on write.",
        "model": "llama-3.1-8b-instruct",
        "prompt_tokens": 1234,
        "completion_tokens": 56,
        "stages": [{"stage": "embed", "ms": 4.25}, {"stage": "search", "ms": 11.5},
                   {"stage": "rerank", "ms": 7.0}, {"stage": "prompt", "ms": 0.8},
                   {"stage": "generate", "ms": 512.0}],
        "ttft_ms": 61.5,
        "total_ms": 540.25,
        "cost_usd": 0.0001458,
        "cache_hit": False,
        "error": "",
    })
    return t


@pytest.fixture
def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1440,1000", "--force-device-scale-factor=1", "--lang=en-US"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(DRIVER), options=o)
    d.set_page_load_timeout(30)
    yield d
    d.quit()


@pytest.fixture
def stack():
    redis = Redis()
    m = tp.start_monitor(redis.url)
    yield redis, m
    rc = m.stop()
    reports = m.sanitizer_reports()
    redis.stop()
    assert rc == 0, m.logs()
    assert reports == [], m.logs()


def save_shot(d, tmp_path, name):
    """The whole page (the window grows to the document's height for the shot)."""
    path = tmp_path / name
    size = d.get_window_size()
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(size["width"], max(size["height"], min(int(height) + 140, 4000)))
    time.sleep(0.3)
    d.save_screenshot(str(path))
    d.set_window_size(size["width"], size["height"])
    art = os.environ.get("TWIN_ARTIFACTS_DIR")
    if art:
        os.makedirs(art, exist_ok=True)
        shutil.copy(path, os.path.join(art, name))
    return path


def wait(d, cond, timeout=20, what="page state"):
    """Polls cond until true; an element the live refresh replaced between finding and reading
    it (stale) counts as not yet, like one not found."""
    return WebDriverWait(d, timeout, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(lambda _: cond(), message=what)


def rows(d):
    return d.find_elements(By.CSS_SELECTOR, "#trace-rows tr")


def row_ids(d):
    return d.execute_script(
        "return Array.from(document.querySelectorAll('#trace-rows tr')).map(r => r.dataset.traceId)")


def row_cells(d):
    """{trace_id: [cell texts]} read in one step (rows may be re-rendered by live refresh)."""
    return d.execute_script(
        "const o = {}; document.querySelectorAll('#trace-rows tr').forEach(r => "
        "{ o[r.dataset.traceId] = Array.from(r.cells).map(c => c.innerText.trim()); }); return o;")


def js_errors(d):
    """Severe console entries, but for the 404 the missing-trace check asks for."""
    return [e for e in d.get_log("browser") if e["level"] == "SEVERE" and "no-such-trace" not in e["message"]]


def test_dashboard_list_trace_page_and_overview(stack, browser, tmp_path):
    redis, m = stack
    r = tp.client(redis.url)
    now = int(time.time() * 1000)
    traces = [tp.make_trace(i, seed=21, now_ms=now - 1000, spread_ms=3 * 3600_000) for i in range(80)]
    special = special_trace(now)
    tp.publish(r, traces + [special])
    every = traces + [special]
    newest_first = sorted(every, key=lambda t: (t["time_ms"], t["trace_id"]), reverse=True)
    tp.wait_for(lambda: json.loads(tp.http_get(m.extra_ports[0], "/api/traces?page_size=1")[1])["total"] == 81)
    base = f"http://127.0.0.1:{m.extra_ports[0]}/"
    d = browser

    # ---- the list: newest first, first page of 50, the count, the columns ----
    d.get(base)
    wait(d, lambda: len(rows(d)) == 50, what="50 rows")
    wait(d, lambda: d.find_element(By.ID, "list-count").text == "81 traces", what="count")
    assert row_ids(d) == [t["trace_id"] for t in newest_first[:50]]
    cells = row_cells(d)
    first = cells[special["trace_id"]]
    assert first[2] == special["query"]           # shown as text, not markup
    assert first[3] == special["model"]
    assert first[4] == "rag_answer · v3"
    assert first[1] == "ok"
    assert first[5] == "540 ms"
    assert first[6] == "61.5 ms"
    assert first[7] == "1,234 / 56"
    assert first[8] == "$0.00015"
    assert d.find_elements(By.CSS_SELECTOR, "#trace-rows img") == []
    by_id = {t["trace_id"]: t for t in every}
    for tid, c in cells.items():
        assert c[1] == ("error" if by_id[tid]["error"] else "ok")
        assert c[3] == by_id[tid]["model"]
        assert c[9] == ("hit" if by_id[tid]["cache_hit"] else "")
    save_shot(d, tmp_path, "dashboard-list.png")

    # ---- paging ----
    more = d.find_element(By.ID, "load-more")
    assert more.is_displayed()
    more.click()
    wait(d, lambda: len(rows(d)) == 81, what="81 rows after load more")
    assert row_ids(d) == [t["trace_id"] for t in newest_first]
    assert not d.find_element(By.ID, "load-more").is_displayed()

    # ---- filters ----
    model = tp.MODELS[1]
    want = [t["trace_id"] for t in newest_first if t["model"] == model]
    Select(d.find_element(By.ID, "f-model")).select_by_value(model)
    wait(d, lambda: row_ids(d) == want[:50], what="model filter")
    Select(d.find_element(By.ID, "f-model")).select_by_value("")
    d.find_element(By.ID, "f-errors").click()
    want = [t["trace_id"] for t in newest_first if t["error"]]
    wait(d, lambda: row_ids(d) == want, what="errors filter")
    d.find_element(By.ID, "f-errors").click()
    d.find_element(By.ID, "f-text").send_keys("PAGED ATTENTION")
    want = [t["trace_id"] for t in newest_first
            if "paged attention" in t["query"].lower() or "paged attention" in t["answer"].lower()]
    wait(d, lambda: row_ids(d) == want, what="text filter")
    d.find_element(By.ID, "f-text").clear()
    d.get(base)
    wait(d, lambda: len(rows(d)) == 50, what="list again")

    # ---- live refresh: a new trace shows up without a reload ----
    live = tp.make_trace(20_000, seed=22, now_ms=int(time.time() * 1000), spread_ms=1)
    live["trace_id"] = "dash-live-1"
    tp.publish(r, [live])
    wait(d, lambda: row_ids(d)[:1] == ["dash-live-1"], timeout=30, what="live row")
    wait(d, lambda: d.find_element(By.ID, "list-count").text == "82 traces", what="count after live")

    # ---- one trace ----
    row = d.find_element(By.CSS_SELECTOR, '#trace-rows tr[data-trace-id="dash-special-1"]')
    row.click()
    wait(d, lambda: d.find_element(By.ID, "trace-body").is_displayed(), what="trace page")
    assert d.current_url.endswith("#/trace/dash-special-1")
    assert d.find_element(By.ID, "trace-query-title").text == special["query"]
    assert d.find_element(By.ID, "trace-query").text == special["query"]
    assert d.find_elements(By.CSS_SELECTOR, "#trace-body img") == []
    assert d.title != "pwned"
    assert d.find_element(By.ID, "trace-id").text == "dash-special-1"
    assert d.find_element(By.ID, "trace-status").text == "ok"
    assert d.find_element(By.ID, "trace-model").text == special["model"]
    assert d.find_element(By.ID, "trace-template").text == "rag_answer · v3"
    var_rows = d.find_elements(By.CSS_SELECTOR, "#trace-variables tbody tr")
    got_vars = {e.get_attribute("data-key"): e.find_element(By.TAG_NAME, "td").text for e in var_rows}
    assert got_vars == {k: (v if isinstance(v, str) else json.dumps(v, separators=(",", ":")))
                        for k, v in special["variables"].items()}
    assert d.find_element(By.ID, "trace-prompt").get_attribute("textContent") == special["prompt"]
    src_rows = d.find_elements(By.CSS_SELECTOR, "#trace-sources tbody tr")
    assert [e.get_attribute("data-chunk-id") for e in src_rows] == ["c-a", "c-b", "c-c"]
    assert [e.find_element(By.CLASS_NAME, "score-value").text for e in src_rows] == ["0.9312", "0.8125", "0.5000"]
    assert src_rows[2].find_element(By.CLASS_NAME, "snippet").text == "<script>alert(1)</script>"
    assert d.find_element(By.ID, "trace-answer").text == special["answer"]
    bars = d.find_elements(By.CSS_SELECTOR, "#trace-waterfall rect.stage-bar")
    assert [b.get_attribute("data-stage") for b in bars] == [s["stage"] for s in special["stages"]]
    xs = [float(b.get_attribute("x")) for b in bars]
    assert xs == sorted(xs) and xs[0] < xs[-1]       # each stage starts where the previous ended
    widths = [float(b.get_attribute("width")) for b in bars]
    assert widths[-1] == max(widths)                  # generate dominates
    assert d.find_element(By.ID, "trace-prompt-tokens").text == "1,234"
    assert d.find_element(By.ID, "trace-completion-tokens").text == "56"
    assert d.find_element(By.ID, "trace-cost").text == "$0.00015"
    assert d.find_element(By.ID, "trace-total").text == "540 ms"
    assert d.find_element(By.ID, "trace-ttft").text == "61.5 ms"
    shot = save_shot(d, tmp_path, "dashboard-trace.png")
    assert shot.stat().st_size > 10_000

    # an unknown trace says so
    d.get(base + "#/trace/no-such-trace")
    wait(d, lambda: d.find_element(By.ID, "trace-missing").is_displayed(), what="missing trace")
    assert "no-such-trace" in d.find_element(By.ID, "trace-missing").text

    # ---- overview ----
    d.get(base + "#/overview")
    Select(d.find_element(By.ID, "o-window")).select_by_value("21600000")
    wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#o-kpis .kpi")) == 8, what="kpis")
    wait(d, lambda: d.find_element(By.CSS_SELECTOR, "#o-kpis .kpi .kpi-value").text == "82", what="6 h count")
    for chart in ("chart-latency", "chart-ttft"):
        assert d.find_elements(By.CSS_SELECTOR, f"#{chart} svg path"), chart
    for chart in ("chart-throughput", "chart-tokens"):
        assert d.find_elements(By.CSS_SELECTOR, f"#{chart} svg rect"), chart
    model_rows = d.find_elements(By.CSS_SELECTOR, "#o-models tbody tr")
    assert len(model_rows) == len({t["model"] for t in every + [live]})
    save_shot(d, tmp_path, "dashboard-overview.png")
    assert js_errors(d) == []
