#!/usr/bin/env python3
"""tests/deploy/check_manifests.py — offline checks of Twin's deployment files (deploy/docker,
deploy/compose, deploy/k8s) for what CI cannot run: the compose file through `docker-compose
config`, every kustomize overlay through `kustomize build`, the rendered objects against the
Kubernetes JSON schemas (kubernetes-validate, bundled, strict), then the facts that tie the
files to the code: env twins, ports, gRPC health names, probes against the drain, the HPA metric
against the prometheus-adapter rule and the engine's gauge, Dockerfile stages and build deps.
Facts about the services are read from their sources (main.c option tables), never restated.
check-manifests.sh installs the tools and runs this; it prints one PASS/FAIL line per check.
"""
import argparse
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

# ============================================================================================
# results
# ============================================================================================


class Checks:
    """Runs named checks; each returns a list of problems (empty = pass) or raises Skip."""

    def __init__(self):
        self.failed = []
        self.passed = []
        self.skipped = []

    def run(self, name, fn, *args):
        t0 = time.monotonic()
        try:
            problems = fn(*args)
        except Skip as s:
            self.skipped.append(name)
            print(f"SKIP {name}: {s}", flush=True)
            return
        except Exception as e:  # a crash in a check is a failure of that check, not of the run
            problems = [f"{type(e).__name__}: {e}"]
        took = f"({time.monotonic() - t0:.1f}s)"
        if problems:
            self.failed.append(name)
            print(f"FAIL {name} {took}", flush=True)
            for p in problems:
                print(f"     - {p}", flush=True)
        else:
            self.passed.append(name)
            print(f"PASS {name} {took}", flush=True)


class Skip(Exception):
    pass


def run_tool(cmd, cwd=None, env=None):
    """Runs cmd (a list); returns (rc, stdout, stderr)."""
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


# ============================================================================================
# facts from the sources
# ============================================================================================

# Where each program's option table and health service name live.
# Where each program's option table lives; its health name is a #define beside it.
PROGRAM_SOURCES = {
    "llm-svc": "llm-svc/server/main.c",
    "business-svc": "business-svc/server/main.c",
    "monitor-svc": "monitor-svc/main.c",
}
OPTION_RE = re.compile(
    r'\{\s*"([a-z0-9-]+)"\s*,\s*"([A-Z0-9_]+)"\s*,\s*TWIN_OPT_([A-Z]+)\s*,\s*("(?:[^"\\]|\\.)*"|[A-Za-z_]\w*)')
SERVICE_NAME_RE = re.compile(r'#define\s+\w*SERVICE_NAME\s+"(twin\.[A-Za-z0-9_.]+)"')
METRIC_RE = re.compile(r'"(llm_[a-z0-9_]+)"')


class Program:
    def __init__(self, name, options, health_name):
        self.name = name
        self.options = options          # flag -> (env, type, default or None)
        self.health_name = health_name  # full gRPC service name

    def env_names(self):
        return {env for env, _, _ in self.options.values()}

    def env_of(self, flag):
        return self.options[flag][0]

    def default_of(self, flag):
        return self.options[flag][2]

    def setting(self, env, flag):
        """Value of a flag's env twin in env (a dict), else the program's default."""
        name = self.env_of(flag)
        return env.get(name, self.default_of(flag))


def read_programs(root):
    programs = {}
    for name, rel in PROGRAM_SOURCES.items():
        path = os.path.join(root, rel)
        if not os.path.exists(path):
            raise RuntimeError(f"{rel}: missing (the checks read {name}'s flags from it)")
        options = {}
        for flag, env, typ, default in OPTION_RE.findall(open(path, encoding="utf-8").read()):
            # a default that is a macro (or NULL) is not known here
            options[flag] = (env, typ, default[1:-1] if default.startswith('"') else None)
        for needed in ("port", "http-port", "grace-period"):
            if needed not in options:
                raise RuntimeError(f"{name}: no --{needed} option found in {rel}")
        names = set()
        folder = os.path.dirname(path)
        for fn in sorted(os.listdir(folder)):
            if fn.endswith((".c", ".h")):
                names.update(SERVICE_NAME_RE.findall(open(os.path.join(folder, fn), encoding="utf-8").read()))
        if len(names) != 1:
            raise RuntimeError(f"{name}: want one #define ..._SERVICE_NAME \"twin...\" in {os.path.dirname(rel)}/, found {sorted(names)}")
        programs[name] = Program(name, options, names.pop())
    return programs


def read_llm_metrics(root):
    names = set()
    engine = os.path.join(root, "llm-svc", "engine")
    for fn in sorted(os.listdir(engine)):
        if fn.endswith(".c"):
            names.update(METRIC_RE.findall(open(os.path.join(engine, fn), encoding="utf-8").read()))
    return names


def twin_duration_s(text):
    """A Twin duration ("30s", "250ms", "1.5m", "500" = ms) in seconds."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        raise ValueError(f"'{text}' is not a duration")
    scale = {None: 0.001, "ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    return float(m.group(1)) * scale


def twin_size_bytes(text):
    """A Twin size ("2G", "1.5GiB", "512") in bytes, or None when it is not one (llm-svc reads
    "0.3", a number with a point and no unit, as a fraction)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    shifts = {"": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20,
              "g": 30, "gb": 30, "gib": 30, "t": 40, "tb": 40, "tib": 40}
    if not m or m.group(2).lower() not in shifts or ("." in m.group(1) and not m.group(2)):
        return None
    return int(float(m.group(1)) * (1 << shifts[m.group(2).lower()]))


def go_duration_s(text):
    """A compose duration ("45s", "1m30s") in seconds."""
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(h|m|s|ms|us)", str(text))
    if not parts or "".join(a + b for a, b in parts) != str(text).strip():
        raise ValueError(f"'{text}' is not a duration")
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    return sum(float(a) * scale[b] for a, b in parts)


# ============================================================================================
# Dockerfiles and .dockerignore
# ============================================================================================


class Stage:
    def __init__(self, name, base, index):
        self.name = name
        self.base = base
        self.index = index
        self.commands = []

    def cmds(self, kind):
        return [c for c in self.commands if c.cmd == kind]


def parse_dockerfile(path):
    import dockerfile
    commands = dockerfile.parse_file(path)
    global_args, stages = {}, []
    for c in commands:
        if c.cmd == "ARG" and not stages:
            k, _, v = c.value[0].partition("=")
            global_args[k] = v
        elif c.cmd == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                           lambda m: global_args.get(m.group(1) or m.group(2), ""), c.value[0])
            name = c.value[2] if len(c.value) >= 3 and c.value[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, image, len(stages)))
        elif stages:
            stages[-1].commands.append(c)
    return stages


