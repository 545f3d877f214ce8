"""The feature pipeline and the vector index against a real redis-server, through
build/bin/rag-tool: ingesting tests/data/corpus twice (the second time writes nothing), the
Redis layout checked field by field (chunk ids recomputed here from the stored fields with
hashlib, vectors of unit length, document sets, the change stream), deleting a document, a
live follower's index matching Redis after every change, filters, an edited document, bad
inputs, Redis down at the start and killed in the middle of an ingest (nothing half-written,
nothing duplicated or lost after the retry), and documents fetched over HTTP from a local
server (content types, size cap, redirect limit, timeout)."""
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from twin_testlib import SOURCE_DIR, Process, Redis, binary, free_port, wait_port

CORPUS = os.path.join(SOURCE_DIR, "tests", "data", "corpus", "docs")
QUESTIONS = os.path.join(SOURCE_DIR, "tests", "data", "corpus", "questions.jsonl")
DIM = 384


# ------------------------------------------------------------------------------------------------
# a minimal RESP client (the tests read Redis directly, independently of the code under test)

class Resp:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.sock.makefile("rb")

    def close(self):
        self.f.close()
        self.sock.close()

    def __call__(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._read()

    def _read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"bad RESP line {line!r}")

    def keys(self, pattern):
        cursor, found = b"0", []
        while True:
            cursor, batch = self("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            found += [k.decode() for k in batch]
            if cursor == b"0":
                return sorted(found)

    def hash(self, key):
        flat = self("HGETALL", key)
        return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}

    def stream(self):
        entries = self("XRANGE", "twin:chunks:changes", "-", "+") or []
        out = []
        for _id, fields in entries:
            d = {fields[i].decode(): fields[i + 1].decode() for i in range(0, len(fields), 2)}
            out.append((_id.decode(), d))
        return out


# ------------------------------------------------------------------------------------------------
# running rag-tool

def rag_tool(redis_url, *args, check=None, timeout=120):
    cmd = [binary("rag-tool"), "--redis", redis_url, *args]
    p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    assert p.returncode >= 0, f"rag-tool died of signal {-p.returncode}:\n{p.stderr.decode()}"
    assert b"AddressSanitizer" not in p.stderr and b"runtime error" not in p.stderr, p.stderr.decode()
    out = json.loads(p.stdout.decode().strip().splitlines()[-1]) if p.stdout.strip() else None
    if check is not None:
        assert p.returncode == check, f"rc {p.returncode}: {p.stdout.decode()}\n{p.stderr.decode()}"
    return p.returncode, out, p.stderr.decode()


