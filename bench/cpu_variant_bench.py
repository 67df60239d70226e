"""llama.cpp CPU builds side by side: decode speed of every CPU variant this machine can run,
with and without weight repack, against a native (-march=native) build of the same
llama-cpp-python when one is given.

    uv run python bench/cpu_variant_bench.py [--native-python /path/to/venv/bin/python]

Each measurement runs in its own process (ggml loads one CPU variant per process) with raw
llama-cpp-python (`Llama.create_chat_completion(stream=True)`, greedy, 128 new tokens, median
of 3 runs after a warm-up); rounds interleave the builds and each figure is the median of its
rounds. LMFast's pick is the variant its first-run check chose. A native
build is what `pip install llama-cpp-python` compiles by default: fastest on the machine that
built it, unsafe anywhere else. Prints a Markdown table; writes bench/results/cpu_variants.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

CHILD = r"""
import json, statistics, sys, time
variant, extra, path, tokens, runs, threads = sys.argv[1:7]
import llama_cpp
if variant != "native":
    from lmfast.inference.cpu_backend import load_backends
    load_backends(variant)
    if extra == "0":  # raw Llama has no switch for it: default params without repack
        base = llama_cpp.llama_model_default_params
        def no_repack():
            p = base()
            p.use_extra_bufts = False
            return p
        llama_cpp.llama_model_default_params = no_repack
        import llama_cpp._internals, llama_cpp.llama
        llama_cpp.llama.llama_cpp.llama_model_default_params = no_repack
from llama_cpp import Llama
llm = Llama(model_path=path, n_ctx=2048, n_threads=int(threads), verbose=False)
msgs = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Write a long story about a dragon who learns to fly."}]
rates = []
for _ in range(int(runs) + 1):
    first = last = None
    n = 0
    for chunk in llm.create_chat_completion(messages=msgs, max_tokens=int(tokens), temperature=0,
                                            stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            now = time.perf_counter()
            first = first or now
            last = now
            n += 1
    rates.append((n - 1) / (last - first))
print(json.dumps({"decode_tok_s": statistics.median(rates[1:]),
                  "system_info": llama_cpp.llama_print_system_info().decode()}))
"""


def measure(python: str, variant: str, extra: bool, path: str, args: argparse.Namespace) -> dict:
    from lmfast.hardware import cpu_cores

    cmd = [python, "-c", CHILD, variant, "1" if extra else "0", path]
    cmd += [str(args.tokens), str(args.runs), str(cpu_cores())]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        return {"error": f"exit {out.returncode}: {out.stderr.strip()[-300:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from lmfast.hardware import cpu_cores
    from lmfast.inference.cpu_backend import AMX_VARIANTS, cpu_identity, variants
    from lmfast.inference.selfcheck import checked_settings
    from lmfast.registry import resolve_model

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3, help="timed generations per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the builds")
    ap.add_argument("--native-python", help="python of an env with a native llama-cpp-python")
    args = ap.parse_args()
    path = str(resolve_model().path)
    picked = checked_settings(path)
    ident = cpu_identity()

    configs: list[tuple[str, str, str, bool, int | None]] = []  # label, python, variant, ...
    for v in variants():
        if v.score == 0 or v.name in AMX_VARIANTS:
            continue  # AMX: never picked; measuring it is what crashes on Sapphire Rapids
        for extra in (True, False) if v.name == picked.variant else (True,):
            configs.append((f"variant {v.name}", sys.executable, v.name, extra, v.score))
    if args.native_python:
        configs.append(("native (-march=native)", args.native_python, "native", True, None))
    # Rounds interleave the builds, so a slow minute on a shared machine hits all of them;
    # each build's figure is its median over the rounds.
    speeds: dict[int, list[float]] = {i: [] for i in range(len(configs))}
    errors: dict[int, str] = {}
    for rnd in range(args.rounds):
        for i, (label, python, variant, extra, _) in enumerate(configs):
            if i in errors:
                continue
            r = measure(python, variant, extra, path, args)
            if "error" in r:
                errors[i] = r["error"]
            else:
                speeds[i].append(r["decode_tok_s"])
            print(rnd, label, "repack" if extra else "no repack", r.get("decode_tok_s"), flush=True)
    rows = []
    for i, (label, _, _, extra, score) in enumerate(configs):
        row: dict = {"build": label, "score": score, "repack": extra}
        if i in errors:
            row["error"] = errors[i]
        else:
            row["decode_tok_s"] = statistics.median(speeds[i])
            row["rounds"] = speeds[i]
        rows.append(row)

    ok = [r for r in rows if "decode_tok_s" in r]
    fastest = max(r["decode_tok_s"] for r in ok)
    pick = next(
        (
            r
            for r in ok
            if r["build"] == f"variant {picked.variant}" and r["repack"] == picked.extra_bufts
        ),
        None,
    )
    machine = f"{ident.model} ({ident.cpu_class}), {cpu_cores()} cores"
    lines = [
        f"llama.cpp CPU builds, {date.today()}, {machine}, SmolLM2-135M-Instruct Q4_1, "
        f"{args.tokens} tokens greedy, raw llama-cpp-python",
        "",
        "| build | repack | decode tokens/s | of fastest |",
        "|---|---|---|---|",
    ]
    for r in rows:
        mark = " (LMFast's pick)" if r is pick else ""
        speed = f"{r['decode_tok_s']:.1f}" if "decode_tok_s" in r else r["error"][:60]
        share = f"{r['decode_tok_s'] / fastest:.2f}" if "decode_tok_s" in r else "-"
        lines.append(
            f"| {r['build']}{mark} | {'on' if r['repack'] else 'off'} | {speed} | {share} |"
        )
    print()
    print("\n".join(lines))
    out = Path(__file__).parent / "results" / "cpu_variants.json"
    out.write_text(
        json.dumps(
            {
                "date": str(date.today()),
                "machine": machine,
                "platform": platform.platform(),
                "pick": picked.model_dump(),
                "rows": rows,
                "pick_of_fastest": pick["decode_tok_s"] / fastest if pick else None,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