def root_image(stages, stage):
    """The external image a stage is built on, following FROM <earlier stage>."""
    by_name = {s.name: s for s in stages}
    seen = set()
    while stage.base in by_name and stage.base not in seen:
        seen.add(stage.base)
        stage = by_name[stage.base]
    return stage.base


def glob_to_regex(pattern):
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pattern.find("]", i)
            if j < 0:
                out += re.escape(c)
            else:
                out += "[" + pattern[i + 1:j].replace("\\", "\\\\") + "]"
                i = j
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def read_dockerignore(path):
    rules = []
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = os.path.normpath(line[1:] if negate else line).lstrip("/")
        rules.append((negate, glob_to_regex(pat)))
    return rules


def ignored(rules, relpath):
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = relpath.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for negate, rx in rules:
        if any(rx.match(p) for p in prefixes):
            excluded = not negate
    return excluded


# ============================================================================================
# checks: Dockerfiles
# ============================================================================================

DEV_PACKAGE_RE = re.compile(r"(?<![\w.+-])[a-z0-9][a-z0-9.+-]*-dev(?![\w.+-])")
HEALTH_URL_RE = re.compile(r"http://127\.0\.0\.1:\$\{(\w+):-(\d+)\}/healthz")


def apt_install_list(stage):
    pkgs = []
    for c in stage.cmds("RUN"):
        text = " ".join(c.value)
        for m in re.finditer(r"apt-get install((?:\s+(?:-[-\w=]+|[a-z0-9][a-z0-9.+-]*)|\s*\\\s*)+)", text):
            pkgs += [w for w in m.group(1).replace("\\", " ").split() if not w.startswith("-")]
    return pkgs


def dpkg_owners(patterns):
    """{path: package} for every installed file matching one of the patterns (one dpkg call)."""
    if not patterns:
        return {}
    _, out, _ = run_tool(["dpkg-query", "-S", *sorted(set(patterns))])
    owners = {}
    for line in out.splitlines():
        pkgs, sep, path = line.partition(": /")
        if sep:
            owners["/" + path] = pkgs.split(",")[0].split(":")[0].strip()
    return owners


def package_depends(pkgs):
    """Every package that one of pkgs depends on directly (any alternative): from dpkg's status
    for installed packages (fast), from apt-cache for the others."""
    deps, seen = set(), set()
    rc, out, _ = run_tool(["dpkg-query", "-W", "-f", "${Package}\t${Depends}, ${Pre-Depends}\n", *pkgs])
    for line in out.splitlines():
        name, _, rest = line.partition("\t")
        seen.add(name)
        for alt in re.split(r"[,|]", rest):
            m = re.match(r"\s*([a-z0-9][a-z0-9.+-]*)", alt)
            if m:
                deps.add(m.group(1))
    others = [p for p in pkgs if p not in seen]
    if others:
        rc, out, _ = run_tool(["apt-cache", "depends", *others])
        deps |= {m.group(1) for m in re.finditer(r"Depends:\s*<?([a-z0-9][a-z0-9.+-]*)", out)}
    return deps


CMAKE_BUILTIN_PACKAGES = {"PkgConfig", "Threads", "CUDAToolkit", "CUDA", "OpenMP", "Python", "Python3"}


def cmake_lists(root):
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if not (rel == "." and (d.startswith("build") or d.startswith(".")))
                       and d not in ("models", "__pycache__")]
        if "CMakeLists.txt" in filenames:
            yield os.path.join(dirpath, "CMakeLists.txt")


def build_requirements(root):
    """(what, package) for each pkg-config module, CMake package and required program the
    build asks for (every CMakeLists.txt), resolved through this host's dpkg; what cannot be
    resolved here is returned apart."""
    wants = []  # (what, [file patterns that the providing package installs])
    for path in cmake_lists(root):
        text = open(path, encoding="utf-8").read()
        for args in re.findall(r"pkg_check_modules\(([^)]*)\)", text):
            words = args.split()
            for mod in [w for w in words[1:] if w not in ("REQUIRED", "QUIET", "IMPORTED_TARGET", "GLOBAL")]:
                rc, pcdir, _ = run_tool(["pkg-config", "--variable=pcfiledir", mod])
                pc = os.path.join(pcdir.strip(), mod + ".pc")
                wants.append((f"pkg-config {mod}", [pc, os.path.realpath(pc)] if rc == 0 else []))
        for name in re.findall(r"find_package\(\s*(\w+)[^)]*REQUIRED", text):
            if name not in CMAKE_BUILTIN_PACKAGES:
                wants.append((f"CMake package {name}", [f"*/{name}Config.cmake", f"*/{name.lower()}-config.cmake"]))
        for prog in re.findall(r"find_program\(\s*\w+\s+([\w.+-]+)[^)]*REQUIRED", text):
            wants.append((f"program {prog}", [f"/usr/bin/{prog}"]))
    owners = dpkg_owners([p for _, pats in wants for p in pats])
    reqs, unresolved = [], []
    for what, pats in wants:
        pkg = next((owners[f] for pat in pats for f in sorted(owners) if fnmatch.fnmatchcase(f, pat)), None)
        (reqs.append((what, pkg)) if pkg else unresolved.append(what))
    return reqs, unresolved