class Follower:
    """`rag-tool follow`: a live follower answering commands on stdin."""

    def __init__(self, redis_url, *args):
        self.proc = subprocess.Popen([binary("rag-tool"), "--redis", redis_url, *args, "follow"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        assert json.loads(self.proc.stdout.readline())["ready"]

    def ask(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        assert reply, f"follower exited: {self.proc.stderr.read().decode()}"
        return json.loads(reply)

    def sync(self, ms=30000):
        r = self.ask(f"sync {ms}")
        assert r["synced"], r
        return r

    def ids(self):
        return sorted(self.ask("ids")["ids"])

    def search(self, query, **kw):
        return self.ask("search " + json.dumps(dict(query=query, **kw)))

    def stop(self):
        self.proc.stdin.write(b"quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)
        err = self.proc.stderr.read().decode()
        assert self.proc.returncode == 0, err
        assert "AddressSanitizer" not in err and "runtime error" not in err, err
        return err


@pytest.fixture(scope="module")
def redis_server():
    r = Redis()
    yield r
    r.stop()


@pytest.fixture
def redis(redis_server):
    db = Resp(redis_server.port)
    db("FLUSHALL")
    yield redis_server.url, db
    db.close()


def expected_chunk_id(fields):
    """The chunk id rule of rag/ingest.h, recomputed from the stored fields."""
    parts = [fields[k].decode() for k in ("doc_id", "author", "type", "title", "link")]
    data = "\x1f".join(parts).encode() + b"\x1f" + fields["text"]
    return hashlib.sha256(data).hexdigest()[:32]


def check_layout(db):
    """Every invariant of the Redis layout; returns {chunk_id: fields}."""
    chunk_keys = db.keys("twin:chunk:*")
    chunks = {k[len("twin:chunk:"):]: db.hash(k) for k in chunk_keys}
    doc_sets = {k[len("twin:doc:"):]: sorted(m.decode() for m in db("SMEMBERS", k))
                for k in db.keys("twin:doc:*")}
    for cid, f in chunks.items():
        for field in ("text", "doc_id", "author", "type", "title", "link", "source", "position",
                      "tokens", "vector"):
            assert field in f, f"{cid} lacks {field}"
        assert expected_chunk_id(f) == cid
        assert f["type"].decode() in ("post", "article", "code")
        v = np.frombuffer(f["vector"], dtype="<f4")
        assert v.shape == (DIM,)
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-4
        assert cid in doc_sets[f["doc_id"].decode()]
    members = sorted(m for ms in doc_sets.values() for m in ms)
    assert members == sorted(chunks), "doc sets and chunk hashes disagree"
    assert sorted(m.decode() for m in db("SMEMBERS", "twin:docs")) == sorted(doc_sets)
    # the stream replays to exactly the stored chunks
    live = set()
    for _id, e in db.stream():
        assert e["op"] in ("add", "delete")
        if e["op"] == "add":
            assert e["chunk"] not in live, f"{e['chunk']} added twice"
            live.add(e["chunk"])
        else:
            assert e["chunk"] in live
            live.discard(e["chunk"])
    assert live == set(chunks)
    return chunks


# ------------------------------------------------------------------------------------------------
# ingest twice, delete, follow

def test_ingest_twice_delete_and_follow(redis):
    url, db = redis
    rc, first, err = rag_tool(url, "ingest", CORPUS, check=0)
    assert first["errors"] == 0
    assert first["documents"] == 23
    assert first["chunks_unchanged"] == 0
    assert "ingest: [23]" in err  # progress lines
    chunks = check_layout(db)
    assert len(chunks) == first["chunks_new"] > 30
    stream_len = db("XLEN", "twin:chunks:changes")
    assert stream_len == len(chunks)

    # metadata from the front matter and from JSONL lines
    kv = [f for f in chunks.values() if f["doc_id"] == b"maya-kv-cache"]
    assert len(kv) >= 3
    assert all(f["author"] == b"maya" and f["type"] == b"article" for f in kv)
    assert sorted(int(f["position"]) for f in kv) == list(range(len(kv)))
    assert all(f["title"] == b"Paging the KV cache" for f in kv)
    assert all(f["link"] == b"https://notes.example.org/maya/kv-cache" for f in kv)
    post = [f for f in chunks.values() if f["doc_id"] == b"post-leo-01"]
    assert len(post) == 1 and post[0]["type"] == b"post" and post[0]["author"] == b"leo"
    code = [f for f in chunks.values() if f["doc_id"] == b"snippet-ana-01"]
    assert code and all(f["type"] == b"code" for f in code)
    # code keeps its indentation
    assert any(b"\n    if not sorted_values:" in f["text"] for f in code)

    # a live follower, started now
    fol = Follower(url)
    fol.sync()
    assert fol.ids() == sorted(chunks)

    # the second ingest writes nothing
    rc, second, _ = rag_tool(url, "ingest", CORPUS, check=0)
    assert second["chunks_new"] == 0
    assert second["chunks_unchanged"] == len(chunks)
    assert second["chunks_removed"] == 0
    assert db("XLEN", "twin:chunks:changes") == stream_len
    assert check_layout(db).keys() == chunks.keys()

    # a chunk's own text finds it first, with score 1 (same text, same vector)
    target_id, target = next((k, f) for k, f in chunks.items() if f["doc_id"] == b"ines-redis-streams")
    hits = fol.search(target["text"].decode(), k=3)["hits"]
    assert hits[0]["chunk_id"] == target_id
    assert abs(hits[0]["score"] - 1.0) < 1e-4
    assert hits[0]["doc_id"] == "ines-redis-streams"
    # filters apply during the search
    hits = fol.search("bread flour starter kilometres", k=10, authors=["leo"])["hits"]
    assert hits and all(h["author"] == "leo" for h in hits)
    hits = fol.search("percentile values sorted", k=10, types=["code"])["hits"]
    assert hits and all(h["type"] == "code" for h in hits)
    assert len(hits) == sum(1 for f in chunks.values() if f["type"] == b"code") or len(hits) == 10
    hits = fol.search("redis", k=10, authors=["leo"], types=["code"])["hits"]
    assert hits == []

    # delete a document
    kv_ids = sorted(k for k, f in chunks.items() if f["doc_id"] == b"maya-kv-cache")
    rc, deleted, _ = rag_tool(url, "delete", "maya-kv-cache", check=0)
    assert deleted["deleted"] == [{"doc_id": "maya-kv-cache", "chunks": len(kv_ids)}]
    after = check_layout(db)
    assert sorted(after) == sorted(set(chunks) - set(kv_ids))
    assert db("EXISTS", "twin:doc:maya-kv-cache") == 0
    assert db("SISMEMBER", "twin:docs", "maya-kv-cache") == 0
    deletes = [e["chunk"] for _id, e in db.stream() if e["op"] == "delete"]
    assert sorted(deletes) == kv_ids
    rc, again, _ = rag_tool(url, "delete", "maya-kv-cache", check=1)
    assert again["errors"][0]["code"] == "not found"
    assert "maya-kv-cache" in again["errors"][0]["error"]

    # the follower saw the delete; a fresh replica loads the same set
    fol.sync()
    assert fol.ids() == sorted(after)
    stats = fol.ask("stats")
    assert stats["deletes"] == len(kv_ids)
    assert stats["loads"] == 1
    rc, res, _ = rag_tool(url, "search", "--k", "3", target["text"].decode(), check=0)
    assert res["index_size"] == len(after)
    assert res["results"][0]["hits"][0]["chunk_id"] == target_id
    # HNSW replicas answer the same for an exact-duplicate query
    rc, res, _ = rag_tool(url, "--index", "hnsw", "search", "--k", "3", target["text"].decode(), check=0)
    assert res["results"][0]["hits"][0]["chunk_id"] == target_id

    # re-ingesting brings the deleted document back, and only it
    rc, third, _ = rag_tool(url, "ingest", CORPUS, check=0)
    assert third["chunks_new"] == len(kv_ids)
    fol.sync()
    assert fol.ids() == sorted(check_layout(db))
    fol.stop()


def test_edited_document_replaces_changed_chunks(redis, tmp_path):
    url, db = redis
    doc = tmp_path / "notes.md"
    paragraphs = [f"Paragraph {i} talks about topic {i}. " + " ".join(f"word{i}x{j}" for j in range(60)) + "."
                  for i in range(6)]
    doc.write_text("---\nid: edited-doc\nauthor: ana\n---\n" + "\n\n".join(paragraphs) + "\n")
    fol = Follower(url)
    rc, first, _ = rag_tool(url, "--article-tokens", "100", "ingest", str(doc), check=0)
    n = first["chunks_new"]
    assert n >= 4
    paragraphs[3] = "Paragraph 3 was rewritten entirely with different words about gardening and tomatoes."
    doc.write_text("---\nid: edited-doc\nauthor: ana\n---\n" + "\n\n".join(paragraphs) + "\n")
    rc, second, _ = rag_tool(url, "--article-tokens", "100", "ingest", str(doc), check=0)
    item = second["items"][0]
    assert item["chunks_new"] >= 1 and item["chunks_removed"] >= 1 and item["chunks_unchanged"] >= 1
    assert item["chunks"] == item["chunks_new"] + item["chunks_unchanged"]
    chunks = check_layout(db)
    assert len(chunks) == item["chunks"]
    assert any(b"tomatoes" in f["text"] for f in chunks.values())
    assert not any(b"word3x10" in f["text"] for f in chunks.values())
    # changing the author replaces every chunk
    doc.write_text("---\nid: edited-doc\nauthor: maya\n---\n" + "\n\n".join(paragraphs) + "\n")
    rc, third, _ = rag_tool(url, "--article-tokens", "100", "ingest", str(doc), check=0)
    assert third["chunks_unchanged"] == 0 and third["chunks_removed"] == item["chunks"]
    chunks = check_layout(db)
    assert all(f["author"] == b"maya" for f in chunks.values())
    fol.sync()
    assert fol.ids() == sorted(chunks)
    hits = fol.search("tomatoes gardening", k=5, authors=["ana"])["hits"]
    assert hits == []
    fol.stop()


def test_bad_inputs_are_reported_and_others_go_on(redis, tmp_path):
    url, db = redis
    (tmp_path / "posts.jsonl").write_text(
        '{"text": "a good post about apples", "author": "ana", "type": "post"}\n'
        '{"text": "broken json"\n'
        '{"text": "typed wrong", "type": "poem"}\n'
        '{"text": "another good post about pears", "author": "ana", "type": "post"}\n')
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02binary\xff\xfe")
    (tmp_path / "latin1.md").write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e ".encode("latin-1") * 5)
    rc, rep, err = rag_tool(url, "ingest", str(tmp_path / "posts.jsonl"), str(tmp_path / "blob.txt"),
                            str(tmp_path / "latin1.md"), str(tmp_path / "missing.md"), check=1)
    assert rep["documents"] == 2
    assert rep["errors"] == 5
    errors = [i["error"] for i in rep["items"] if i["status"] != "ok"]
    assert f"{tmp_path}/posts.jsonl:2: not valid JSON" in errors[0]
    assert f"{tmp_path}/posts.jsonl:3" in errors[1] and "poem" in errors[1]
    assert f"{tmp_path}/blob.txt" in errors[2] and "binary" in errors[2]
    assert f"{tmp_path}/latin1.md" in errors[3] and "not UTF-8" in errors[3]
    assert f"{tmp_path}/missing.md" in errors[4]
    assert len(check_layout(db)) == 2


# ------------------------------------------------------------------------------------------------
# Redis failures

def test_redis_down_at_start(tmp_path):
    port = free_port()  # nothing listens there
    url = f"redis://127.0.0.1:{port}"
    rc, rep, err = rag_tool(url, "ingest", os.path.join(CORPUS, "sourdough.md"),
                            os.path.join(CORPUS, "trail-running.md"), check=1)
    assert rep["documents"] == 0 and rep["errors"] == 2
    for item in rep["items"]:
        assert item["status"] == "unavailable"
        assert f"127.0.0.1:{port}" in item["error"]
    rc, res, err = rag_tool(url, "--sync-timeout-ms", "1500", "search", "anything", check=2)
    assert "127.0.0.1" in res["error"]
    rc, res, err = rag_tool(url, "delete", "some-doc", check=1)
    assert res["errors"][0]["code"] == "unavailable"


def start_persistent_redis(port, directory):
    return Process(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
                    "--appendonly", "yes", "--appendfsync", "always", "--save", ""], name="redis-aof")


def test_redis_killed_mid_ingest(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(12):
        body = "\n\n".join(f"Document {i} paragraph {p}: " + " ".join(f"term{i}_{p}_{w}" for w in range(50)) + "."
                           for p in range(4))
        (docs / f"doc{i:02d}.md").write_text(f"---\nid: doc-{i:02d}\nauthor: ana\n---\n{body}\n")
    args = ["--article-tokens", "80"]
    # what a complete ingest stores, from `read` (no Redis)
    rc, read, _ = rag_tool("redis://127.0.0.1:1", *args, "read", str(docs), check=0)
    expected = sorted(c["id"] for d in read["documents"] for c in d["chunks"])
    assert len(expected) >= 24

    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    data = tmp_path / "redis"
    data.mkdir()
    server = start_persistent_redis(port, data)
    wait_port(port)
    fol = Follower(url)
    fol.sync()
    ingest = subprocess.Popen([binary("rag-tool"), "--redis", url, "--redis-timeout-ms", "1000",
                               "--delay-ms", "250", *args, "ingest", str(docs)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = 0
    while seen < 4:
        line = ingest.stderr.readline().decode()
        assert line, "ingest ended early"
        seen += line.startswith("ingest: [")
    server.stop(signal.SIGKILL)
    out, err = ingest.communicate(timeout=120)
    assert ingest.returncode == 1, err.decode()
    assert b"AddressSanitizer" not in err
    rep = json.loads(out)
    print("mid-ingest report:", {k: v for k, v in rep.items() if k != "items"}, [i["status"] for i in rep["items"]])
    assert 4 <= rep["documents"] < 12
    failed = [i for i in rep["items"] if i["status"] != "ok"]
    assert len(failed) == 12 - rep["documents"]
    assert all(i["status"] in ("unavailable", "timeout") for i in failed)
    assert all(f"127.0.0.1:{port}" in i["error"] for i in failed)

    server = start_persistent_redis(port, data)
    wait_port(port)
    db = Resp(port)
    stored = check_layout(db)  # whole documents only, stream and sets consistent
    done_docs = {i["doc_id"] for i in rep["items"] if i["status"] == "ok"}
    assert {f["doc_id"].decode() for f in stored.values()} >= done_docs

    rc, retry, _ = rag_tool(url, *args, "ingest", str(docs), check=0)
    assert retry["chunks_new"] + retry["chunks_unchanged"] == len(expected)
    assert retry["chunks_unchanged"] == len(stored)
    print("stored before retry", len(stored), "expected", len(expected), "retry", {k: v for k, v in retry.items() if k != "items"})
    final = check_layout(db)  # check_layout fails on any chunk added twice to the stream
    assert sorted(final) == expected
    # the follower lived through the outage and holds exactly what Redis holds
    fol.sync(60000)
    assert fol.ids() == expected
    assert fol.ask("stats")["errors"] >= 1
    fol.stop()
    db.close()
    server.stop()


# ------------------------------------------------------------------------------------------------
# URLs

PAGE = b"""<!doctype html><html><head><title>Local  Page</title><script>x()</script></head>
<body><nav>menu</nav><h1>Welcome</h1><p>Fetched over HTTP for the test.</p></body></html>"""


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send(self, status, ctype, body, extra=()):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        p = self.path
        if p == "/page.html":
            self.send(200, "text/html; charset=utf-8", PAGE)
        elif p == "/notes.txt":
            self.send(200, "text/plain", "plain notes\n\n\nwith   spaces".encode())
        elif p == "/moved":
            self.send(302, None, b"", [("Location", "/page.html")])
        elif p.startswith("/loop"):
            n = int(p[5:] or 0)
            self.send(302, None, b"", [("Location", f"/loop{n + 1}")])
        elif p == "/image.png":
            self.send(200, "image/png", b"\x89PNG\r\n\x1a\n")
        elif p == "/big.txt":
            self.send(200, "text/plain", b"x" * 300000)
        elif p == "/slow":
            time.sleep(3)
            self.send(200, "text/plain", b"late")
        else:
            self.send(404, "text/plain", b"no")


@pytest.fixture(scope="module")
def http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_urls(http_server):
    base = http_server
    rc, out, _ = rag_tool("redis://127.0.0.1:1", "--max-bytes", "100000", "--max-redirects", "3",
                          "--fetch-timeout-ms", "1000", "read",
                          f"{base}/page.html", f"{base}/notes.txt", f"{base}/moved", f"{base}/image.png",
                          f"{base}/big.txt", f"{base}/loop", f"{base}/slow", f"{base}/missing",
                          "ftp://127.0.0.1/x", check=1)
    docs = {d["source"]: d for d in out["documents"]}
    page = docs[f"{base}/page.html"]
    assert page["title"] == "Local Page"
    assert page["text"] == "# Welcome\n\nFetched over HTTP for the test."
    assert page["link"] == f"{base}/page.html"
    assert page["id"] == hashlib.sha256(f"{base}/page.html".encode()).hexdigest()[:32]
    assert docs[f"{base}/notes.txt"]["text"] == "plain notes\n\nwith spaces"
    assert docs[f"{base}/moved"]["title"] == "Local Page"  # one redirect is followed
    errors = {e["source"]: e for e in out["errors"]}
    assert "image/png" in errors[f"{base}/image.png"]["error"]
    assert "larger than 100000 bytes" in errors[f"{base}/big.txt"]["error"]
    assert "more than 3 redirects" in errors[f"{base}/loop"]["error"]
    assert errors[f"{base}/slow"]["code"] == "timeout"
    assert "HTTP 404" in errors[f"{base}/missing"]["error"]
    assert "http" in errors["ftp://127.0.0.1/x"]["error"]
    assert len(docs) == 3 and len(errors) == 6


# ------------------------------------------------------------------------------------------------
# the question list of the corpus (for retrieval-quality tests)

def test_questions_point_into_the_corpus(redis):
    url, db = redis
    with open(QUESTIONS) as f:
        questions = [json.loads(line) for line in f if line.strip()]
    assert len(questions) >= 50
    rc, read, _ = rag_tool(url, "read", CORPUS, check=0)
    docs = {d["id"]: d for d in read["documents"]}
    answer_chunks = []
    for q in questions:
        assert set(q) == {"question", "doc_id", "answer_text"}, q
        doc = docs.get(q["doc_id"])
        assert doc is not None, f"unknown doc_id {q['doc_id']}"
        assert q["answer_text"] in doc["text"], q
        holders = [c["id"] for c in doc["chunks"] if q["answer_text"] in c["text"]]
        assert holders, f"answer of {q['question']!r} is cut between chunks"
        answer_chunks.append(holders)
    # how well the model-less hashing encoder retrieves them (a figure, not a bound)
    rag_tool(url, "ingest", CORPUS, check=0)
    rc, res, _ = rag_tool(url, "search", "--k", "5", *[q["question"] for q in questions], check=0)
    top1 = top5 = 0
    for holders, r in zip(answer_chunks, res["results"]):
        ids = [h["chunk_id"] for h in r["hits"]]
        top1 += bool(ids) and ids[0] in holders
        top5 += any(i in holders for i in ids)
    print(f"hashing encoder on {len(questions)} questions: hit@1 {top1 / len(questions):.2f}, "
          f"hit@5 {top5 / len(questions):.2f}")
