#!/usr/bin/env bash
# tests/bench/llamacpp_compare.sh — our CPU backend next to llama.cpp on the same GGUF files,
# the same machine and the same thread count:
#   1. speed: prefill and decode tokens/s, ours (bench-gguf) and llama.cpp's (llama-bench -p/-n),
#      in interleaved rounds (the machine is shared: each round runs both back to back), with
#      the median, min and max over the rounds. Each side is measured twice: llama.cpp as built
#      (its worker threads poll for work) and with polling off (OMP_WAIT_POLICY=PASSIVE,
#      --poll 0); ours as configured by default (a few microseconds of polling, then sleeping)
#      and polling long (TWIN_CPU_SPIN=200000). On an idle machine polling saves the wake-ups of
#      a decode step's few hundred small jobs; on an oversubscribed one it takes the cores from
#      the threads being waited for.
#   2. agreement: greedy generation of STEPS tokens on a few prompts, ours (gguf-tool
#      --generate, end-of-sequence ids masked) and llama.cpp's (llama-completion --temp 0
#      --ignore-eos); llama.cpp's text is tokenized with the file's tokenizer and compared id by
#      id: the number of leading tokens that agree, the positions equal, and at the first
#      difference how far apart our logits of the two tokens are (a near tie means the two
#      runs' rounding decided, not a different computation); and, teacher-forced (our model
#      fed llama.cpp's tokens), at how many steps our top token is llama.cpp's.
# Skips (exit 0) when the llama.cpp build or the models are absent.
#
# usage: tests/bench/llamacpp_compare.sh [LLAMA_BIN_DIR]
# env:   LLAMA_CPP_BIN (default /work/peer/llama.cpp/build/bin), TWIN_BIN_DIR (default
#        build/bin), MODELS (default: the two files of models/llm), THREADS (2), PROMPT (128),
#        GEN (64), ROUNDS (3), STEPS (64)
set -u
SOURCE_DIR=$(cd "$(dirname "$0")/../.." && pwd)
LLAMA_BIN=${1:-${LLAMA_CPP_BIN:-/work/peer/llama.cpp/build/bin}}
BIN=${TWIN_BIN_DIR:-$SOURCE_DIR/build/bin}
THREADS=${THREADS:-2}
PROMPT=${PROMPT:-128}
GEN=${GEN:-64}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-64}
MODELS=${MODELS:-"$SOURCE_DIR/models/llm/SmolLM2-135M-Instruct.Q4_1.gguf $SOURCE_DIR/models/llm/gemma-3-270m-q4_k_m.gguf"}
PROMPTS=("The capital of France is" "Once upon a time, in a small village," \
         "def fibonacci(n):" "The three primary colors are")

for tool in llama-bench llama-completion; do
  if [ ! -x "$LLAMA_BIN/$tool" ]; then
    echo "llamacpp_compare: skipped: no $LLAMA_BIN/$tool (build llama.cpp or pass its bin dir)"
    exit 0
  fi
done
for tool in bench-gguf gguf-tool; do
  if [ ! -x "$BIN/$tool" ]; then
    echo "llamacpp_compare: $BIN/$tool is missing: build the twin targets first" >&2
    exit 1
  fi
done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# the agreement check: ours and llama.cpp's greedy tokens for one model and the prompts
cat > "$TMP/agree.py" <<'AGREE'
import os, subprocess, sys
import numpy as np
model, bin_dir, llama_bin, threads, steps, tmp = sys.argv[1:7]
steps = int(steps)
tool = os.path.join(bin_dir, "gguf-tool")


def ours_generate(prompt):
    out = subprocess.run([tool, "--model", model, "--threads", threads, "--prompt", prompt,
                          "--generate", str(steps), "--ignore-eos"], capture_output=True,
                         text=True, check=True).stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return ([int(x) for x in lines["prompt_ids"].split(",")],
            [int(x) for x in lines["ids"].split(",")])


def llama_generate(prompt):
    """llama.cpp's greedy ids: its text (8 tokens more than compared, so that the compared ones
    are not cut at the end) tokenized after the prompt as one text."""
    text = subprocess.run([os.path.join(llama_bin, "llama-completion"), "-m", model, "-t", threads,
                           "-p", prompt, "-n", str(steps + 8), "--temp", "0", "--ignore-eos",
                           "-no-cnv", "--no-display-prompt"], capture_output=True, text=True).stdout
    path = os.path.join(tmp, "lines.hex")
    with open(path, "w") as f:
        f.write((prompt + text).encode("utf-8").hex() + "\n")
    ids = subprocess.run([tool, "--model", model, "--vocab-only", "--tokenize-lines", path],
                         capture_output=True, text=True, check=True).stdout.split("\t")[0]
    return [int(x) for x in ids.split(",") if x]


def margin_at(context, ours, theirs):
    """Our logit of our token minus that of llama.cpp's, and the logits' std, recomputed in one
    forward over the context."""
    path = os.path.join(tmp, "logits.bin")
    subprocess.run([tool, "--model", model, "--threads", threads, "--tokens",
                    ",".join(map(str, context)), "--logits", path], capture_output=True, check=True)
    logits = np.fromfile(path, dtype="<f4").reshape(len(context), -1)[-1]
    return float(logits[ours] - logits[theirs]), float(logits.std())