def check_dockerfiles(root, programs, ctx):
    problems = []
    ddir = os.path.join(root, "deploy", "docker")
    files = {"llm-svc.Dockerfile": None, "services.Dockerfile": None}
    for fn in files:
        path = os.path.join(ddir, fn)
        if not os.path.exists(path):
            problems.append(f"deploy/docker/{fn}: missing")
            continue
        files[fn] = parse_dockerfile(path)
    if problems:
        return problems
    ctx["dockerfiles"] = files

    for fn, stages in files.items():
        where = f"deploy/docker/{fn}"
        if len(stages) < 2:
            problems.append(f"{where}: not multi-stage ({len(stages)} stage)")
            continue
        build = stages[0]
        finals = [s for s in stages if s.cmds("ENTRYPOINT")]
        if not finals:
            problems.append(f"{where}: no stage with an ENTRYPOINT")
        # base images
        if fn == "llm-svc.Dockerfile":
            m = re.fullmatch(r"nvidia/cuda:([0-9.]+)-devel-(ubuntu2[24]\.04)", build.base)
            if not m:
                problems.append(f"{where}: build stage FROM {build.base}, want nvidia/cuda:<ver>-devel-ubuntu24.04|22.04")
            for s in finals:
                want = f"nvidia/cuda:{m.group(1)}-runtime-{m.group(2)}" if m else "nvidia/cuda runtime"
                if root_image(stages, s) != want:
                    problems.append(f"{where}: stage {s.name} runs on {root_image(stages, s)}, want {want} (same CUDA and Ubuntu as the build)")
        else:
            if build.base != "debian:bookworm":
                problems.append(f"{where}: build stage FROM {build.base}, want debian:bookworm")
            for s in finals:
                if root_image(stages, s) != "debian:bookworm-slim":
                    problems.append(f"{where}: stage {s.name} runs on {root_image(stages, s)}, want debian:bookworm-slim")
        # final stages: non-root, runtime libraries only, health check on /healthz
        by_name = {s.name: s for s in stages}
        for s in finals:
            chain, cur = [], s
            while cur is not None:
                chain.append(cur)
                cur = by_name.get(cur.base)
            users = [c.value[0] for c in s.cmds("USER")]
            if not users or users[-1].split(":")[0] in ("0", "root"):
                problems.append(f"{where}: stage {s.name} does not switch to a non-root USER")
            elif users[-1].split(":")[0] != "10001":
                problems.append(f"{where}: stage {s.name} runs as {users[-1]}, the k8s pods run as 10001")
            for st in chain:
                if st is build:
                    continue
                for c in st.cmds("RUN"):
                    dev = DEV_PACKAGE_RE.findall(" ".join(c.value))
                    if dev:
                        problems.append(f"{where}: runtime stage {st.name} installs {dev} (line {c.start_line})")
            program = s.cmds("ENTRYPOINT")[-1].value[0]
            ctx.setdefault("stage_program", {})[(fn, s.name)] = program
            if program not in programs:
                continue
            prog = programs[program]
            hc = s.cmds("HEALTHCHECK")
            if not hc:
                problems.append(f"{where}: stage {s.name} ({program}) has no HEALTHCHECK")
            else:
                m = HEALTH_URL_RE.search(" ".join(hc[-1].value))
                http_env, http_default = prog.env_of("http-port"), prog.default_of("http-port")
                if not m:
                    problems.append(f"{where}: stage {s.name}: HEALTHCHECK does not GET http://127.0.0.1:${{{http_env}:-{http_default}}}/healthz")
                elif (m.group(1), m.group(2)) != (http_env, http_default):
                    problems.append(f"{where}: stage {s.name}: HEALTHCHECK uses ${{{m.group(1)}:-{m.group(2)}}}, {program}'s HTTP port is ${{{http_env}:-{http_default}}}")
            exposed = {v.split("/")[0] for c in s.cmds("EXPOSE") for v in c.value}
            for flag in ("port", "http-port"):
                if prog.default_of(flag) not in exposed:
                    problems.append(f"{where}: stage {s.name} does not EXPOSE {program}'s --{flag} {prog.default_of(flag)}")
            for c in s.cmds("ENV"):
                names = c.value[0::2]
                unknown = [n for n in names if n.isupper() and n.split("_")[0] in ("LLM", "BUSINESS", "MONITOR")
                           and n not in prog.env_names()]
                if unknown:
                    problems.append(f"{where}: stage {s.name} sets {unknown}, not env twins of {program}")

        # sources copied from the build context exist and pass the .dockerignore
        ign_path = os.path.join(ddir, fn + ".dockerignore")
        if not os.path.exists(ign_path):
            problems.append(f"{where}.dockerignore: missing")
            continue
        rules = read_dockerignore(ign_path)
        for s in stages:
            for c in s.cmds("COPY") + s.cmds("ADD"):
                if any(f.startswith("--from") for f in c.flags):
                    continue
                for src in c.value[:-1]:
                    rel = os.path.normpath(src).lstrip("/")
                    if rel == ".":
                        continue
                    if not os.path.exists(os.path.join(root, rel)):
                        problems.append(f"{where}: COPY {src}: not in the repository")
                    elif ignored(rules, rel):
                        problems.append(f"{where}: COPY {src}: excluded by {fn}.dockerignore")
        for rel in ("CMakeLists.txt", "cmake/TwinLibrary.cmake", "common/log.c", "proto",
                    "llm-svc/server/main.c", "tests/CMakeLists.txt",
                    "deploy/docker/runtime-packages.sh", "deploy/docker/install-runtime-packages.sh"):
            if os.path.exists(os.path.join(root, rel)) and ignored(rules, rel):
                problems.append(f"{fn}.dockerignore excludes {rel}, which the build needs")
        for rel in ("models/llm/config.json", "build/CMakeCache.txt", "build-cpu/bin/llm-svc",
                    ".git/HEAD", "run/redis.pid", "tests/python/__pycache__/x.pyc"):
            if not ignored(rules, rel):
                problems.append(f"{fn}.dockerignore lets {rel} into the build context")

    # both ignore files say the same (apart from their heads)
    bodies = set()
    for fn in files:
        p = os.path.join(ddir, fn + ".dockerignore")
        if os.path.exists(p):
            bodies.add(tuple(l for l in open(p, encoding="utf-8").read().splitlines()
                             if l.strip() and not l.startswith("#")))
    if len(bodies) > 1:
        problems.append("llm-svc.Dockerfile.dockerignore and services.Dockerfile.dockerignore differ")
    return problems


def check_build_deps(root, ctx):
    if "dockerfiles" not in ctx:
        raise Skip("the Dockerfiles did not parse")
    if not shutil.which("dpkg-query") or not shutil.which("pkg-config"):
        raise Skip("needs dpkg-query and pkg-config to map CMake's modules to packages")
    reqs, unresolved = build_requirements(root)
    if not reqs:
        raise Skip("none of CMake's pkg-config modules is installed here (run deploy/install-deps.sh)")
    problems = []
    for fn, stages in ctx["dockerfiles"].items():
        listed = set(apt_install_list(stages[0]))
        provided = set(listed)
        if any(pkg not in listed for _, pkg in reqs):
            provided |= package_depends(sorted(listed))  # e.g. libopenblas-dev -> libopenblas-pthread-dev
        for what, pkg in reqs:
            if pkg not in provided:
                problems.append(f"deploy/docker/{fn}: build stage lacks {pkg} ({what}, asked for by CMake)")
    if unresolved:
        print(f"     (not mapped on this host: {', '.join(sorted(set(unresolved)))})")
    return problems


def check_runtime_packages_script(root):
    script = os.path.join(root, "deploy", "docker", "runtime-packages.sh")
    exe = shutil.which("sh")
    if not shutil.which("dpkg-query") or not shutil.which("ldd"):
        raise Skip("needs dpkg-query and ldd")
    problems = []
    rc, out, err = run_tool(["bash", script, os.path.realpath(exe)])
    if rc != 0:
        problems.append(f"runtime-packages.sh {exe}: exit {rc}: {err.strip()}")
    elif "libc6" not in out.split():
        problems.append(f"runtime-packages.sh {exe}: libc6 not among {out.split()}")
    rc, _, err = run_tool(["bash", script, "/nonexistent/program"])
    if rc == 0:
        problems.append("runtime-packages.sh accepted a missing executable")
    for sh in ("runtime-packages.sh", "install-runtime-packages.sh"):
        rc, _, err = run_tool(["bash", "-n", os.path.join(root, "deploy", "docker", sh)])
        if rc != 0:
            problems.append(f"{sh}: {err.strip()}")
    return problems


