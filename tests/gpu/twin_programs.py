"""tests/gpu/twin_programs.py — where the GPU scripts find our prebuilt programs and the shared
libraries those need. Programs: $BIN_DIR (or the given folder), else build/bin. Libraries: the
folder in $TWIN_LD_LIBRARY_PATH, else a lib/ folder beside the programs' (tests/gpu/pack.sh's
layout), put in front of LD_LIBRARY_PATH for our programs only, with CUDA's library folders
after it; Python itself keeps the environment it was started with.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CUDA_LIBS = ["/usr/local/cuda/lib64", "/usr/local/cuda/lib"]


def find_program(name, bin_dir=None):
    for d in [bin_dir, os.environ.get("BIN_DIR"), os.path.join(ROOT, "build", "bin")]:
        if d and os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    sys.exit("%s not found in --bin-dir, $BIN_DIR or build/bin: build it (cmake -DTWIN_CUDA=ON) "
             "or carry it (tests/gpu/pack.sh) and set BIN_DIR" % name)


def program_env(program):
    """The environment to run one of our programs with."""
    env = dict(os.environ)
    libs = os.environ.get("TWIN_LD_LIBRARY_PATH")
    if not libs:
        beside = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(program))), "lib")
        libs = beside if os.path.isdir(beside) else ""
    parts = [libs] + [env.get("LD_LIBRARY_PATH", "")] + CUDA_LIBS
    env["LD_LIBRARY_PATH"] = ":".join(p for p in parts if p)
    return env