def teacher_forced(prompt_ids, theirs):
    """Our top token at each of llama.cpp's steps, fed llama.cpp's tokens: (matches, the
    largest gap between our top logit and that of llama.cpp's token where they differ, in
    std of the logits)."""
    context = prompt_ids + theirs
    path = os.path.join(tmp, "forced.bin")
    subprocess.run([tool, "--model", model, "--threads", threads, "--tokens",
                    ",".join(map(str, context)), "--logits", path], capture_output=True, check=True)
    logits = np.fromfile(path, dtype="<f4").reshape(len(context), -1)
    matches, worst = 0, 0.0
    for j, token in enumerate(theirs):
        row = logits[len(prompt_ids) - 1 + j]
        top = int(row.argmax())
        if top == token:
            matches += 1
        else:
            worst = max(worst, float(row[top] - row[token]) / float(row.std()))
    return matches, worst


total_same = total = forced_total = 0
for prompt in sys.argv[7:]:
    prompt_ids, ours = ours_generate(prompt)
    both = llama_generate(prompt)
    if both[:len(prompt_ids)] != prompt_ids:
        print(f"    {prompt!r:42} prompt tokenized differently")
        continue
    theirs = both[len(prompt_ids):][:steps]
    n = min(len(ours), len(theirs))
    same = next((i for i in range(n) if ours[i] != theirs[i]), n)
    equal = sum(a == b for a, b in zip(ours, theirs))
    total_same += same
    total += steps
    note = "identical" if ours[:steps] == theirs else "llama.cpp's text ends early"
    if same < n:
        gap, std = margin_at(prompt_ids + ours[:same], ours[same], theirs[same])
        note = (f"at the first difference the two tokens' logits are {abs(gap):.3f} apart "
                f"({abs(gap) / std:.3f} std)")
    print(f"    {prompt!r:42} first {same:2d} of {steps} agree, {equal:2d} positions equal; {note}")
    forced, worst = teacher_forced(prompt_ids, theirs)
    forced_total += forced
    print(f"    {'':42} fed llama.cpp's tokens, our top token is its token at {forced} of "
          f"{len(theirs)} steps (largest gap where not: {worst:.3f} std)")
print(f"  total: {total_same} of {total} leading tokens agree; teacher-forced {forced_total} of "
      f"{total} steps agree")
AGREE

# median min max of the numbers on stdin
stats() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) {print "n/a"; exit}
  printf "%.1f (min %.1f, max %.1f)", v[int((NR + 1) / 2)], v[1], v[NR]}'; }

# llama-bench csv -> "prefill decode" tokens/s of one run
llama_bench_run() {
  "$@" -o csv 2>/dev/null | awk -F'","' 'NR > 1 { ts = $(NF - 1); gsub(/"/, "", ts);
    if ($(NF - 7) + 0 > 0) pp = ts; else tg = ts } END { print pp, tg }'
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); threads $THREADS;" \
     "prefill $PROMPT tokens, decode $GEN tokens, $ROUNDS rounds"
for model in $MODELS; do
  if [ ! -f "$model" ]; then
    echo "llamacpp_compare: skipped $model (not fetched: deploy/fetch-models.sh --llm all)"
    continue
  fi
  name=$(basename "$model")
  echo
  echo "== $name"
  : > "$TMP/ours"; : > "$TMP/ours_polling"; : > "$TMP/llama"; : > "$TMP/llama_passive"
  for round in $(seq "$ROUNDS"); do
    ours_run() {
      "$BIN/bench-gguf" --model "$model" --threads "$THREADS" --prompt "$PROMPT" --gen "$GEN" \
        --repeat 1 2>/dev/null | awk '/^bench-gguf/ { split($2, a, "="); split($5, b, "=");
        print a[2], b[2] }'
    }
    ours_run >> "$TMP/ours"
    TWIN_CPU_SPIN=200000 ours_run >> "$TMP/ours_polling"
    llama_bench_run "$LLAMA_BIN/llama-bench" -m "$model" -t "$THREADS" -p "$PROMPT" -n "$GEN" \
      -r 1 >> "$TMP/llama"
    OMP_WAIT_POLICY=PASSIVE llama_bench_run "$LLAMA_BIN/llama-bench" -m "$model" -t "$THREADS" \
      -p "$PROMPT" -n "$GEN" -r 1 --poll 0 >> "$TMP/llama_passive"
  done
  printf "  %-34s %-32s %s\n" "tokens/s" "prefill" "decode"
  for who in ours ours_polling llama llama_passive; do
    label=$who
    [ "$who" = ours ] && label="ours (default)"
    [ "$who" = ours_polling ] && label="ours (polling: TWIN_CPU_SPIN)"
    [ "$who" = llama ] && label="llama.cpp (as built: polling)"
    [ "$who" = llama_passive ] && label="llama.cpp (no polling)"
    printf "  %-34s %-32s %s\n" "$label" "$(cut -d' ' -f1 "$TMP/$who" | stats)" \
      "$(cut -d' ' -f2 "$TMP/$who" | stats)"
  done

  echo "  greedy agreement over $STEPS steps (llama.cpp's text re-tokenized with the file's tokenizer):"
  python3 "$TMP/agree.py" "$model" "$BIN" "$LLAMA_BIN" "$THREADS" "$STEPS" "$TMP" "${PROMPTS[@]}"
done