# ============================================================================================
# checks: docker compose
# ============================================================================================


def compose_cmd(compose, root, *args):
    f = os.path.join(root, "deploy", "compose", "docker-compose.yml")
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    return run_tool(shlex.split(compose) + ["-f", f, *args], env=env)


def check_compose_config(root, compose, ctx):
    problems = []
    for profile in ("cpu", "gpu"):
        args = ["--profile", profile, "config", "-q"]
        rc, _, err = compose_cmd(compose, root, *args)
        if rc != 0:
            problems.append(f"{compose} {' '.join(args)}: exit {rc}: {err.strip()}")
    rc, out, err = compose_cmd(compose, root, "config")
    if rc != 0:
        problems.append(f"{compose} config: exit {rc}: {err.strip()}")
    else:
        ctx["compose"] = yaml.safe_load(out)
    return problems


def as_env(env):
    if env is None:
        return {}
    if isinstance(env, list):
        return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def published_targets(ports):
    out = set()
    for p in ports or []:
        if isinstance(p, dict):
            out.add(str(p.get("target")))
        else:
            out.add(str(p).split("/")[0].split(":")[-1])
    return out


def compose_program(svc, ctx):
    """The program a compose service runs: its build stage's ENTRYPOINT."""
    build = svc.get("build")
    if not build:
        return None
    fn = os.path.basename(build.get("dockerfile", "Dockerfile"))
    stages = ctx.get("dockerfiles", {}).get(fn)
    if not stages:
        return None
    target = build.get("target") or stages[-1].name
    return ctx.get("stage_program", {}).get((fn, target))


def check_compose_semantics(root, programs, ctx):
    if "compose" not in ctx:
        raise Skip("docker-compose config failed")
    cfg = ctx["compose"]
    services = cfg.get("services", {})
    volumes = cfg.get("volumes", {}) or {}
    problems = []

    def active(profiles):
        return {n for n, s in services.items() if not s.get("profiles") or set(s["profiles"]) & profiles}

    def gpu_devices(s):
        devs = (((s.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
        return [d for d in devs if "gpu" in (d.get("capabilities") or [])]

    def names_on_network(names):
        out = set(names)
        for n in names:
            for net in (services[n].get("networks") or {}).values():
                out |= set((net or {}).get("aliases") or [])
        return out

    for prof in ("cpu", "gpu"):
        on = active({prof})
        llm = [n for n in on if compose_program(services[n], ctx) == "llm-svc"]
        if len(llm) != 1:
            problems.append(f"profile {prof}: {len(llm)} llm-svc services active ({llm}), want 1")
            continue
        gpus = {n: gpu_devices(services[n]) for n in on}
        if prof == "cpu":
            for n, d in gpus.items():
                if d:
                    problems.append(f"profile cpu: {n} reserves a GPU: `--profile cpu up` would need one")
            be = as_env(services[llm[0]].get("environment")).get("LLM_BACKEND")
            if be != "cpu":
                problems.append(f"profile cpu: {llm[0]} has LLM_BACKEND={be}, want cpu")
        else:
            if not gpus[llm[0]]:
                problems.append(f"profile gpu: {llm[0]} reserves no device with capabilities [gpu]")
        for n in sorted(on):
            for dep, spec in (services[n].get("depends_on") or {}).items():
                if dep not in on:
                    problems.append(f"profile {prof}: {n} depends on {dep}, which this profile does not start")
        reachable = names_on_network(on)
        for n in on:
            target = as_env(services[n].get("environment")).get("BUSINESS_LLM_TARGET")
            if target:
                host = re.sub(r"^dns:///", "", target).rsplit(":", 1)[0]
                if host not in reachable:
                    problems.append(f"profile {prof}: {n}'s BUSINESS_LLM_TARGET host {host} is no service or alias")
        business = [n for n in on if compose_program(services[n], ctx) == "business-svc"]
        for b in business:
            deps = services[b].get("depends_on") or {}
            if llm[0] not in deps:
                problems.append(f"profile {prof}: {b} does not wait for {llm[0]}")

    for n, s in services.items():
        for dep, spec in (s.get("depends_on") or {}).items():
            if dep not in services:
                problems.append(f"{n}: depends on unknown service {dep}")
                continue
            cond = spec.get("condition") if isinstance(spec, dict) else None
            if cond != "service_healthy":
                problems.append(f"{n}: depends_on {dep} with condition {cond}, want service_healthy")
            if not services[dep].get("healthcheck"):
                problems.append(f"{n}: waits for {dep} to be healthy, but {dep} has no healthcheck")
        for v in s.get("volumes") or []:
            src = v.get("source") if isinstance(v, dict) else str(v).split(":")[0]
            typ = v.get("type") if isinstance(v, dict) else ("bind" if src.startswith(("/", ".")) else "volume")
            if typ == "bind":
                problems.append(f"{n}: bind-mounts {src}; use a named volume")
            elif src not in volumes:
                problems.append(f"{n}: volume {src} is not declared under volumes:")

        program = compose_program(s, ctx)
        if program in programs:
            prog = programs[program]
            env = as_env(s.get("environment"))
            unknown = sorted(k for k in env if k not in prog.env_names())
            if unknown:
                problems.append(f"{n}: {unknown} are not env twins of {program} (see {PROGRAM_SOURCES[program]})")
            ports = published_targets(s.get("ports"))
            for flag in ("port", "http-port"):
                val = prog.setting(env, flag)
                if val not in ports:
                    problems.append(f"{n}: {program} listens on {val} (--{flag}), not published ({sorted(ports)})")
            hc = s.get("healthcheck") or {}
            test = " ".join(hc.get("test") or []) if isinstance(hc.get("test"), list) else str(hc.get("test", ""))
            want = f"http://127.0.0.1:{prog.setting(env, 'http-port')}/healthz"
            if want not in test:
                problems.append(f"{n}: healthcheck does not GET {want} ({test!r})")
            grace = twin_duration_s(prog.setting(env, "grace-period"))
            stop = go_duration_s(s.get("stop_grace_period", "10s"))
            if stop < grace + 5:
                problems.append(f"{n}: stop_grace_period {stop:g}s does not cover the {grace:g}s drain + 5s")
            if program == "llm-svc" and env.get("LLM_BACKEND") == "cpu" \
                    and twin_size_bytes(prog.setting(env, "kv-cache")) is None:
                problems.append(f"{n}: LLM_KV_CACHE={prog.setting(env, 'kv-cache')} on the CPU is a fraction of the host's free memory; give bytes")
            if program == "llm-svc":
                model = env.get("LLM_MODEL", "")
                mounts = [(v.get("target") if isinstance(v, dict) else str(v).split(":")[1])
                          for v in s.get("volumes") or []]
                if not any(model.startswith(m.rstrip("/") + "/") for m in mounts if m):
                    problems.append(f"{n}: LLM_MODEL={model} is not inside a mounted volume ({mounts})")

    redis = services.get("redis")
    if not redis:
        problems.append("no redis service")
    else:
        cmd = redis.get("command") or []
        cmd = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
        if not re.search(r"--appendonly\s+yes", cmd):
            problems.append(f"redis: AOF is off (command {cmd!r})")
        data = [v for v in redis.get("volumes") or []
                if (v.get("target") if isinstance(v, dict) else str(v).split(":")[1]) == "/data"]
        if not data:
            problems.append("redis: /data is not on a named volume")
        if not redis.get("healthcheck"):
            problems.append("redis: no healthcheck")
    for v in ("models",):
        if v not in volumes:
            problems.append(f"no named volume {v}")
    return problems


# ============================================================================================
# checks: kustomize and Kubernetes
# ============================================================================================

K8S_VERSIONS = ("1.27", None)  # the first release with GA gRPC probes, and the newest schemas
NAMESPACED_SKIP = {"Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding"}


def kustomize_build(kustomize, path):
    rc, out, err = run_tool(shlex.split(kustomize) + [path])
    if rc != 0:
        return None, err.strip() or out.strip()
    return [d for d in yaml.safe_load_all(out) if d], None


def variant_dirs(root, tmp):
    """name -> kustomization directory of every variant the checks render."""
    k8s = os.path.join(root, "deploy", "k8s")
    dirs = {}
    overlays = os.path.join(k8s, "overlays")
    for name in sorted(os.listdir(overlays)):
        if os.path.exists(os.path.join(overlays, name, "kustomization.yaml")):
            dirs[name] = os.path.join(overlays, name)
    comp = os.path.join(k8s, "components", "external-redis")
    if "prod" in dirs and os.path.isdir(comp):
        d = os.path.join(tmp, "prod-external-redis")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "kustomization.yaml"), "w") as f:
            yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                            "resources": [os.path.relpath(dirs["prod"], d)],
                            "components": [os.path.relpath(comp, d)]}, f)
        dirs["prod+external-redis"] = d
    mon = os.path.join(k8s, "monitoring")
    if os.path.exists(os.path.join(mon, "kustomization.yaml")):
        dirs["monitoring"] = mon
    return dirs


def check_kustomize(kustomize, name, path, ctx):
    docs, err = kustomize_build(kustomize, path)
    if err:
        return [f"{kustomize} {os.path.relpath(path)}: {err}"]
    if not docs:
        return [f"{kustomize} {os.path.relpath(path)}: rendered nothing"]
    ctx.setdefault("rendered", {})[name] = docs
    return []


def check_schema(name, ctx):
    docs = ctx.get("rendered", {}).get(name)
    if docs is None:
        raise Skip("not rendered")
    import kubernetes_validate
    from kubernetes_validate import utils as kv
    problems = []
    for version in K8S_VERSIONS:
        v = version or kv.latest_version()
        for d in docs:
            what = f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
            try:
                kubernetes_validate.validate(d, v, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.append(f"k8s {v}: {what}: {path}: {e.message}")
            except kv.SchemaNotFoundError:
                problems.append(f"k8s {v}: {what}: no schema for {d.get('apiVersion')} {d.get('kind')}")
    return problems


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def quantity(q):
    """A Kubernetes quantity as a float (enough to compare small numbers)."""
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(q))
    if not m:
        raise ValueError(f"bad quantity {q}")
    mult = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}[m.group(2)]
    return float(m.group(1)) * mult


def prestop_seconds(container):
    pre = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in pre:
        return float(pre["sleep"].get("seconds", 0))
    cmd = (pre.get("exec") or {}).get("command") or []
    m = re.search(r"\bsleep\s+([0-9.]+)", " ".join(cmd))
    return float(m.group(1)) if m else None


# What each variant must show beyond the common rules (the deployment brief).
VARIANT_RULES = {
    "dev": {"gpu": False, "backend": "cpu", "llm_hpa": False},
    "prod": {"gpu": True, "backend": "cuda", "llm_hpa": True, "models_rwx": True},
    "prod+external-redis": {"gpu": True, "backend": "cuda", "llm_hpa": True, "external_redis": True},
}


def check_k8s_semantics(name, programs, metrics, ctx):
    docs = ctx.get("rendered", {}).get(name)
    if docs is None:
        raise Skip("not rendered")
    rules = VARIANT_RULES.get(name, {})
    problems = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    get = lambda kind, n: by_kind.get(kind, {}).get(n)  # noqa: E731
    workloads = list(by_kind.get("Deployment", {}).values()) + list(by_kind.get("StatefulSet", {}).values())
    configmaps = by_kind.get("ConfigMap", {})
    services = by_kind.get("Service", {})

    # namespace
    nss = list(by_kind.get("Namespace", {}))
    if len(nss) != 1:
        problems.append(f"{len(nss)} Namespace objects, want 1")
    else:
        for d in docs:
            if d["kind"] not in NAMESPACED_SKIP and d["metadata"].get("namespace") != nss[0]:
                problems.append(f"{d['kind']}/{d['metadata']['name']} is in namespace {d['metadata'].get('namespace')}, not {nss[0]}")

    def pod_labels(w):
        return ((w["spec"]["template"].get("metadata") or {}).get("labels")) or {}

    def container_env(c):
        env = {}
        required_secrets = []
        for ref in c.get("envFrom") or []:
            if "configMapRef" in ref:
                cm = configmaps.get(ref["configMapRef"]["name"])
                if cm is None:
                    problems.append(f"container {c['name']}: ConfigMap {ref['configMapRef']['name']} is not rendered")
                else:
                    env.update(cm.get("data") or {})
            if "secretRef" in ref and not ref["secretRef"].get("optional", False):
                required_secrets.append(ref["secretRef"]["name"])
        for e in c.get("env") or []:
            env[e["name"]] = e.get("value", "")
        return env, required_secrets

    twin = {}  # program -> (workload, container, env, required secrets)
    for w in workloads:
        for c in w["spec"]["template"]["spec"]["containers"]:
            prog_name = c["image"].split("@")[0].rsplit(":", 1)[0].rsplit("/", 1)[-1]
            if prog_name in programs:
                env, secrets = container_env(c)
                twin[prog_name] = (w, c, env, secrets)
    for p in programs:
        if p not in twin:
            problems.append(f"no workload runs {p}")

    for pname, (w, c, env, secrets) in twin.items():
        prog = programs[pname]
        where = f"{w['kind']}/{w['metadata']['name']}"
        pod = w["spec"]["template"]["spec"]
        unknown = sorted(k for k in env if k not in prog.env_names())
        if unknown:
            problems.append(f"{where}: {unknown} are not env twins of {pname}")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
        grpc_port = int(prog.setting(env, "port"))
        http_port = int(prog.setting(env, "http-port"))
        if ports.get("grpc") != grpc_port:
            problems.append(f"{where}: container port grpc is {ports.get('grpc')}, {pname} listens on {grpc_port}")
        if http_port not in ports.values():
            problems.append(f"{where}: no container port for {pname}'s HTTP port {http_port}")
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = c.get(kind)
            if probe is None:
                if kind != "startupProbe":
                    problems.append(f"{where}: no {kind}")
                continue
            g = probe.get("grpc")
            if not g:
                problems.append(f"{where}: {kind} is not a grpc probe")
                continue
            if g.get("port") != grpc_port:
                problems.append(f"{where}: {kind} probes port {g.get('port')}, gRPC is on {grpc_port}")
            if g.get("service") != prog.health_name:
                problems.append(f"{where}: {kind} asks for service {g.get('service')!r}, {pname} reports {prog.health_name!r}")
        grace = twin_duration_s(prog.setting(env, "grace-period"))
        pre = prestop_seconds(c)
        tgps = pod.get("terminationGracePeriodSeconds", 30)
        if pre is None:
            problems.append(f"{where}: no preStop sleep (endpoints would still route to a stopping pod)")
            pre = 0
        if tgps < pre + grace + 5:
            problems.append(f"{where}: terminationGracePeriodSeconds {tgps} < preStop {pre:g}s + "
                            f"{prog.env_of('grace-period')} {grace:g}s + 5s")
        live = c.get("livenessProbe") or {}
        window = live.get("periodSeconds", 10) * live.get("failureThreshold", 3)
        if live and window <= grace:
            problems.append(f"{where}: liveness gives up after {window}s, inside the {grace:g}s drain "
                            "(health is NOT_SERVING while draining)")
        if pname == "llm-svc" and not c.get("startupProbe"):
            problems.append(f"{where}: no startupProbe to cover model loading")
        sc = {**(pod.get("securityContext") or {}), **(c.get("securityContext") or {})}
        if not sc.get("runAsNonRoot"):
            problems.append(f"{where}: runAsNonRoot is not set")
        if sc.get("runAsUser") not in (None, 10001):
            problems.append(f"{where}: runAsUser {sc.get('runAsUser')}, the images' user is 10001")
        res = c.get("resources") or {}
        if "cpu" not in (res.get("requests") or {}) or "memory" not in (res.get("requests") or {}):
            problems.append(f"{where}: no cpu/memory requests")
        ann = (w["spec"]["template"].get("metadata") or {}).get("annotations") or {}
        if ann.get("prometheus.io/port") not in (None, str(http_port)):
            problems.append(f"{where}: prometheus.io/port {ann.get('prometheus.io/port')} is not the HTTP port {http_port}")
        if pname in ("llm-svc", "business-svc"):
            vols = {v["name"]: v for v in pod.get("volumes") or []}
            mounts = [m for m in c.get("volumeMounts") or [] if m["mountPath"] == "/models"]
            if not mounts:
                problems.append(f"{where}: the models volume is not mounted at /models")
            else:
                claim = (vols.get(mounts[0]["name"], {}).get("persistentVolumeClaim") or {}).get("claimName")
                if not claim or not get("PersistentVolumeClaim", claim):
                    problems.append(f"{where}: /models is not a rendered PersistentVolumeClaim ({claim})")
                if not mounts[0].get("readOnly"):
                    problems.append(f"{where}: /models is mounted read-write")
        if pname == "llm-svc":
            model = env.get("LLM_MODEL", "")
            if not model.startswith("/models/") and not model.startswith("hf://"):
                problems.append(f"{where}: LLM_MODEL={model!r} is not under /models")
            gpu = quantity(((res.get("limits") or {}).get("nvidia.com/gpu")) or 0)
            if rules.get("gpu") is True and gpu != 1:
                problems.append(f"{where}: limits nvidia.com/gpu is {gpu:g}, want 1")
            if rules.get("gpu") is False and gpu:
                problems.append(f"{where}: asks for nvidia.com/gpu in a CPU-only variant")
            if rules.get("backend") and env.get("LLM_BACKEND") != rules["backend"]:
                problems.append(f"{where}: LLM_BACKEND={env.get('LLM_BACKEND')}, want {rules['backend']}")
            if not gpu:
                # CPU backend: the KV cache lives in the pod's memory
                kv = prog.setting(env, "kv-cache")
                kv_bytes = twin_size_bytes(kv)
                limit = (res.get("limits") or {}).get("memory")
                if kv_bytes is None:
                    problems.append(f"{where}: LLM_KV_CACHE={kv} is a fraction of the node's free memory on the CPU; give bytes")
                elif limit and kv_bytes >= quantity(limit):
                    problems.append(f"{where}: LLM_KV_CACHE={kv} does not fit the memory limit {limit}")

    # every Service selects a workload and points at its named ports
    for sname, s in services.items():
        sel = s["spec"].get("selector") or {}
        targets = [w for w in workloads if labels_match(sel, pod_labels(w))]
        if not targets:
            problems.append(f"Service/{sname}: selector {sel} matches no workload")
            continue
        cports = {}
        for c in targets[0]["spec"]["template"]["spec"]["containers"]:
            for p in c.get("ports") or []:
                cports[p.get("name")] = p["containerPort"]
        for p in s["spec"].get("ports") or []:
            tp = p.get("targetPort", p["port"])
            if (isinstance(tp, str) and tp not in cports) or (isinstance(tp, int) and tp not in cports.values()):
                problems.append(f"Service/{sname}: targetPort {tp} is no container port of {targets[0]['metadata']['name']}")

    def service_for(host, port, workload):
        s = services.get(host.split(".")[0])
        if s is None:
            return None, f"no Service {host}"
        if not labels_match(s["spec"].get("selector"), pod_labels(workload)):
            return s, f"Service {host} does not select {workload['metadata']['name']}"
        if port not in [p["port"] for p in s["spec"].get("ports") or []]:
            return s, f"Service {host} has no port {port}"
        return s, None

    # business-svc -> llm-svc through a headless Service
    if "business-svc" in twin and "llm-svc" in twin:
        target = twin["business-svc"][2].get("BUSINESS_LLM_TARGET", "")
        m = re.fullmatch(r"dns:///([a-z0-9.-]+):([0-9]+)", target)
        if not m:
            problems.append(f"BUSINESS_LLM_TARGET {target!r} is not dns:///<service>:<port>")
        else:
            s, err = service_for(m.group(1), int(m.group(2)), twin["llm-svc"][0])
            if err:
                problems.append(f"BUSINESS_LLM_TARGET {target}: {err}")
            elif s["spec"].get("clusterIP") != "None":
                problems.append(f"Service/{s['metadata']['name']} is not headless (clusterIP: None): "
                                "dns:/// would see one virtual IP and never balance")
    # Redis: in-cluster StatefulSet, or an external URL from a required Secret
    redis_sts = get("StatefulSet", "redis")
    for pname in ("business-svc", "monitor-svc"):
        if pname not in twin:
            continue
        env, secrets = twin[pname][2], twin[pname][3]
        if rules.get("external_redis"):
            if redis_sts:
                problems.append("external Redis variant still renders the redis StatefulSet")
            if "twin-redis" not in secrets:
                problems.append(f"{pname}: external Redis, but the Secret twin-redis is optional")
            continue
        m = re.fullmatch(r"rediss?://(?:[^@/]*@)?([a-z0-9.-]+):([0-9]+)(?:/.*)?", env.get("REDIS_URL", ""))
        if not m:
            problems.append(f"{pname}: REDIS_URL {env.get('REDIS_URL')!r} is not redis://host:port")
        elif not redis_sts:
            problems.append(f"{pname}: REDIS_URL {env.get('REDIS_URL')} but no redis StatefulSet")
        else:
            _, err = service_for(m.group(1), int(m.group(2)), redis_sts)
            if err:
                problems.append(f"{pname}: REDIS_URL {env.get('REDIS_URL')}: {err}")
    if redis_sts:
        c = redis_sts["spec"]["template"]["spec"]["containers"][0]
        args = " ".join((c.get("command") or []) + (c.get("args") or []))
        if not re.search(r"--appendonly\s+yes", args):
            problems.append("StatefulSet/redis: AOF is off")
        claims = [t["metadata"]["name"] for t in redis_sts["spec"].get("volumeClaimTemplates") or []]
        if not any(m["name"] in claims and m["mountPath"] == "/data" for m in c.get("volumeMounts") or []):
            problems.append("StatefulSet/redis: /data is not on a volumeClaimTemplate")
        gov = services.get(redis_sts["spec"].get("serviceName"))
        if not gov or gov["spec"].get("clusterIP") != "None":
            problems.append("StatefulSet/redis: serviceName is not a rendered headless Service")

    # HPAs
    hpas = by_kind.get("HorizontalPodAutoscaler", {})
    for hname, h in hpas.items():
        ref = h["spec"]["scaleTargetRef"]
        w = get(ref["kind"], ref["name"])
        if w is None:
            problems.append(f"HPA/{hname}: target {ref['kind']}/{ref['name']} is not rendered")
            continue
        lo, hi = h["spec"].get("minReplicas", 1), h["spec"]["maxReplicas"]
        if not lo <= w["spec"].get("replicas", 1) <= hi:
            problems.append(f"HPA/{hname}: {ref['name']} starts with {w['spec'].get('replicas', 1)} replicas, outside [{lo}, {hi}]")
        for m in h["spec"].get("metrics") or []:
            if m["type"] == "Resource" and m["resource"]["name"] == "cpu":
                for c in w["spec"]["template"]["spec"]["containers"]:
                    if "cpu" not in ((c.get("resources") or {}).get("requests") or {}):
                        problems.append(f"HPA/{hname}: scales on CPU but container {c['name']} requests no cpu")
            if m["type"] == "Pods":
                metric = m["pods"]["metric"]["name"]
                if metric not in metrics:
                    problems.append(f"HPA/{hname}: metric {metric} is not exported by llm-svc/engine")
                if metric not in ctx.get("adapter_metrics", set()):
                    problems.append(f"HPA/{hname}: no prometheus-adapter rule in deploy/k8s/monitoring exposes {metric}")
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"]: h for h in hpas.values()}
    if "business-svc" in twin:
        h = hpa_targets.get(twin["business-svc"][0]["metadata"]["name"])
        if not h or not any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in h["spec"]["metrics"]):
            problems.append("no CPU HPA for business-svc")
    if "llm-svc" in twin and "llm_hpa" in rules:
        h = hpa_targets.get(twin["llm-svc"][0]["metadata"]["name"])
        has = bool(h) and any(m["type"] == "Pods" and m["pods"]["metric"]["name"] == "llm_num_requests_waiting"
                              for m in h["spec"]["metrics"])
        if rules["llm_hpa"] and not has:
            problems.append("no HPA for llm-svc on the Pods metric llm_num_requests_waiting")
        if not rules["llm_hpa"] and h:
            problems.append("an llm-svc HPA in a variant without a custom metrics API")

    # PDBs
    pdbs = by_kind.get("PodDisruptionBudget", {})
    for pname in ("llm-svc", "business-svc"):
        if pname in twin and not any(labels_match((p["spec"].get("selector") or {}).get("matchLabels"),
                                                  pod_labels(twin[pname][0])) for p in pdbs.values()):
            problems.append(f"no PodDisruptionBudget selects {pname}")
    for pname, p in pdbs.items():
        sel = (p["spec"].get("selector") or {}).get("matchLabels")
        ws = [w for w in workloads if labels_match(sel, pod_labels(w))]
        if not ws:
            problems.append(f"PDB/{pname}: selects no workload")
            continue
        reps = ws[0]["spec"].get("replicas", 1)
        if isinstance(p["spec"].get("minAvailable"), int) and p["spec"]["minAvailable"] >= reps:
            problems.append(f"PDB/{pname}: minAvailable {p['spec']['minAvailable']} blocks every drain of {reps} replicas")
        if p["spec"].get("maxUnavailable") in (0, "0%"):
            problems.append(f"PDB/{pname}: maxUnavailable 0 blocks every drain")

    # models volume
    pvc = get("PersistentVolumeClaim", "models")
    if not pvc:
        problems.append("no PersistentVolumeClaim models")
    elif rules.get("models_rwx") and "ReadWriteMany" not in pvc["spec"].get("accessModes", []):
        problems.append("PVC/models is not ReadWriteMany: replicas on several nodes cannot share it")
    return problems


def adapter_rules(rules):
    """Problems in prometheus-adapter rules, and the custom metric names they expose."""
    problems, exposed = [], set()
    for r in rules:
        series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", r.get("seriesQuery", ""))
        if not series:
            problems.append(f"rule without a series name: {r.get('seriesQuery')!r}")
            continue
        name = series.group(1)
        # name.as defaults to "$1" when matches has one group, else "$0" (the adapter's rule)
        nm = r.get("name") or {}
        m = re.search(nm.get("matches") or ".*", name)
        if not m:
            problems.append(f"rule for {name}: name.matches {nm['matches']!r} does not match the series")
            continue
        template = nm.get("as") or ("$1" if m.re.groups == 1 else "$0")
        exposed_name = re.sub(r"\$\{?(\d+)\}?", lambda g: m.group(int(g.group(1))) or "", template)
        over = (r.get("resources") or {}).get("overrides") or {}
        if (over.get("pod") or {}).get("resource") != "pod" or (over.get("namespace") or {}).get("resource") != "namespace":
            problems.append(f"rule for {name}: does not map the namespace and pod labels to resources (a Pods metric needs both)")
        if "<<.LabelMatchers>>" not in r.get("metricsQuery", "") or "<<.GroupBy>>" not in r.get("metricsQuery", ""):
            problems.append(f"rule for {name}: metricsQuery lacks <<.LabelMatchers>> or <<.GroupBy>>")
        exposed.add(exposed_name)
    return problems, exposed


def read_adapter_metrics(root):
    path = os.path.join(root, "deploy", "k8s", "monitoring", "prometheus-adapter-rules.yaml")
    if not os.path.exists(path):
        return set()
    return adapter_rules((yaml.safe_load(open(path, encoding="utf-8")) or {}).get("rules") or [])[1]


def check_monitoring(root, ctx):
    docs = ctx.get("rendered", {}).get("monitoring")
    if docs is None:
        raise Skip("deploy/k8s/monitoring not rendered")
    problems = []
    cms = [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in (d.get("data") or {})]
    if len(cms) != 1:
        return [f"want one ConfigMap with key config.yaml (the adapter's rules), found {len(cms)}"]
    rules = (yaml.safe_load(cms[0]["data"]["config.yaml"]) or {}).get("rules") or []
    values_path = os.path.join(root, "deploy", "k8s", "monitoring", "prometheus-adapter-values.yaml")
    if os.path.exists(values_path):
        values = yaml.safe_load(open(values_path, encoding="utf-8")) or {}
        if ((values.get("rules") or {}).get("custom") or []) != rules:
            problems.append("prometheus-adapter-values.yaml rules.custom differs from the ConfigMap's rules")
    rule_problems, exposed = adapter_rules(rules)
    problems += rule_problems
    ctx["adapter_metrics"] = exposed
    pm_path = os.path.join(root, "deploy", "k8s", "monitoring", "podmonitor.yaml")
    if os.path.exists(pm_path):
        pm = yaml.safe_load(open(pm_path, encoding="utf-8"))
        sel = pm["spec"]["selector"]["matchLabels"]
        ports = {e["port"] for e in pm["spec"]["podMetricsEndpoints"]}
        for name, rendered in ctx.get("rendered", {}).items():
            for d in rendered:
                if d["kind"] == "Deployment" and d["metadata"]["name"] == "llm-svc":
                    labels = d["spec"]["template"]["metadata"]["labels"]
                    cports = {p.get("name") for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                    if not labels_match(sel, labels):
                        problems.append(f"podmonitor.yaml selector {sel} misses llm-svc pods in {name}")
                    if not ports & cports:
                        problems.append(f"podmonitor.yaml scrapes ports {sorted(ports)}, llm-svc in {name} has {sorted(cports)}")
    return problems


# ============================================================================================
# main
# ============================================================================================


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")))
    ap.add_argument("--compose", default=os.environ.get("TWIN_COMPOSE", "docker-compose"),
                    help="compose command (docker-compose, or 'docker compose')")
    ap.add_argument("--kustomize", default=os.environ.get("TWIN_KUSTOMIZE", "kubectl kustomize"),
                    help="kustomize build command ('kubectl kustomize' or 'kustomize build')")
    ap.add_argument("--only", default="docker,compose,k8s",
                    help="comma-separated groups to run: docker, compose, k8s")
    ap.add_argument("--variants", default="",
                    help="comma-separated k8s variants to render (default: every overlay, "
                         "prod+external-redis and monitoring)")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    groups = set(a.only.split(","))

    checks = Checks()
    ctx = {}
    try:
        programs = read_programs(root)
        metrics = read_llm_metrics(root)
    except Exception as e:
        print(f"FAIL sources: {e}")
        print("check-manifests: 0 passed, 1 failed")
        return 1
    print(f"PASS sources: {', '.join(f'{p.name} ({len(p.options)} flags, health {p.health_name})' for p in programs.values())}")

    # compose maps its services to programs through the Dockerfiles' stages: parse them always
    checks.run("docker: Dockerfiles (stages, bases, non-root, HEALTHCHECK, .dockerignore)",
               check_dockerfiles, root, programs, ctx)
    if "docker" in groups:
        checks.run("docker: build stages install every package CMake needs", check_build_deps, root, ctx)
        checks.run("docker: runtime-packages.sh", check_runtime_packages_script, root)
    if "compose" in groups:
        checks.run(f"compose: {a.compose} config (no profile, cpu, gpu)", check_compose_config, root, a.compose, ctx)
        checks.run("compose: profiles, GPU reservation, depends_on, health checks, env twins, volumes",
                   check_compose_semantics, root, programs, ctx)
    if "k8s" in groups:
        ctx["adapter_metrics"] = read_adapter_metrics(root)
        with tempfile.TemporaryDirectory(prefix="twin-k8s-") as tmp:
            variants = variant_dirs(root, tmp)
            if a.variants:
                keep = set(a.variants.split(","))
                variants = {k: v for k, v in variants.items() if k in keep}
            for name, path in variants.items():
                checks.run(f"k8s[{name}]: {a.kustomize}", check_kustomize, a.kustomize, name, path, ctx)
        if "monitoring" in variants:
            checks.run("k8s[monitoring]: prometheus-adapter rules", check_monitoring, root, ctx)
        for name in variants:
            checks.run(f"k8s[{name}]: schema (kubernetes-validate --strict, {K8S_VERSIONS[0]} and latest)",
                       check_schema, name, ctx)
        for name in variants:
            if name != "monitoring":
                checks.run(f"k8s[{name}]: probes, drain, headless llm-svc, Redis, HPAs, PDBs, resources",
                           check_k8s_semantics, name, programs, metrics, ctx)
        if not a.variants:
            for want in ("dev", "prod"):
                if want not in variants:
                    print(f"FAIL k8s: overlay {want} is missing")
                    checks.failed.append(want)

    print(f"check-manifests: {len(checks.passed)} passed, {len(checks.failed)} failed"
          + (f", {len(checks.skipped)} skipped" if checks.skipped else ""))
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
